"""The values that flow through the engine: what callers ask for and what they get back."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from recognizer.models.spec import ModelSpec


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """How to answer a request; empty or zero fields mean the server default."""

    model: str = ""
    top_k: int = 0
    min_score: float = 0.0
    language: str = ""


@dataclass(frozen=True, slots=True)
class TopClasses:
    """A model's best classes for one image, best first: probabilities and class ids."""

    scores: np.ndarray
    class_ids: np.ndarray


@dataclass(frozen=True, slots=True)
class Label:
    """One ranked class: its index in the model output, its name and its probability."""

    class_id: int
    name: str
    score: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    """Where the server spent a request's time, in seconds; batch_size is its batch's."""

    queue_s: float = 0.0
    preprocess_s: float = 0.0
    inference_s: float = 0.0
    batch_size: int = 0
    cache_hit: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Classification:
    """The answer to one image: labels best first, in `language`, from `model`."""

    model: str
    language: str
    labels: tuple[Label, ...]
    timing: Timing


@dataclass(frozen=True, slots=True, kw_only=True)
class QuantizationCheck:
    """How an int8 model agreed with fp32 on held-out images, and the agreement required."""

    top1_agreement: float
    mean_top5_difference: float
    held_out_images: int
    min_agreement: float

    @property
    def passed(self) -> bool:
        return self.top1_agreement >= self.min_agreement


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelStatus:
    """How a served model runs (spec, backend, device, precision, batch limit) and what it
    has done.

    `batch_sizes` counts the batches run by size; `inference_s` is their total model time.
    `quantization_check` is an int8 model's comparison with fp32, None for other precisions.
    `serving` is the watchdog's verdict.
    """

    spec: ModelSpec
    backend: str
    device: str
    precision: str
    max_batch_size: int
    quantization_check: QuantizationCheck | None = None
    pending: int = 0
    serving: bool = True
    batch_sizes: Mapping[int, int] = field(default_factory=dict)
    inference_s: float = 0.0


class Health(enum.Enum):
    """Whether a model works: the watchdog's verdict (engine/watchdog.py)."""

    SERVING = "serving"
    STALLED = "every worker is in a model call that does not return"
    FAILING = "its calls fail, and so does a blank image"

    @property
    def serving(self) -> bool:
        return self is Health.SERVING
