"""Turn image bytes into the uint8 pixels a model takes, without touching the event loop.

Decoding and resizing run in a thread pool (Pillow releases the GIL); the result stays
uint8 HWC until the inference backend normalises a whole batch at once on its device.

Memory follows the output where the format allows and is known beforehand where it does
not: JPEG decodes at a reduced scale (libjpeg's DCT scaling, the one reduced decoding
Pillow's decoders offer; PNG, WebP, GIF, BMP and TIFF decode at full size), RGB,
grayscale and 16- and 32-bit grayscale are resampled as they are, and every other mode
(transparency, palettes, CMYK) takes one working copy at most. `decode_cost` says from
the header what an image will hold at its peak, so decoding can be admitted against a
memory budget.

Work is bounded before it starts too: a JPEG's markers are walked first and one of too
many scans or markers is refused (models/jpeg_markers.py). Decoding can be stopped: the
decoders read their input chunk by chunk, and a read raises DecodingStopped once the
caller's `stop()` says nobody waits for the image.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, TiffImagePlugin, UnidentifiedImageError

from recognizer.config.models import ChannelOrder, Interpolation
from recognizer.errors import InvalidImageError
from recognizer.models.jpeg_markers import STRAY_BYTES, read_markers

# The formats the contract promises; the JPEG opener also reads MPO, which many cameras write.
SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
DEFAULT_MAX_PIXELS = 64_000_000
DEFAULT_MAX_JPEG_SCANS = 100  # Chrome and Android (Skia) stop at a JPEG's 100th scan
DEFAULT_MAX_JPEG_MARKERS = 4096
JPEG_SIGNATURE = b"\xff\xd8\xff"
# How much of a JPEG libjpeg is given at a time, so a stop is seen between chunks: a scan
# can cover every block of the image in a few bytes, so JPEG work per byte is the least
# bounded of any format's.
JPEG_CHUNK_BYTES = 4096
COEFFICIENT_BYTES = "coefficient_bytes"  # where decode_image leaves a JPEG's, in its info

CHANNEL_ORDERS: tuple[ChannelOrder, ...] = ("RGB", "BGR")
WHITE = (255, 255, 255)
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
_HIGH_BIT_DEPTH = ("I", "F", "I;16", "I;16B", "I;16L", "I;16N")  # resampled as they are
_AS_DECODED = ("RGB", "L", *_HIGH_BIT_DEPTH)
# The working copy a mode takes to become RGB or L: palettes, CMYK and RGBA take an RGB
# image; premultiplied or palette alpha an RGBA one first.
_WORKING_BYTES_PER_PIXEL = {"1": 1, "PA": 8, "La": 8, "RGBa": 8} | dict.fromkeys(_AS_DECODED, 0)
# libwebp decodes into a canvas and keeps the one before it, and Pillow copies the frame
# out of it before unpacking it: three more RGBA images beside the decoded one.
_WEBP_BYTES_PER_PIXEL = 3 * 4
ORIENTATION = 0x0112  # the EXIF tag
# TIFF tags
_TIFF_BITS_PER_SAMPLE, _TIFF_COMPRESSION, _TIFF_ROWS_PER_STRIP = 258, 259, 278
_TIFF_TILE_WIDTH, _TIFF_TILE_LENGTH = 322, 323
_ROTATED = range(2, 9)  # EXIF orientations other than upright: transposed, a copy each
_SIXTEEN_BIT = ("I", "I;16", "I;16B", "I;16L", "I;16N")
_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")
_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


@dataclass(frozen=True, kw_only=True)
class Preprocessing:
    """How a model wants its input: resize the shorter side, centre-crop, normalise.

    `channel_order` is the order the network takes its colour channels in (models from
    OpenCV pipelines take BGR); `mean` and `std` (on the 0-1 scale) are in that order too,
    and are applied by the inference backend.
    """

    resize: int = 256
    crop: int = 224
    interpolation: Interpolation = "bilinear"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    channel_order: ChannelOrder = "RGB"

    def __post_init__(self) -> None:
        if not 0 < self.crop <= self.resize:
            raise ValueError(
                f"crop ({self.crop}) must be positive and at most resize ({self.resize})"
            )
        if self.interpolation not in _RESAMPLE:
            raise ValueError(f"interpolation must be one of {sorted(_RESAMPLE)}")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError("mean and std need one value per colour channel, three each")
        if min(self.std) <= 0:
            raise ValueError(f"std values must be positive, not {self.std}")
        if self.channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be RGB or BGR, not {self.channel_order!r}")


class DecodingStopped(Exception):
    """Decoding stopped between two chunks of its input, as its `stop()` asked."""


class _StoppableInput(io.BytesIO):
    """An image's bytes as a decoder reads them, chunk by chunk: a read raises
    DecodingStopped once `stop()` is true, which ends whichever decoder is reading."""

    def __init__(self, data: bytes, stop: Callable[[], bool]) -> None:
        super().__init__(data)
        self._stop = stop

    def read(self, size: int | None = -1, /) -> bytes:
        if self._stop():
            raise DecodingStopped
        return super().read(size)


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_jpeg_scans: int = DEFAULT_MAX_JPEG_SCANS,
    max_jpeg_markers: int = DEFAULT_MAX_JPEG_MARKERS,
    stop: Callable[[], bool] | None = None,
) -> Image.Image:
    """Open an encoded image (its header read, nothing decoded yet), or raise
    InvalidImageError saying why not.

    The pixel limit is checked from the header, before any pixel is decoded, so a
    decompression bomb costs nothing; a JPEG's markers are walked first, and one of more
    scans or markers than allowed is refused before Pillow reads it. Where `stop` is
    given, decoding the image later raises DecodingStopped at its next chunk once
    `stop()` is true.
    """
    if not data:
        raise InvalidImageError("image is empty", reason="IMAGE_EMPTY")
    coefficient_bytes = None
    if data.startswith(JPEG_SIGNATURE):
        coefficient_bytes = check_jpeg(data, max_scans=max_jpeg_scans, max_markers=max_jpeg_markers)
    # Pillow's process-wide guard stays on, as some decoders (GIF) allocate a canvas while
    # opening, before our check; it is only raised so that it never refuses (nor warns
    # about) what we allow. Pillow warns about some malformed files (corrupt EXIF in a
    # TIFF) and goes on; where warnings are errors, such a file is one it cannot read.
    pillow_limit = Image.MAX_IMAGE_PIXELS
    if pillow_limit is not None and pillow_limit < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        source = io.BytesIO(data) if stop is None else _StoppableInput(data, stop)
        image = Image.open(source, formats=SUPPORTED_FORMATS)
    except Image.DecompressionBombError as error:
        raise too_large(None, max_pixels) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Warning) as error:
        raise InvalidImageError(
            f"image is not a supported format ({', '.join(SUPPORTED_FORMATS)})",
            reason="IMAGE_UNDECODABLE",
        ) from error
    width, height = image.size
    if width * height > max_pixels:
        raise too_large(image.size, max_pixels)
    if coefficient_bytes is not None and image.format in ("JPEG", "MPO"):
        image.info[COEFFICIENT_BYTES] = coefficient_bytes
        image.decodermaxblock = JPEG_CHUNK_BYTES
    return image


def check_jpeg(data: bytes, *, max_scans: int, max_markers: int) -> int:
    """Refuse a JPEG whose decoding would cost more than its size tells, from its markers
    alone; return the coefficient bytes libjpeg will hold decoding it (see JpegMarkers)."""
    markers = read_markers(data, max_scans=max_scans, max_markers=max_markers)
    if markers.scans > max_scans:
        raise InvalidImageError(
            f"image is a JPEG of more than {max_scans} scans, the limit: each scan decodes"
            " the whole image again",
            reason="IMAGE_TOO_COMPLEX",
        )
    if markers.markers > max_markers:
        raise InvalidImageError(
            f"image is a JPEG of more than {max_markers} markers, the limit",
            reason="IMAGE_TOO_COMPLEX",
        )
    if markers.out_of_order:
        raise InvalidImageError(
            "image is a JPEG whose scans bring some coefficients again, out of the order"
            " the standard allows",
            reason="IMAGE_CORRUPT",
        )
    if markers.stray_bytes > STRAY_BYTES:
        raise InvalidImageError(
            f"image is a JPEG with more than {STRAY_BYTES // 1024} KiB between its markers"
            " that belong to none",
            reason="IMAGE_CORRUPT",
        )
    return markers.coefficient_bytes


def reduce_on_decode(image: Image.Image, shorter_side: int) -> None:
    """Have a JPEG decode at the smallest DCT scale (1/2, 1/4, 1/8) keeping its shorter side
    at least `shorter_side`; other formats decode at full size. Call it before decoding."""
    if image.format in ("JPEG", "MPO"):
        image.draft("RGB", resized_size(image.size, shorter_side))


def decode_cost(image: Image.Image, preprocessing: Preprocessing) -> int:
    """Bytes an opened, not yet decoded, image will hold at most while it is decoded and
    prepared: its pixels as Pillow stores them, the working copy its mode needs, the copy
    an EXIF rotation makes, what its decoder holds beside them (a multi-scan JPEG's
    coefficients, WebP's canvases, a compressed TIFF's strip or tile), and the rows the
    crop is resampled from. `tests/models/test_preprocessing.py` measures every format's
    peak against it."""
    width, height = image.size
    pixels = width * height
    decoded = pixels * _BYTES_PER_PIXEL.get(image.mode, 4)
    working = pixels * _WORKING_BYTES_PER_PIXEL.get(image.mode, 4)
    rotated = decoded if _may_be_rotated(image) else 0
    # Resampling first shrinks the crop's rows to its width, at most 4 bytes a pixel.
    resampled = 4 * preprocessing.crop * min(width, height)
    return decoded + working + rotated + _decoder_bytes(image) + resampled


def _decoder_bytes(image: Image.Image) -> int:
    """What the image's decoder holds beside the decoded pixels, at its peak."""
    if image.format == "WEBP":
        return image.width * image.height * _WEBP_BYTES_PER_PIXEL
    if isinstance(image, TiffImagePlugin.TiffImageFile):
        return _tiff_buffer_bytes(image)
    coefficients = image.info.get(COEFFICIENT_BYTES, 0)
    return coefficients if isinstance(coefficients, int) else 0


