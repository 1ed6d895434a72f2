"""A request's stages through a real server: JPEGs decoded where the model runs (Pillow's
answers, a corrupt JPEG answered alone within its batch, other formats still decoded by
Pillow), hostile images (refused from their markers, their decoding stopped when
nobody waits for it, and cache hits answered while they decode), and a call's memory freed
when it ends."""

from __future__ import annotations

import asyncio
import gc
import io
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import cast

import grpc
import numpy as np
import pytest
import torch
from PIL import Image

from fakes import colour_model, solid_png
from images import jpeg, noise_png
from recognizer.client import AsyncClient, Client
from recognizer.engine.backends.device_inputs import DEVICE_DECODE_TOLERANCE
from recognizer.engine.backends.torch_backend import TorchBackend
from recognizer.engine.engine import ServedModel
from recognizer.engine.lifecycle import INLINE_HASH_BYTES, Job
from recognizer.models.preprocessing import (
    Preprocessing,
    decode_cost,
    decode_image,
    reduce_on_decode,
)
from recognizer.models.spec import LoadedModel
from recognizer.v1 import recognizer_pb2 as pb
from recognizer.v1 import recognizer_pb2_grpc as pb_grpc
from support import (
    CAT_CLASSES,
    ESPRESSO,
    PHOTOS,
    ServerThread,
    error_reason,
    load_script,
    wait_until,
)

Servers = tuple[ServerThread, ServerThread]
Answer = pb.ClassifyResponse | grpc.RpcError
CLASSES = 1000


def on_torch(loaded: LoadedModel) -> ServedModel:
    return ServedModel(loaded.spec, TorchBackend(loaded, device=torch.device("cpu")))


@pytest.fixture(scope="module")
def servers(default_loaded: LoadedModel) -> Iterator[Servers]:
    """The default model on the Torch backend, JPEGs decoded by it (on) and by Pillow (off);
    batches wait long enough to fill with concurrent calls."""
    model = ServedModel(
        default_loaded.spec, TorchBackend(default_loaded, device=torch.device("cpu"))
    )
    batching = {"max_batch_size": 8, "max_batch_delay_ms": 500}
    with (
        ServerThread([model], device_decode="on", **batching) as on,
        ServerThread([model], device_decode="off", **batching) as off,
    ):
        assert on.engine.runner("").decoder is not None
        assert off.engine.runner("").decoder is None
        yield on, off


def scores(response: pb.ClassifyResponse) -> np.ndarray:
    """Every class's probability, by class id."""
    by_id = np.zeros(CLASSES)
    for label in response.labels:
        by_id[label.class_id] = label.score
    return by_id


@pytest.mark.parametrize("photo", sorted(PHOTOS))
def test_jpegs_decoded_on_the_device_get_pillows_answers(servers: Servers, photo: str) -> None:
    data = jpeg(Image.open(PHOTOS[photo]))
    on, off = servers
    with Client(on.address) as device, Client(off.address) as pillow:
        got = scores(device.classify(data, top_k=CLASSES))
        expected = scores(pillow.classify(data, top_k=CLASSES))
    assert got.argmax() == expected.argmax()
    assert np.abs(got - expected).max() < DEVICE_DECODE_TOLERANCE


def classify_together(address: str, images: list[bytes]) -> list[Answer]:
    """Send the images at once on one connection, so they share a batch; each call's answer
    or error."""

    async def send() -> list[Answer]:
        async with AsyncClient(address) as client:
            await client.classify(images[0], top_k=1)  # connected before the calls that count
            calls = [client.classify(image, top_k=3) for image in images]
            answers = await asyncio.gather(*calls, return_exceptions=True)
        for answer in answers:
            if not isinstance(answer, pb.ClassifyResponse | grpc.RpcError):
                raise answer
        return cast(list[Answer], answers)

    return asyncio.run(send())


