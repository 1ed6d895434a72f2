"""The images int8 quantisation is calibrated and checked on: made from photos we ship.

Fourteen real photos (scikit-image's and matplotlib's samples, public domain or CC0: see
models/data/photos/SOURCES.md) are cut into random crops, flipped and changed in
brightness, contrast and colour, then prepared exactly as the server prepares requests
(prepare_input). Each set has its own seed, so the held-out set that gates a quantised
model never shares an image with the calibration set, and every start makes the same
sets, which is what lets a quantised model be cached.

The held-out views also come changed in ways that should not change a model's answer
(BENIGN_CHANGES): how often fp32 itself changes its answer under them is the floor the
int8 gate measures against (int8.py).
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable
from functools import cache
from importlib import resources

import numpy as np
from PIL import Image, ImageEnhance

from recognizer.config.models import Interpolation
from recognizer.models.preprocessing import (
    Preprocessing,
    prepare_input,
    resized_size,
)

CALIBRATION_SEED = 15
VALIDATION_SEED = 16
HELD_OUT_SEED = 17
SMALLEST_CROP = 0.3  # of the photo's area
COLOUR_CHANGE = 0.3  # brightness, contrast and saturation vary by up to this factor


@cache
def photos() -> tuple[Image.Image, ...]:
    """The shipped photos, decoded, in name order."""
    folder = resources.files("recognizer.models") / "data" / "photos"
    images = []
    for entry in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if entry.name.endswith(".jpg"):
            with entry.open("rb") as file, Image.open(file) as image:
                images.append(image.convert("RGB"))
    return tuple(images)


def photo_digest() -> str:
    """A digest of the photos' bytes, for cache keys: other photos, other calibration."""
    import hashlib

    digest = hashlib.sha256()
    folder = resources.files("recognizer.models") / "data" / "photos"
    for entry in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if entry.name.endswith(".jpg"):
            digest.update(entry.name.encode())
            digest.update(entry.read_bytes())
    return digest.hexdigest()[:16]


def image_set(preprocessing: Preprocessing, count: int, *, seed: int) -> np.ndarray:
    """`count` varied views of the photos, as (count, crop, crop, 3) uint8 model input."""
    return np.stack([prepare_input(view, preprocessing) for view in views(count, seed=seed)])


def views(count: int, *, seed: int) -> list[Image.Image]:
    """`count` varied views of the photos (random crops, mirrored or not, in changed light
    and colour), the same for the same seed."""
    rng = np.random.default_rng(seed)
    sources = photos()
    return [_varied(sources[index % len(sources)], rng) for index in range(count)]


def _reencoded(view: Image.Image, preprocessing: Preprocessing, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    view.save(buffer, "JPEG", quality=quality)
    with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
        return prepare_input(decoded.convert("RGB"), preprocessing)


def _shifted(view: Image.Image, preprocessing: Preprocessing) -> np.ndarray:
    """The view moved by one pixel of the model's input, right and down."""
    width, height = view.size
    step = max(1, round(width / resized_size(view.size, preprocessing.resize)[0]))
    return prepare_input(view.crop((step, step, width, height)), preprocessing)


def _resampled(view: Image.Image, preprocessing: Preprocessing) -> np.ndarray:
    """The view resized with another filter than the model's (bicubic, or bilinear)."""
    other: Interpolation = "bilinear" if preprocessing.interpolation == "bicubic" else "bicubic"
    return prepare_input(view, dataclasses.replace(preprocessing, interpolation=other))


def _mirrored(view: Image.Image, preprocessing: Preprocessing) -> np.ndarray:
    return prepare_input(view.transpose(Image.Transpose.FLIP_LEFT_RIGHT), preprocessing)


BENIGN_CHANGES: dict[str, Callable[[Image.Image, Preprocessing], np.ndarray]] = {
    "JPEG re-encoded at quality 90": lambda view, pre: _reencoded(view, pre, 90),
    "JPEG re-encoded at quality 75": lambda view, pre: _reencoded(view, pre, 75),
    "shifted by one pixel": _shifted,
    "resized with another filter": _resampled,
    "mirrored": _mirrored,
}
"""Changes an image goes through in ordinary use that should not change what it shows:
a pipeline's JPEG re-encoding (90 is common for cameras and web pages, 75 is Pillow's and
libjpeg's default), a crop one pixel off, another resampling filter, a mirror image (which
classifiers are trained to ignore). Each maps a view to model input."""


def benign_sets(preprocessing: Preprocessing, count: int, *, seed: int) -> dict[str, np.ndarray]:
    """The same views as image_set(seed), once per benign change, as model input."""
    held_out = views(count, seed=seed)
    return {
        change: np.stack([apply(view, preprocessing) for view in held_out])
        for change, apply in BENIGN_CHANGES.items()
    }


def _varied(photo: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A random crop of the photo, maybe mirrored, in changed light and colour."""
    width, height = photo.size
    area = width * height * rng.uniform(SMALLEST_CROP, 1.0)
    aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
    crop_w = min(width, round((area * aspect) ** 0.5))
    crop_h = min(height, round((area / aspect) ** 0.5))
    left = int(rng.integers(0, width - crop_w + 1))
    top = int(rng.integers(0, height - crop_h + 1))
    view = photo.crop((left, top, left + crop_w, top + crop_h))
    if rng.random() < 0.5:
        view = view.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        view = enhancer(view).enhance(rng.uniform(1 - COLOUR_CHANGE, 1 + COLOUR_CHANGE))
    return view
