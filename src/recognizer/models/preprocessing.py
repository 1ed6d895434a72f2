"""Turn image bytes into the uint8 pixels a model takes, without touching the event loop.

Decoding and resizing run in a thread pool (Pillow releases the GIL); the result stays
uint8 HWC until the inference backend normalises a whole batch at once on its device.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from recognizer.errors import InvalidImageError

# The formats the contract promises; the JPEG opener also reads MPO, which many cameras write.
SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
DEFAULT_MAX_PIXELS = 64_000_000

Interpolation = Literal["bilinear", "bicubic", "nearest"]
INTERPOLATIONS: tuple[Interpolation, ...] = ("bilinear", "bicubic", "nearest")
ChannelOrder = Literal["RGB", "BGR"]
CHANNEL_ORDERS: tuple[ChannelOrder, ...] = ("RGB", "BGR")
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


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode an encoded image to upright RGB, or raise InvalidImageError saying why not.

    The pixel limit is checked from the header, before any pixel is decoded, so a
    decompression bomb costs nothing.
    """
    if not data:
        raise InvalidImageError("image is empty", reason="IMAGE_EMPTY")
    # Pillow's process-wide guard stays on, as some decoders (GIF) allocate a canvas while
    # opening, before our check; it is only raised so that it never refuses (nor warns
    # about) what we allow.
    pillow_limit = Image.MAX_IMAGE_PIXELS
    if pillow_limit is not None and pillow_limit < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        image = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    except Image.DecompressionBombError as error:
        raise too_large(None, max_pixels) from error
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise InvalidImageError(
            f"image is not a supported format ({', '.join(SUPPORTED_FORMATS)})",
            reason="IMAGE_UNDECODABLE",
        ) from error
    width, height = image.size
    if width * height > max_pixels:
        raise too_large(image.size, max_pixels)
    return image


def prepare_input(image: Image.Image, preprocessing: Preprocessing) -> np.ndarray:
    """Resize the shorter side, centre-crop and return (crop, crop, 3) uint8 pixels.

    The channels come in the model's `channel_order`, so backends need not know it.

    Equivalent to torchvision's Resize(resize) + CenterCrop(crop), but only the crop is
    resampled (Pillow's `box`), and large JPEGs are decoded at reduced scale (`draft`),
    so cost follows the output size rather than the photo's.
    """
    size, crop = preprocessing.resize, preprocessing.crop
    try:
        if image.format in ("JPEG", "MPO"):
            image.draft("RGB", resized_size(image.size, size))
        image = to_rgb(ImageOps.exif_transpose(image))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise InvalidImageError(
            "image data is truncated or corrupt", reason="IMAGE_CORRUPT"
        ) from error
    width, height = image.size
    resized_w, resized_h = resized_size((width, height), size)
    left, top = round((resized_w - crop) / 2), round((resized_h - crop) / 2)
    scale_x, scale_y = width / resized_w, height / resized_h
    box = (left * scale_x, top * scale_y, (left + crop) * scale_x, (top + crop) * scale_y)
    cropped = image.resize((crop, crop), _RESAMPLE[preprocessing.interpolation], box=box)
    pixels = np.array(cropped, dtype=np.uint8)  # writable, so torch can wrap it without a copy
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
    image.load()
    if image.mode == "RGB":
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        pixels = np.asarray(image).astype(np.uint32)
        return Image.fromarray((pixels >> 8).clip(0, 255).astype(np.uint8)).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode == "P" and "transparency" in image.info
    ):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def too_large(
    size: tuple[int, int] | None, max_pixels: int, field: str = "image"
) -> InvalidImageError:
    """The error for an image over the pixel limit, naming its size and the limit."""
    shown = f"{size[0]}x{size[1]} pixels" if size else "too many pixels"
    limit = f"{max_pixels:,} pixels ({math.isqrt(max_pixels)}x{math.isqrt(max_pixels)})"
    return InvalidImageError(
        f"{field} is {shown}, over the limit of {limit}", reason="IMAGE_TOO_LARGE", field=field
    )
