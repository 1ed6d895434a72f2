"""The images int8 quantisation is calibrated and checked on: made from photos we ship.

Fourteen real photos (scikit-image's and matplotlib's samples, public domain or CC0: see
models/data/photos/SOURCES.md) are cut into random crops, flipped and changed in
brightness, contrast and colour, then prepared exactly as the server prepares requests
(prepare_input). Each set has its own seed, so the held-out set that gates a quantised
model never shares an image with the calibration set, and every start makes the same
sets, which is what lets a quantised model be cached.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import numpy as np
from PIL import Image, ImageEnhance

from recognizer.models.preprocessing import Preprocessing, prepare_input

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
    rng = np.random.default_rng(seed)
    sources = photos()
    size = preprocessing.crop
    batch = np.empty((count, size, size, 3), dtype=np.uint8)
    for index in range(count):
        photo = sources[index % len(sources)]
        batch[index] = prepare_input(_varied(photo, rng), preprocessing)
    return batch


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
