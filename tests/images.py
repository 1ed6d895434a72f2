"""Images the tests make from real photos: other formats, modes, orientations, broken ones."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def encode(image: Image.Image, format: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **params)
    return buffer.getvalue()


def open_image(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels: a decompression bomb's shape."""
    png = encode(Image.new("L", (1, 1)), "PNG")
    ihdr_at = png.index(b"IHDR")
    header = struct.pack(">II", width, height) + png[ihdr_at + 12 : ihdr_at + 17]
    chunk = b"IHDR" + header
    return (
        png[: ihdr_at - 4]
        + struct.pack(">I", len(header))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + png[ihdr_at + 4 + len(header) + 4 :]
    )


def noise_png(side: int, seed: int = 0) -> bytes:
    """An incompressible PNG: side x side random RGB pixels, about 3 * side**2 bytes."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "PNG", compress_level=1)


def with_exif_rotation(image: Image.Image) -> bytes:
    """A JPEG stored rotated by 90 degrees whose EXIF orientation (6) turns it upright again."""
    stored = image.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())