def _tiff_buffer_bytes(image: TiffImagePlugin.TiffImageFile) -> int:
    """The buffer libtiff decodes a compressed TIFF's strips or tiles into, one at a time:
    a whole strip or tile, unpacked to 4 bytes a pixel at least (YCbCr goes through RGBA).
    Pillow reads an uncompressed TIFF itself, in chunks, with no such buffer."""
    tags = image.tag_v2
    if tags.get(_TIFF_COMPRESSION, 1) == 1:
        return 0
    bits = tags.get(_TIFF_BITS_PER_SAMPLE, 8)
    bytes_per_pixel = max(4, -(-sum(bits if isinstance(bits, tuple) else (bits,)) // 8))
    tile_width, tile_length = tags.get(_TIFF_TILE_WIDTH), tags.get(_TIFF_TILE_LENGTH)
    if isinstance(tile_width, int) and isinstance(tile_length, int):
        return tile_width * tile_length * bytes_per_pixel
    rows = tags.get(_TIFF_ROWS_PER_STRIP, image.height)
    return min(rows if isinstance(rows, int) else image.height, image.height) * (
        image.width * bytes_per_pixel
    )


def _may_be_rotated(image: Image.Image) -> bool:
    """Whether the header's EXIF turns the image, without decoding it (a PNG may put its
    EXIF after the pixels, so one without EXIF in its header may still be turned)."""
    exif = image.info.get("exif")
    if isinstance(exif, bytes):
        try:
            parsed = Image.Exif()
            parsed.load(exif)
        except Exception:  # malformed EXIF: count the copy, to be safe
            return True
        return parsed.get(ORIENTATION, 1) in _ROTATED
    tags = getattr(image, "tag_v2", None)  # TIFF keeps its orientation among its tags
    if tags is not None:
        return tags.get(ORIENTATION, 1) in _ROTATED
    return image.format == "PNG"


def prepare_input(image: Image.Image, preprocessing: Preprocessing) -> np.ndarray:
    """Resize the shorter side, centre-crop and return (crop, crop, 3) uint8 pixels.

    The channels come in the model's `channel_order`, so backends need not know it.

    Equivalent to torchvision's Resize(resize) + CenterCrop(crop), but only the crop is
    resampled (Pillow's `box`), from the image as decoded where it is RGB or grayscale
    (8, 16 or 32 bits, brought to 8 once cropped), and large JPEGs are decoded at reduced
    scale, so cost follows the output size rather than the photo's.
    """
    size, crop = preprocessing.resize, preprocessing.crop
    try:
        reduce_on_decode(image, size)
        ImageOps.exif_transpose(image, in_place=True)
        image = flatten(image)
    except (OSError, SyntaxError, ValueError, Warning, Image.DecompressionBombError) as error:
        raise InvalidImageError(
            "image data is truncated or corrupt", reason="IMAGE_CORRUPT"
        ) from error
    width, height = image.size
    resized_w, resized_h = resized_size((width, height), size)
    left, top = round((resized_w - crop) / 2), round((resized_h - crop) / 2)
    scale_x, scale_y = width / resized_w, height / resized_h
    box = (left * scale_x, top * scale_y, (left + crop) * scale_x, (top + crop) * scale_y)
    cropped = image.resize((crop, crop), _RESAMPLE[preprocessing.interpolation], box=box)
    pixels = np.array(eight_bit(cropped).convert("RGB"), dtype=np.uint8)  # writable, for torch
    if preprocessing.channel_order == "BGR":
        return np.ascontiguousarray(pixels[..., ::-1])
    return pixels


def resized_size(size: tuple[int, int], shorter: int) -> tuple[int, int]:
    """torchvision's Resize(int) arithmetic: shorter side to `shorter`, aspect kept."""
    width, height = size
    if width <= height:
        return shorter, int(shorter * height / width)
    return int(shorter * width / height), shorter


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB: alpha over white, 16-bit scaled, not clipped."""
    return eight_bit(flatten(image)).convert("RGB")


def flatten(image: Image.Image) -> Image.Image:
    """The image as RGB or grayscale (L, or 16- or 32-bit, see eight_bit) with alpha laid
    over white: as it is for those, else through one working copy of its pixels.

    A palette's transparency is laid over white in the palette itself (256 colours, not
    every pixel); other alpha is blended into a white RGB image, pixel by pixel in C.
    """
    image.load()
    if image.mode in _AS_DECODED:
        return image
    if image.mode == "1":
        return image.convert("L")
    if image.mode == "P" and "transparency" in image.info:
        _palette_over_white(image)
    if image.mode in ("PA", "RGBa", "La"):
        image = image.convert("RGBA")
    if image.mode in _ALPHA:
        flat = Image.new("RGB", image.size, WHITE)
        flat.paste(image, mask=image)
        return flat
    return image.convert("RGB")


def eight_bit(image: Image.Image) -> Image.Image:
    """16- and 32-bit integer grayscale scaled to 8 bits (the top byte of 16), not clipped;
    any other mode as it is. Done once cropped, so it costs no copy of the whole image."""
    if image.mode in _SIXTEEN_BIT:
        return Image.fromarray((np.asarray(image) >> 8).clip(0, 255).astype(np.uint8))
    return image


def _palette_over_white(image: Image.Image) -> None:
    """Lay a P image's transparent colours over white in its palette, in place."""
    transparency = image.info.pop("transparency")
    palette = image.getpalette("RGB") or []
    colours = len(palette) // 3
    if isinstance(transparency, int):
        alphas = [0 if index == transparency else 255 for index in range(colours)]
    else:
        alphas = [*transparency[:colours], *[255] * (colours - len(transparency))]
    image.putpalette(
        [
            round(value * alpha / 255 + 255 - alpha)
            for rgb, alpha in zip(zip(*[iter(palette)] * 3, strict=True), alphas, strict=True)
            for value in rgb
        ],
        "RGB",
    )


def too_large(
    size: tuple[int, int] | None, max_pixels: int, field: str = "image"
) -> InvalidImageError:
    """The error for an image over the pixel limit, naming its size and the limit."""
    shown = f"{size[0]}x{size[1]} pixels" if size else "too many pixels"
    limit = f"{max_pixels:,} pixels ({math.isqrt(max_pixels)}x{math.isqrt(max_pixels)})"
    return InvalidImageError(
        f"{field} is {shown}, over the limit of {limit}", reason="IMAGE_TOO_LARGE", field=field
    )
