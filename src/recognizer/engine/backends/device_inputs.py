"""JPEGs decoded, resized, cropped and normalised where the model runs, a batch at a time.

A GPU runs a small model thousands of times a second, while Pillow decodes about 240
photos a second per core, so on CUDA the preprocess pool only reads each JPEG's header
(its size, against the pixel limit, its EXIF orientation and colour mode) and the
inference worker decodes the whole batch with nvJPEG (torchvision's decode_jpeg on a list)
and prepares it on the device in one pass. Other formats, raw frames and JPEGs nvJPEG
cannot read (CMYK) still come from Pillow as uint8 pixels and join the same batch.

The same code runs on the CPU through libjpeg, which is how the tests hold it to the
Pillow path: resize the shorter side, centre-crop (torchvision's Resize + CenterCrop,
antialiased), then normalise, with the same answers to within DEVICE_DECODE_TOLERANCE.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as tv

from recognizer.errors import InvalidImageError
from recognizer.models.preprocessing import Preprocessing, decode_image, resized_size

# Largest difference in any class probability between this path and Pillow's: Pillow decodes
# large JPEGs at a reduced scale (draft), and the two resamplers differ by a level or two.
DEVICE_DECODE_TOLERANCE = 0.1
_ORIENTATION_TAG = 0x0112
# torchvision 0.29 deprecates its image codecs in favour of TorchCodec, which does not
# batch nvJPEG decoding; the CUDA images we target ship torchvision's, so keep using them.
_DEPRECATED_CODECS = "The image decoding and encoding capabilities of TorchVision"
warnings.filterwarnings("ignore", message=_DEPRECATED_CODECS, category=DeprecationWarning)
_INTERPOLATIONS = {
    "bilinear": tv.InterpolationMode.BILINEAR,
    "bicubic": tv.InterpolationMode.BICUBIC,
    "nearest": tv.InterpolationMode.NEAREST,
}


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
    image = decode_image(data, max_pixels=max_pixels)  # reads the header only
    if image.format not in ("JPEG", "MPO") or image.mode not in ("RGB", "L"):
        return None
    orientation = int(image.getexif().get(_ORIENTATION_TAG, 1))
    return EncodedJpeg(data, orientation if 1 <= orientation <= 8 else 1)


def prepare_batch(
    rows: Sequence[DeviceInput], preprocessing: Preprocessing, device: torch.device
) -> tuple[torch.Tensor, list[InvalidImageError | None]]:
    """The batch as the network takes it, (N, 3, crop, crop) float32, and each row's error.

    A row nvJPEG cannot decode (corrupt data the header did not show) gets an
    InvalidImageError and zeros in its place, so its neighbours are still answered.
    """
    jpegs = [index for index, row in enumerate(rows) if isinstance(row, EncodedJpeg)]
    decoded = _decode([row for row in rows if isinstance(row, EncodedJpeg)], device)
    crop = preprocessing.crop
    errors: list[InvalidImageError | None] = [None] * len(rows)
    prepared: list[torch.Tensor] = []
    by_row = dict(zip(jpegs, decoded, strict=True))
    for index, row in enumerate(rows):
        if isinstance(row, np.ndarray):
            pixels = torch.from_numpy(row).to(device, non_blocking=True).permute(2, 0, 1)
            prepared.append(pixels.float())
            continue
        image = by_row[index]
        if image is None:
            errors[index] = InvalidImageError(
                "image data is truncated or corrupt", reason="IMAGE_CORRUPT"
            )
            prepared.append(torch.zeros(3, crop, crop, device=device))
            continue
        prepared.append(_resize_and_crop(_upright(image, row.orientation), preprocessing))
    batch = torch.stack(prepared)
    mean = torch.tensor(preprocessing.mean, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(preprocessing.std, device=device).view(1, 3, 1, 1) * 255
    return (batch - mean) / std, errors


def _decode(jpegs: Sequence[EncodedJpeg], device: torch.device) -> list[torch.Tensor | None]:
    """Decode in one call; if that fails, one at a time, so only the bad ones are lost."""
    if not jpegs:
        return []
    data = [torch.frombuffer(bytearray(jpeg.data), dtype=torch.uint8) for jpeg in jpegs]
    try:
        return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:
        results: list[torch.Tensor | None] = []
        for one in data:
            try:
                results.append(decode_jpeg(one, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                results.append(None)
        return results


def _upright(image: torch.Tensor, orientation: int) -> torch.Tensor:
    """Apply an EXIF orientation to a (3, H, W) image, as Pillow's exif_transpose does."""
    height_width = (1, 2)
    if orientation == 2:
        return image.flip(2)
    if orientation == 3:
        return image.rot90(2, height_width)
    if orientation == 4:
        return image.flip(1)
    if orientation == 5:
        return image.transpose(1, 2)
    if orientation == 6:
        return image.rot90(3, height_width)
    if orientation == 7:
        return image.transpose(1, 2).rot90(2, height_width)
    if orientation == 8:
        return image.rot90(1, height_width)
    return image


def _resize_and_crop(image: torch.Tensor, preprocessing: Preprocessing) -> torch.Tensor:
    """Shorter side to `resize`, centre crop `crop`: float (3, crop, crop) on 0-255."""
    height, width = image.shape[1:]
    resized_w, resized_h = resized_size((width, height), preprocessing.resize)
    resized = tv.resize(
        image.float().unsqueeze(0),
        [resized_h, resized_w],
        interpolation=_INTERPOLATIONS[preprocessing.interpolation],
        antialias=True,
    )
    cropped: torch.Tensor = tv.center_crop(resized, [preprocessing.crop, preprocessing.crop])[0]
    cropped = cropped.clamp(0, 255)
    return cropped.flip(0) if preprocessing.channel_order == "BGR" else cropped
