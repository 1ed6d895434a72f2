"""What a served model is: its name, classes, input and output conventions."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from recognizer.config.models import PREPROCESSING_KEYS, Activation, ModelConfig
from recognizer.errors import ConfigError
from recognizer.models.labels import Labels
from recognizer.models.preprocessing import Preprocessing

if TYPE_CHECKING:  # only for LoadedModel: specs and configs stay importable without torch
    import torch


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Everything the engine needs to know about a model, apart from its weights.

    `activation` turns logits into scores: softmax for single-label classifiers,
    sigmoid for multi-label ones. `max_batch_size` caps the engine's batch for this
    model (one that needs much memory per image, say); None leaves it to the engine.
    """

    name: str
    architecture: str
    source_format: str
    labels: Labels
    preprocessing: Preprocessing
    activation: Activation = "softmax"
    max_batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.max_batch_size is not None and self.max_batch_size < 1:
            raise ValueError(f"{self.name}: max_batch_size must be at least 1")

    @property
    def num_classes(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class OnnxGraph:
    """A serialised ONNX model.

    Its one input is either uint8 NHWC pixels (the graphs we export, with normalisation
    inside) or normalised float32 NCHW (ONNX files as users export them); its first
    output is logits.
    """

    data: bytes


@dataclass(frozen=True)
class LoadedModel:
    """A spec with its network: a PyTorch module taking normalised float NCHW input, or an
    ONNX graph (whose input is described on OnnxGraph); either outputs logits."""

    spec: ModelSpec
    network: torch.nn.Module | OnnxGraph


def configured_preprocessing(config: ModelConfig, defaults: Preprocessing) -> Preprocessing:
    """The format's or file's preprocessing with the config's overrides on top."""
    overrides = {key: getattr(config, key) for key in PREPROCESSING_KEYS}
    try:
        return dataclasses.replace(
            defaults, **{key: value for key, value in overrides.items() if value is not None}
        )
    except ValueError as error:
        raise ConfigError(f"model {config.name!r}: {error}") from error


def configured_spec(
    config: ModelConfig,
    *,
    architecture: str,
    source_format: str,
    labels: Labels,
    preprocessing: Preprocessing,
    max_batch_size: int | None = None,
) -> ModelSpec:
    """The spec of a model loaded for a config, from what the loader found.

    `preprocessing` already has the overrides (configured_preprocessing); the batch limit
    is the smaller of the model's own (a fixed ONNX batch, say) and the config's.
    """
    limits = [limit for limit in (max_batch_size, config.max_batch_size) if limit is not None]
    return ModelSpec(
        name=config.name,
        architecture=architecture,
        source_format=source_format,
        labels=labels,
        preprocessing=preprocessing,
        activation=config.activation or "softmax",
        max_batch_size=min(limits, default=None),
    )
