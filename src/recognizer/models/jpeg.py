"""JPEGs left undecoded for the device that runs the model: what their header says.

Reading a header costs microseconds and needs no PyTorch, so the preprocess pool can do
it for every request (checking the pixel limit and the format as decoding would) and
leave the decoding itself to the backend, which decodes a whole batch at once
(engine/backends/device_inputs.py).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from recognizer.models.preprocessing import decode_image

_ORIENTATION_TAG = 0x0112


@dataclass(frozen=True, slots=True)
class EncodedJpeg:
    """A JPEG left for the device to decode, with what its header said."""

    data: bytes
    orientation: int  # EXIF: 1 upright, 2-8 flips and rotations


DeviceInput = np.ndarray | EncodedJpeg
"""What a batch row is before the device prepares it: Pillow's uint8 (crop, crop, 3) pixels,
already in the model's channel order, or a JPEG to decode there."""


def read_jpeg_header(data: bytes, max_pixels: int) -> EncodedJpeg | None:
    """The JPEG to decode on the device, or None when Pillow must decode the image.

    Raises InvalidImageError as decode_image does (empty, not an image, over the limit).
    """
    return device_jpeg(decode_image(data, max_pixels=max_pixels), data)  # the header only


def device_jpeg(opened: Image.Image, data: bytes) -> EncodedJpeg | None:
    """The image Pillow opened from `data` (its header read, nothing decoded), as a JPEG the
    device can decode, or None: another format, or a colour mode nvJPEG does not read."""
    if opened.format not in ("JPEG", "MPO") or opened.mode not in ("RGB", "L"):
        return None
    orientation = int(opened.getexif().get(_ORIENTATION_TAG, 1))
    return EncodedJpeg(data, orientation if 1 <= orientation <= 8 else 1)


def blank_jpeg(size: int) -> bytes:
    """A grey square JPEG, `size` pixels a side: what decoders are warmed up on."""
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (128, 128, 128)).save(buffer, "JPEG")
    return buffer.getvalue()
