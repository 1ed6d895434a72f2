"""A served model as the v2 protocol describes it: its tensors, metadata and configuration.

Every model takes its images as one of two inputs and answers one output:

    IMAGE          BYTES  [batch, 1]        encoded images (JPEG, PNG, ...), one per element
    PIXELS         UINT8  [batch, H, W, 3]  decoded RGB pixels (NHWC), any size
    PROBABILITIES  FP32   [batch, classes]  every class's score by class id; asked for with
                                            class_count=k, the top k as BYTES
                                            "score:index:label" (the classification extension)

A request sends one input or the other, so both are optional in the configuration, which is
what lets perf_analyzer feed only the one its data names. Everything here is plain data that
the gRPC servicer turns into protobuf messages and the REST routes into JSON.
"""

from __future__ import annotations

from dataclasses import dataclass

from recognizer.engine.types import ModelStatus

SERVER_NAME = "recognizer"
# Triton's names for the protocol extensions this server implements.
EXTENSIONS = ("classification", "model_configuration", "parameters", "statistics")
PLATFORM = "recognizer"

IMAGE, PIXELS, PROBABILITIES = "IMAGE", "PIXELS", "PROBABILITIES"


@dataclass(frozen=True, slots=True)
class Tensor:
    """An input or output: its datatype and its dims without the batch dimension (-1 is any)."""

    name: str
    datatype: str
    dims: tuple[int, ...]
    optional: bool = False
    format: str = ""  # an image input's layout, as Triton's ModelInput.Format names it

    @property
    def shape(self) -> list[int]:
        """The shape metadata reports: the batch dimension first."""
        return [-1, *self.dims]


@dataclass(frozen=True, slots=True)
class Signature:
    """What a model takes and answers, and how the engine batches it."""

    name: str
    version: int
    versions: tuple[int, ...]  # the model's ready versions, newest first
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    max_batch_size: int
    backend: str
    batch_delay_us: int


def signature(
    model: ModelStatus, batch_delay_s: float, versions: tuple[int, ...] = ()
) -> Signature:
    """The v2 description of a served model version; `batch_delay_s` is how long a batch
    waits; `versions`, the model's ready ones."""
    return Signature(
        name=model.spec.name,
        version=model.version,
        versions=versions or (model.version,),
        inputs=(
            Tensor(IMAGE, "BYTES", (1,), optional=True),
            Tensor(PIXELS, "UINT8", (-1, -1, 3), optional=True, format="FORMAT_NHWC"),
        ),
        outputs=(Tensor(PROBABILITIES, "FP32", (model.spec.num_classes,)),),
        max_batch_size=model.max_batch_size,
        backend=model.backend,
        batch_delay_us=round(batch_delay_s * 1e6),
    )
