"""Raw frames: every pixel format gives the picture back; every wrong size is refused."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from images import open_image, raw_frame
from recognizer.errors import InvalidImageError
from recognizer.models.raw import PixelFormat, RawFrame, frame_to_image
from support import PHOTOS

FORMATS = [f.name for f in PixelFormat]


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    return np.asarray(open_image(PHOTOS["cat"].read_bytes()).convert("RGB"))[:301, :451]


@pytest.mark.parametrize("pixel_format", FORMATS)
@pytest.mark.parametrize("pad", [0, 6])
def test_every_format_and_stride_gives_the_picture_back(
    rgb: np.ndarray, pixel_format: str, pad: int
) -> None:
    data, stride = raw_frame(rgb, pixel_format, pad)
    frame = RawFrame(rgb.shape[1], rgb.shape[0], PixelFormat[pixel_format], data, stride)
    image = frame_to_image(frame).convert("RGB")
    assert image.size == (rgb.shape[1], rgb.shape[0])
    got = np.asarray(image).astype(np.int16)
    if pixel_format == "GRAY8":
        gray = np.asarray(Image.fromarray(rgb).convert("L")).astype(np.int16)[..., None]
        assert np.abs(got - gray).max() <= 1
    else:
        tolerance = 6 if pixel_format in ("NV12", "I420") else 0  # chroma at half resolution
        assert np.abs(got - rgb).mean() <= tolerance


@pytest.mark.parametrize(
    ("frame", "field", "reason"),
    [
        (RawFrame(4, 4, PixelFormat.RGB8, b"\0" * 47), "raw_image.data", "RAW_SIZE_MISMATCH"),
        (RawFrame(4, 4, PixelFormat.RGB8, b"\0" * 49), "raw_image.data", "RAW_SIZE_MISMATCH"),
        (RawFrame(4, 4, PixelFormat.NV12, b"\0" * 16), "raw_image.data", "RAW_SIZE_MISMATCH"),
        (RawFrame(4, 4, PixelFormat.I420, b"\0" * 23), "raw_image.data", "RAW_SIZE_MISMATCH"),
        (RawFrame(4, 4, PixelFormat.RGB8, b"\0" * 44, 11), "raw_image", "RAW_IMAGE_INVALID"),
        (RawFrame(0, 4, PixelFormat.GRAY8, b""), "raw_image", "RAW_IMAGE_INVALID"),
        (RawFrame(4, 4, None, b"\0" * 48), "raw_image.format", "RAW_IMAGE_INVALID"),
        (RawFrame(10_000, 10_000, PixelFormat.GRAY8, b""), "raw_image", "IMAGE_TOO_LARGE"),
    ],
)
def test_frames_that_do_not_add_up_are_refused(frame: RawFrame, field: str, reason: str) -> None:
    with pytest.raises(InvalidImageError) as raised:
        frame_to_image(frame)
    assert (raised.value.field, raised.value.reason) == (field, reason)


def test_the_size_error_says_what_was_expected() -> None:
    with pytest.raises(InvalidImageError, match=r"has 10 bytes, but a 4x2 NV12 frame .* has 12"):
        frame_to_image(RawFrame(4, 2, PixelFormat.NV12, b"\0" * 10))


def test_odd_sizes_in_4_2_0_round_the_chroma_up() -> None:
    rgb = np.full((5, 7, 3), (30, 160, 90), dtype=np.uint8)
    for pixel_format in ("NV12", "I420"):
        data, stride = raw_frame(rgb, pixel_format)
        image = frame_to_image(RawFrame(7, 5, PixelFormat[pixel_format], data, stride))
        assert np.abs(np.asarray(image).astype(int) - rgb).max() <= 3
