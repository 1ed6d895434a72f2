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
from collections.abc import Callable, Sequence
from typing import cast

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as tv

from recognizer.errors import InvalidImageError
from recognizer.models.jpeg import DeviceInput, EncodedJpeg
from recognizer.models.preprocessing import Preprocessing, resized_size

# Largest difference in any class probability between this path and Pillow's: Pillow decodes
# large JPEGs at a reduced scale (draft), and the two resamplers differ by a level or two.
DEVICE_DECODE_TOLERANCE = 0.1
# torchvision 0.29 deprecates its image codecs in favour of TorchCodec, which does not
# batch nvJPEG decoding; the CUDA images we target ship torchvision's, so keep using them.
_DEPRECATED_CODECS = "The image decoding and encoding capabilities of TorchVision"
warnings.filterwarnings("ignore", message=_DEPRECATED_CODECS, category=DeprecationWarning)
_INTERPOLATIONS = {
    "bilinear": tv.InterpolationMode.BILINEAR,
    "bicubic": tv.InterpolationMode.BICUBIC,
    "nearest": tv.InterpolationMode.NEAREST,
}

Upload = Callable[[np.ndarray], torch.Tensor]
"""Moves a uint8 host array to the device (a backend's pinned staging, on CUDA)."""


def prepare_batch(
    rows: Sequence[DeviceInput],
    preprocessing: Preprocessing,
    device: torch.device,
    *,
    upload: Upload | None = None,
) -> tuple[torch.Tensor, list[InvalidImageError | None]]:
    """The batch as the network takes it, (N, 3, crop, crop) float32, and each row's error.

    Pillow's rows go to the device in one copy (`upload`, by default a plain one). JPEGs are
    decoded in one call, and those of one size and orientation resized together. A row
    nvJPEG cannot decode (corrupt data the header did not show) gets an InvalidImageError
    and zeros in its place, so its neighbours are still answered.
    """
    crop = preprocessing.crop
    errors: list[InvalidImageError | None] = [None] * len(rows)
    prepared: list[torch.Tensor | None] = [None] * len(rows)
    pixel_rows = [(index, row) for index, row in enumerate(rows) if isinstance(row, np.ndarray)]
    if pixel_rows:
        stacked = np.stack([row for _, row in pixel_rows])
        moved = upload(stacked) if upload else torch.from_numpy(stacked).to(device)
        for (index, _), pixels in zip(pixel_rows, moved.permute(0, 3, 1, 2).float(), strict=True):
            prepared[index] = pixels
    jpegs = [(index, row) for index, row in enumerate(rows) if isinstance(row, EncodedJpeg)]
    alike: dict[tuple[int, ...], list[tuple[int, torch.Tensor]]] = {}
    for (index, row), image in zip(jpegs, _decode([row for _, row in jpegs], device), strict=True):
        if image is None:
            errors[index] = InvalidImageError(
                "image data is truncated or corrupt", reason="IMAGE_CORRUPT"
            )
            prepared[index] = torch.zeros(3, crop, crop, device=device)
            continue
        upright = _upright(image, row.orientation)
        alike.setdefault(tuple(upright.shape), []).append((index, upright))
    for group in alike.values():
        images = torch.stack([image for _, image in group])
        for (index, _), ready in zip(group, _resize_and_crop(images, preprocessing), strict=True):
            prepared[index] = ready
    batch = torch.stack(cast(list[torch.Tensor], prepared))  # every row is filled above
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


def _resize_and_crop(images: torch.Tensor, preprocessing: Preprocessing) -> torch.Tensor:
    """Shorter side to `resize`, centre crop `crop`: (N, 3, H, W) uint8 to float on 0-255."""
    height, width = images.shape[2:]
    resized_w, resized_h = resized_size((width, height), preprocessing.resize)
    resized = tv.resize(
        images.float(),
        [resized_h, resized_w],
        interpolation=_INTERPOLATIONS[preprocessing.interpolation],
        antialias=True,
    )
    cropped: torch.Tensor = tv.center_crop(resized, [preprocessing.crop, preprocessing.crop])
    cropped = cropped.clamp(0, 255)
    return cropped.flip(1) if preprocessing.channel_order == "BGR" else cropped
