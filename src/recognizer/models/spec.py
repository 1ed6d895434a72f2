"""What a served model is: its name, classes, input and output conventions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from recognizer.models.labels import Labels
from recognizer.models.preprocessing import Preprocessing

Activation = Literal["softmax", "sigmoid"]


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Everything the engine needs to know about a model, apart from its weights.

    `activation` turns logits into scores: softmax for single-label classifiers,
    sigmoid for multi-label ones.
    """

    name: str
    architecture: str
    source_format: str
    labels: Labels
    preprocessing: Preprocessing
    activation: Activation = "softmax"

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
    """A spec with its network, which maps normalised float NCHW input to logits."""

    spec: ModelSpec
    network: torch.nn.Module | OnnxGraph
