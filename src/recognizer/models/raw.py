"""Raw frames: pixels a camera pipeline already holds, turned into an image without decoding.

Every layout is validated strictly (the buffer must be exactly the size its width,
height, format and stride imply) and converted by Pillow in C: packed RGB/BGR with or
without a fourth byte, 8-bit gray, and 4:2:0 YUV (NV12, I420) read as BT.601 limited
range, as video decoders and OpenCV produce it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from PIL import Image

from recognizer.errors import InvalidImageError
from recognizer.models.preprocessing import DEFAULT_MAX_PIXELS, too_large


class PixelFormat(Enum):
    """Pixel layouts: bytes per pixel in the (luma) plane, and Pillow's raw mode to read them."""

    RGB8 = (3, "RGB")
    BGR8 = (3, "BGR")
    RGBA8 = (4, "RGBX")  # alpha is ignored
    BGRA8 = (4, "BGRX")
    GRAY8 = (1, "L")
    NV12 = (1, "NV12")  # converted by _yuv420_to_rgb
    I420 = (1, "I420")

    @property
    def bytes_per_pixel(self) -> int:
        return self.value[0]

    def min_row_bytes(self, width: int) -> int:
        """Bytes in a row of `width` pixels; NV12's interleaved chroma rows round up to pairs."""
        if self is PixelFormat.NV12:
            return 2 * math.ceil(width / 2)
        return width * self.bytes_per_pixel


@dataclass(frozen=True, slots=True)
class RawFrame:
    """Decoded pixels; `row_stride` 0 means packed rows, `format` None an unknown format."""

    width: int
    height: int
    format: PixelFormat | None
    data: bytes
    row_stride: int = 0


# BT.601 limited range ("studio swing") to the full range Pillow's YCbCr conversion expects.
_LUMA_TO_FULL = [min(max(round((v - 16) * 255 / 219), 0), 255) for v in range(256)]
_CHROMA_TO_FULL = [min(max(round((v - 128) * 255 / 224 + 128), 0), 255) for v in range(256)]


# Bytes a frame's conversion holds per pixel: Pillow keeps RGB in 4 bytes a pixel, and 4:2:0
# goes through full-size planes (luma, two chroma, their range-corrected copies, YCbCr, RGB).
_CONVERSION_BYTES_PER_PIXEL = {PixelFormat.GRAY8: 1, PixelFormat.NV12: 14, PixelFormat.I420: 14}


def frame_cost(frame: RawFrame, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """Bytes converting the frame to an image will hold (its own buffer is already held)."""
    pixels = min(max(frame.width, 0) * max(frame.height, 0), max_pixels)
    per_pixel = _CONVERSION_BYTES_PER_PIXEL.get(frame.format, 4) if frame.format else 0
    return pixels * per_pixel


def frame_to_image(frame: RawFrame, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Validate a raw frame and return it as an RGB (or L) Pillow image."""
    if frame.format is None:
        raise _invalid(
            f"raw_image.format must be one of {', '.join(f.name for f in PixelFormat)}",
            field="raw_image.format",
        )
    width, height = frame.width, frame.height
    if width < 1 or height < 1:
        raise _invalid(f"raw_image is {width}x{height}; width and height must be positive")
    if width * height > max_pixels:
        raise too_large((width, height), max_pixels, field="raw_image")
    row_bytes = frame.format.min_row_bytes(width)
    stride = frame.row_stride or row_bytes
    if stride < row_bytes:
        raise _invalid(
            f"raw_image.row_stride {stride} is shorter than a row of {width}"
            f" {frame.format.name} pixels ({row_bytes} bytes)"
        )
    chroma_height = math.ceil(height / 2)
    chroma_stride = math.ceil(stride / 2)
    expected = {
        PixelFormat.NV12: stride * (height + chroma_height),
        PixelFormat.I420: stride * height + 2 * chroma_stride * chroma_height,
    }.get(frame.format, stride * height)
    if len(frame.data) != expected:
        raise _invalid(
            f"raw_image.data has {len(frame.data)} bytes, but a {width}x{height}"
            f" {frame.format.name} frame with row stride {stride} has {expected}",
            reason="RAW_SIZE_MISMATCH",
            field="raw_image.data",
        )
    if frame.format not in (PixelFormat.NV12, PixelFormat.I420):
        mode = "L" if frame.format is PixelFormat.GRAY8 else "RGB"
        raw_mode = frame.format.value[1]
        return Image.frombuffer(mode, (width, height), frame.data, "raw", raw_mode, stride, 1)
    return _yuv420_to_rgb(frame, frame.format, stride, chroma_stride)


def _yuv420_to_rgb(
    frame: RawFrame, pixel_format: PixelFormat, stride: int, chroma_stride: int
) -> Image.Image:
    size = (frame.width, frame.height)
    chroma_size = (math.ceil(frame.width / 2), math.ceil(frame.height / 2))
    luma_bytes = stride * frame.height
    luma = Image.frombuffer("L", size, frame.data, "raw", "L", stride, 1)
    chroma = frame.data[luma_bytes:]
    if pixel_format is PixelFormat.NV12:
        interleaved = Image.frombuffer("LA", chroma_size, chroma, "raw", "LA", stride, 1)
        blue, red = interleaved.split()
    else:
        plane = chroma_stride * chroma_size[1]
        blue = Image.frombuffer("L", chroma_size, chroma[:plane], "raw", "L", chroma_stride, 1)
        red = Image.frombuffer("L", chroma_size, chroma[plane:], "raw", "L", chroma_stride, 1)
    planes = (
        luma.point(_LUMA_TO_FULL),
        blue.resize(size, Image.Resampling.NEAREST).point(_CHROMA_TO_FULL),
        red.resize(size, Image.Resampling.NEAREST).point(_CHROMA_TO_FULL),
    )
    return Image.merge("YCbCr", planes).convert("RGB")


def _invalid(
    message: str, reason: str = "RAW_IMAGE_INVALID", field: str = "raw_image"
) -> InvalidImageError:
    return InvalidImageError(message, reason=reason, field=field)
