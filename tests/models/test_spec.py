"""A loaded model's spec and preprocessing, as its config shapes them."""

from __future__ import annotations

import pytest

from recognizer.config.models import ModelConfig
from recognizer.errors import ConfigError
from recognizer.models.labels import Labels
from recognizer.models.preprocessing import Preprocessing
from recognizer.models.spec import configured_preprocessing, configured_spec


def test_overrides_apply_over_the_format_defaults() -> None:
    config = ModelConfig(path="m.pt", crop=200, channel_order="BGR")
    assert configured_preprocessing(config, Preprocessing()) == Preprocessing(
        resize=256, crop=200, channel_order="BGR"
    )
    with pytest.raises(ConfigError, match=r"model 'm': crop \(300\) must be .* at most resize"):
        configured_preprocessing(ModelConfig(path="m.pt", crop=300), Preprocessing())


def test_the_spec_takes_the_smaller_batch_limit() -> None:
    labels = Labels({"zh": ["猫"]})
    config = ModelConfig(path="m.onnx", max_batch_size=8, activation="sigmoid")
    spec = configured_spec(
        config, architecture="", source_format="onnx", labels=labels, preprocessing=Preprocessing()
    )
    assert (spec.name, spec.max_batch_size, spec.activation) == ("m", 8, "sigmoid")
    fixed = configured_spec(
        config,
        architecture="",
        source_format="onnx",
        labels=labels,
        preprocessing=Preprocessing(),
        max_batch_size=1,
    )
    assert fixed.max_batch_size == 1
