"""The values that flow through the engine: what callers ask for and what they get back."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from recognizer.models.spec import ModelSpec


class Priority(enum.IntEnum):
    """A request's class in the batch queue: a higher class is served first (batching.py).

    Unasked, a stream's frames are HIGH and unary calls NORMAL (a live camera waits on
    each answer; a batch job, on all of them), within the tenant's ceiling.
    """

    LOW = 1
    NORMAL = 2
    HIGH = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """How to answer a request; empty or zero fields mean the server default.

    `scores` asks for every class's score as well (Classification.scores), unnamed: the
    model ranks them all (up to --max-top-k) while only `top_k` labels are named, since
    naming a thousand labels costs a millisecond a request and placing scores a few
    microseconds.
    """

    model: str = ""
    top_k: int = 0
    min_score: float = 0.0
    language: str = ""
    scores: bool = False
    priority: Priority | None = None
    model_version: int = 0


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
    """The answer to one image: labels best first, in `language`, from `model`.

    `scores`, when Options.scores asked for it, holds every class's score by class id
    (float32): the model's best --max-top-k classes, which is all of them unless the model
    has more classes than that, and 0 for the rest.
    """

    model: str
    language: str
    labels: tuple[Label, ...]
    timing: Timing
    scores: np.ndarray | None = None
    model_version: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Fidelity:
    """How close a model's answers come to fp32's on the same images (or fp32's own answers
    on changed images): the share whose top-1 class is the same, the share whose fp32 top-1
    is within its top 5, and the mean absolute difference of fp32's top-5 probabilities."""

    top1_agreement: float
    top5_containment: float
    mean_top5_difference: float

    def at_least(self, required: Fidelity) -> bool:
        """Agrees as often as `required` on both shares, and differs no more."""
        return (
            self.top1_agreement >= required.top1_agreement
            and self.top5_containment >= required.top5_containment
            and self.mean_top5_difference <= required.mean_top5_difference
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class QuantizationCheck:
    """How an int8 model compared with fp32 on held-out images, and what it had to reach.

    `required` comes from fp32's own answers under changes that should not matter
    (int8.py), `reference_change` naming the one that set the top-1 requirement; with
    --int8-min-agreement it is that top-1 agreement alone, and `reference_change` is "".
    """

    measured: Fidelity
    required: Fidelity
    held_out_images: int
    reference_change: str

    @property
    def passed(self) -> bool:
        return self.measured.at_least(self.required)


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
    version: int = 1
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
    UNLOADED = "no version of it is loaded"

    @property
    def serving(self) -> bool:
        return self is Health.SERVING
