"""The calibration and held-out images: real photos, varied, the same at every start."""

from __future__ import annotations

import numpy as np

from recognizer.engine.backends.calibration import (
    BENIGN_CHANGES,
    CALIBRATION_SEED,
    HELD_OUT_SEED,
    benign_sets,
    image_set,
    photo_digest,
    photos,
)
from recognizer.models.efficientnet_lite0 import PREPROCESSING


def test_the_sets_are_model_input_made_the_same_way_every_time() -> None:
    first = image_set(PREPROCESSING, 20, seed=CALIBRATION_SEED)
    assert first.shape == (20, 224, 224, 3) and first.dtype == np.uint8
    assert (first == image_set(PREPROCESSING, 20, seed=CALIBRATION_SEED)).all()
    assert len(photos()) >= 10 and len(photo_digest()) == 16


def test_no_held_out_image_is_a_calibration_image() -> None:
    calibration = image_set(PREPROCESSING, 60, seed=CALIBRATION_SEED).reshape(60, -1)
    held_out = image_set(PREPROCESSING, 60, seed=HELD_OUT_SEED).reshape(60, -1)
    differences = np.abs(
        calibration[:, None, :].astype(np.int16) - held_out[None, :, :].astype(np.int16)
    ).mean(axis=2)
    assert differences.min() > 1.0  # mean difference per pixel: no two images are the same


def test_views_differ_from_each_other() -> None:
    views = image_set(PREPROCESSING, 28, seed=HELD_OUT_SEED)
    # the two views of the first photo (photos cycle) are different crops and colours
    assert np.abs(views[0].astype(np.int16) - views[len(photos())].astype(np.int16)).mean() > 5


def test_each_benign_change_changes_the_held_out_views_a_little() -> None:
    plain = image_set(PREPROCESSING, 14, seed=HELD_OUT_SEED).astype(np.int16)
    changed = benign_sets(PREPROCESSING, 14, seed=HELD_OUT_SEED)
    assert set(changed) == set(BENIGN_CHANGES)
    for change, pixels in changed.items():
        difference = np.abs(pixels.astype(np.int16) - plain).mean()
        assert 0 < difference < 60, change  # changed, and still the same picture