def test_a_corrupt_jpeg_fails_alone_and_a_png_is_served_beside_it(servers: Servers) -> None:
    cat = jpeg(Image.open(PHOTOS["cat"]))
    coffee = jpeg(Image.open(PHOTOS["coffee"]))
    broken = coffee[: len(coffee) // 3]  # a whole header: only decoding finds the fault
    png = PHOTOS["coffee"].read_bytes()
    on, off = servers
    before = sum(on.engine.runner("").status().batch_sizes.values())
    answers = classify_together(on.address, [cat, broken, png, coffee])
    batch_sizes = on.engine.runner("").status().batch_sizes
    assert sum(batch_sizes.values()) - before < 1 + 4, "the four calls shared a batch"
    cat_answer, error, png_answer, coffee_answer = answers
    assert isinstance(cat_answer, pb.ClassifyResponse)
    assert cat_answer.labels[0].class_id in CAT_CLASSES
    assert isinstance(png_answer, pb.ClassifyResponse) and isinstance(
        coffee_answer, pb.ClassifyResponse
    )
    assert png_answer.labels[0].class_id == coffee_answer.labels[0].class_id == ESPRESSO
    assert isinstance(error, grpc.RpcError)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(error) == "IMAGE_CORRUPT"
    with Client(off.address) as pillow, pytest.raises(grpc.RpcError) as raised:
        pillow.classify(broken)
    assert (raised.value.code(), error_reason(raised.value)) == (error.code(), "IMAGE_CORRUPT")
    assert raised.value.details() == error.details()


def test_a_png_gets_the_same_answer_either_way(servers: Servers) -> None:
    png = io.BytesIO()
    Image.open(PHOTOS["motorcycle"]).save(png, "PNG")
    on, off = servers
    with Client(on.address) as device, Client(off.address) as pillow:
        got = scores(device.classify(png.getvalue(), top_k=CLASSES))
        expected = scores(pillow.classify(png.getvalue(), top_k=CLASSES))
    assert np.abs(got - expected).max() < 1e-5


def test_a_repeated_jpeg_is_answered_from_the_cache(default_loaded: LoadedModel) -> None:
    model = ServedModel(
        default_loaded.spec, TorchBackend(default_loaded, device=torch.device("cpu"))
    )
    data = jpeg(Image.open(PHOTOS["cat"]))
    with (
        ServerThread([model], device_decode="on", cache_entries=8) as running,
        Client(running.address) as client,
    ):
        first, again = client.classify(data), client.classify(data)
    assert not first.timing.cache_hit and again.timing.cache_hit
    assert [label.class_id for label in again.labels] == [label.class_id for label in first.labels]


# Hostile images

RED, GREEN, BLUE = (200, 10, 10), (10, 200, 10), (10, 10, 200)
# Bounds lifted so that a JPEG of thousands of scans is decoded: it stands for any long
# decode.
LIFTED = {"max_jpeg_scans": 10**6, "max_jpeg_markers": 10**6}


@pytest.fixture(scope="module")
def hostile() -> ModuleType:
    return load_script("hostile_images")


@pytest.fixture(scope="module")
def long_decode(hostile: ModuleType) -> bytes:
    """A progressive JPEG of 2,081 scans in the standard's order, every AC coefficient
    brought alone and refined bit by bit, over 6000x6000 pixels: 20 s of a core."""
    data: bytes = hostile.progressive_jpeg(6000, depth=10, bands=63)
    return data


def serve_colours(**engine: object) -> ServerThread:
    """The colour model, two decoding threads and a result cache."""
    return ServerThread(
        [colour_model()], preprocess_threads=2, max_batch_size=4, cache_entries=16, **engine
    )


def classify(stub: pb_grpc.RecognizerStub, image: bytes, timeout: float) -> pb.ClassifyResponse:
    response: pb.ClassifyResponse = stub.Classify(pb.ClassifyRequest(image=image), timeout=timeout)
    return response


def decoding_cost(data: bytes, preprocessing: Preprocessing) -> int:
    """What the decoding budget holds while the image decodes."""
    image = decode_image(data, **LIFTED)
    reduce_on_decode(image, preprocessing.resize)
    return decode_cost(image, preprocessing)


def test_jpegs_of_too_many_scans_or_repeated_scans_are_refused_before_decoding(
    hostile: ModuleType, long_decode: bytes
) -> None:
    repeated = hostile.many_scan_jpeg(4000, scans=3000)  # seconds of a core, if decoded
    with serve_colours() as running, grpc.insecure_channel(running.address) as channel:
        stub = pb_grpc.RecognizerStub(channel)
        calls = {
            ("IMAGE_TOO_COMPLEX", "more than 100 scans"): long_decode,
            ("IMAGE_CORRUPT", "bring some coefficients again"): repeated,
        }
        sent = {
            expected: stub.Classify.future(pb.ClassifyRequest(image=image), timeout=30)
            for expected, image in calls.items()
        }
        assert classify(stub, solid_png(RED), timeout=5).labels[0].class_id == 0
        for (reason, message), call in sent.items():
            with pytest.raises(grpc.RpcError) as raised:
                call.result()
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert error_reason(raised.value) == reason
            assert message in (raised.value.details() or "")


def test_cached_answers_come_at_once_while_both_decoding_threads_are_busy(
    long_decode: bytes,
) -> None:
    small, large = solid_png(BLUE), noise_png(200)
    assert len(small) <= INLINE_HASH_BYTES < len(large)  # hashed on the loop, and in the pool
    with (
        serve_colours(**LIFTED) as running,
        grpc.insecure_channel(running.address) as channel,
    ):
        stub = pb_grpc.RecognizerStub(channel)
        for image in (small, large):
            classify(stub, image, timeout=10)  # now cached
        budget = running.engine.pipeline.budget
        cost = decoding_cost(long_decode, running.engine.runner("").spec.preprocessing)
        calls = [stub.Classify.future(pb.ClassifyRequest(image=long_decode)) for _ in range(2)]
        wait_until(lambda: budget.used == 2 * cost)  # both decoding
        for image in (small, large):
            assert classify(stub, image, timeout=2).timing.cache_hit
        with pytest.raises(grpc.RpcError) as raised:  # the decoding threads are busy indeed
            classify(stub, solid_png(GREEN), timeout=1)
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        for call in calls:
            call.cancel()
        # Nobody waits for the long decodes now: they stop, and a new image is decoded.
        assert classify(stub, solid_png(GREEN), timeout=3).labels[0].class_id == 1
        wait_until(lambda: budget.used == 0, timeout=5)


def test_decoding_stops_when_its_deadline_passes_and_costs_no_more(long_decode: bytes) -> None:
    with (
        serve_colours(**LIFTED) as running,
        grpc.insecure_channel(running.address) as channel,
    ):
        stub = pb_grpc.RecognizerStub(channel)
        classify(stub, solid_png(RED), timeout=10)  # connected and warm
        cpu = time.process_time()  # this process is the server: its every thread counts
        request = pb.ClassifyRequest(image=long_decode)
        calls = [stub.Classify.future(request, timeout=0.5) for _ in range(2)]
        for call in calls:
            with pytest.raises(grpc.RpcError) as raised:
                call.result()
            assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert classify(stub, solid_png(GREEN), timeout=3).labels[0].class_id == 1
        wait_until(lambda: running.engine.pipeline.budget.used == 0, timeout=5)
        time.sleep(1)  # time enough for a decode still running to show in the CPU time
        # Decoded to the end, the two would take about 40 s.
        assert time.process_time() - cpu < 5


@contextmanager
def garbage_made() -> Iterator[list[object]]:
    """The objects left in reference cycles while the block ran: what only the garbage
    collector would free, and its full passes are rare in a process of this size."""
    gc.collect()
    gc.disable()
    found: list[object] = []
    try:
        yield found
    finally:
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        found.extend(gc.garbage)
        gc.garbage.clear()
        gc.set_debug(0)
        gc.enable()


def test_calls_that_end_leave_no_cycle_holding_their_image(long_decode: bytes) -> None:
    """Answered, refused or given up, a call's request and job are freed when it ends: a
    cycle would hold the image (and the decoder's pixels) until a full collection. (grpc's
    abort leaves its own small cycle, the call's state and the error, without them.)"""
    with (
        serve_colours(**LIFTED) as running,
        grpc.insecure_channel(running.address) as channel,
    ):
        stub = pb_grpc.RecognizerStub(channel)
        classify(stub, solid_png(RED), timeout=10)  # connected and warm
        with garbage_made() as garbage:
            assert classify(stub, noise_png(200), timeout=10).labels
            for image, timeout in ((b"not an image", 10), (long_decode, 0.5)):
                with pytest.raises(grpc.RpcError):
                    classify(stub, image, timeout)
            wait_until(lambda: running.engine.pipeline.budget.used == 0, timeout=5)
    assert not [kept for kept in garbage if isinstance(kept, Job | pb.ClassifyRequest)]
