"""What a JPEG's header says: which images are left for the device to decode."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from images import jpeg
from recognizer.errors import InvalidImageError
from recognizer.models.jpeg import blank_jpeg, read_jpeg_header
from support import PHOTOS

LIMIT = 64_000_000


def test_what_the_device_cannot_decode_is_left_to_pillow() -> None:
    photo = Image.open(PHOTOS["cat"])
    png = io.BytesIO()
    photo.save(png, "PNG")
    assert read_jpeg_header(png.getvalue(), LIMIT) is None
    assert read_jpeg_header(jpeg(photo.convert("CMYK")), LIMIT) is None
    assert read_jpeg_header(jpeg(photo.convert("L")), LIMIT) is not None
    with pytest.raises(InvalidImageError) as raised:
        read_jpeg_header(jpeg(photo), 1000)
    assert raised.value.reason == "IMAGE_TOO_LARGE"
    with pytest.raises(InvalidImageError) as raised:
        read_jpeg_header(b"", LIMIT)
    assert raised.value.reason == "IMAGE_EMPTY"


def test_an_unknown_orientation_reads_as_upright() -> None:
    exif = Image.Exif()
    exif[0x0112] = 9
    row = read_jpeg_header(jpeg(Image.open(PHOTOS["cat"]), exif=exif.tobytes()), LIMIT)
    assert row is not None and row.orientation == 1


def test_the_warm_up_jpeg_is_a_square_of_the_asked_size() -> None:
    with Image.open(io.BytesIO(blank_jpeg(64))) as image:
        assert (image.format, image.size, image.mode) == ("JPEG", (64, 64), "RGB")
