"""JPEGs decoded where the model runs, through a real server: Pillow's answers, a corrupt
JPEG answered alone within its batch, other formats still decoded by Pillow."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from typing import cast

import grpc
import numpy as np
import pytest
import torch
from PIL import Image

from images import jpeg
from recognizer.client import AsyncClient, Client
from recognizer.engine.backends.device_inputs import DEVICE_DECODE_TOLERANCE
from recognizer.engine.backends.torch_backend import TorchBackend
from recognizer.engine.engine import ServedModel
from recognizer.models.spec import LoadedModel
from recognizer.v1 import recognizer_pb2 as pb
from support import CAT_CLASSES, ESPRESSO, PHOTOS, ServerThread, error_reason

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
