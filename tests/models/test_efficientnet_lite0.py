"""The built-in model on real photos it has never seen, run in process."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recognizer.engine.engine import ServedModel
from recognizer.models.efficientnet_lite0 import PREPROCESSING, _to_timm_keys
from recognizer.models.preprocessing import decode_image, prepare_input
from support import CAT_CLASSES, ESPRESSO, MILITARY_UNIFORM, MOPED, TRIPOD


def top(model: ServedModel, image: bytes, k: int) -> list[int]:
    pixels = prepare_input(decode_image(image), PREPROCESSING)[None]
    _, class_ids = model.backend(pixels, k)
    return [int(i) for i in class_ids[0]]


@pytest.mark.parametrize(
    ("photo", "expected", "within"),
    [
        ("cat", CAT_CLASSES, 1),
        ("coffee", {ESPRESSO}, 1),
        ("camera", {TRIPOD}, 1),
        ("motorcycle", {MOPED}, 1),
        ("hopper", {MILITARY_UNIFORM}, 3),
    ],
)
def test_real_photos_get_their_classes(
    default_model: ServedModel,
    photos: dict[str, bytes],
    photo: str,
    expected: set[int],
    within: int,
) -> None:
    assert expected & set(top(default_model, photos[photo], within))


def test_scores_are_probabilities(default_model: ServedModel, photos: dict[str, bytes]) -> None:
    pixels = prepare_input(decode_image(photos["coffee"]), PREPROCESSING)[None]
    scores, _ = default_model.backend(pixels, 1000)
    assert scores.shape == (1, 1000)
    assert np.isclose(scores.sum(), 1.0, atol=1e-4)
    assert (np.diff(scores[0]) <= 0).all()


def test_weights_that_do_not_fit_are_refused_naming_the_tensor() -> None:
    target = {"conv_stem.weight": torch.zeros(32, 3, 3, 3)}
    with pytest.raises(ValueError, match=r"_conv_stem\.weight"):
        _to_timm_keys({"_conv_stem.weight": torch.zeros(16, 3, 3, 3)}, target)
    with pytest.raises(ValueError, match="2 tensors"):
        _to_timm_keys({"a": torch.zeros(1), "b": torch.zeros(1)}, target)
