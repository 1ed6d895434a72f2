"""Decoding and preparing JPEGs where the model runs, held to the Pillow path on the CPU."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from images import jpeg
from recognizer.engine.backends.device_inputs import DEVICE_DECODE_TOLERANCE, prepare_batch
from recognizer.errors import InvalidImageError
from recognizer.models.jpeg import EncodedJpeg, read_jpeg_header
from recognizer.models.preprocessing import Preprocessing, decode_image, prepare_input
from recognizer.models.spec import LoadedModel
from support import PHOTOS

CPU = torch.device("cpu")
LIMIT = 64_000_000


def pillow_batch(images: list[bytes], preprocessing: Preprocessing) -> torch.Tensor:
    pixels = np.stack([prepare_input(decode_image(data), preprocessing) for data in images])
    mean = torch.tensor(preprocessing.mean).view(1, 3, 1, 1) * 255
    std = torch.tensor(preprocessing.std).view(1, 3, 1, 1) * 255
    return (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() - mean) / std


def test_the_device_path_gives_the_pillow_paths_answers(default_loaded: LoadedModel) -> None:
    images = [jpeg(Image.open(path)) for path in PHOTOS.values()]
    preprocessing = default_loaded.spec.preprocessing
    rows = [read_jpeg_header(data, LIMIT) for data in images]
    assert all(isinstance(row, EncodedJpeg) for row in rows)
    on_device, errors = prepare_batch(rows, preprocessing, CPU)  # type: ignore[arg-type]
    assert errors == [None] * len(images)
    network = default_loaded.network
    assert isinstance(network, torch.nn.Module)
    with torch.inference_mode():
        expected = network.eval()(pillow_batch(images, preprocessing)).softmax(1)
        got = network(on_device).softmax(1)
    assert got.argmax(1).tolist() == expected.argmax(1).tolist()
    assert float((got - expected).abs().max()) < DEVICE_DECODE_TOLERANCE


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_as_pillow_applies_it(orientation: int) -> None:
    gradient = np.zeros((60, 90, 3), dtype=np.uint8)
    gradient[..., 0] = np.linspace(0, 255, 90, dtype=np.uint8)  # red grows to the right
    gradient[..., 1] = np.linspace(0, 255, 60, dtype=np.uint8)[:, None]  # green downwards
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = jpeg(Image.fromarray(gradient), exif=exif.tobytes())
    preprocessing = Preprocessing(resize=48, crop=48, mean=(0, 0, 0), std=(1 / 255,) * 3)
    row = read_jpeg_header(data, LIMIT)
    assert row is not None and row.orientation == orientation
    on_device, _ = prepare_batch([row], preprocessing, CPU)
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    expected = prepare_input(upright, preprocessing).astype(np.float32)
    got = on_device[0].permute(1, 2, 0).numpy()
    assert np.abs(got - expected).mean() < 3


def test_a_corrupt_jpeg_fails_alone_and_its_neighbours_are_prepared() -> None:
    good = jpeg(Image.open(PHOTOS["coffee"]))
    broken = good[: len(good) // 3]  # the header survives, the scan data does not
    preprocessing = Preprocessing()
    pixels = prepare_input(decode_image(jpeg(Image.open(PHOTOS["cat"]))), preprocessing)
    rows = [read_jpeg_header(good, LIMIT), read_jpeg_header(broken, LIMIT), pixels]
    batch, errors = prepare_batch(rows, preprocessing, CPU)  # type: ignore[arg-type]
    assert batch.shape == (3, 3, 224, 224)
    assert errors[0] is None and errors[2] is None
    assert isinstance(errors[1], InvalidImageError) and errors[1].reason == "IMAGE_CORRUPT"
