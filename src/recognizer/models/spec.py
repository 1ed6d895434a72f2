"""What a served model is: its name, classes, input and output conventions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from recognizer.models.labels import Labels
from recognizer.models.preprocessing import Preprocessing

if TYPE_CHECKING:  # only for LoadedModel: specs and configs stay importable without torch
    import torch

Activation = Literal["softmax", "sigmoid"]
ACTIVATIONS: tuple[Activation, ...] = ("softmax", "sigmoid")


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
