"""Inference backends: run a batch of uint8 pixels through a model to top-k scores.

A backend owns everything device-specific (placement, precision, memory layout,
normalisation, activation), so the engine stays the same whatever runs the model.
Which backend serves a model is chosen per device by measurement (BENCHMARKS.md):
OpenVINO on the CPU, then ONNX Runtime, both several times faster than eager PyTorch
there, and PyTorch on CUDA. What a backend is built from is one `Plan` (plan.py), which
one builder turns into a backend (builder.py).

Every backend answers a synchronous call (warm-up, probes, checks). A backend whose
runtime schedules its own work (OpenVINO's streams and infer requests) also takes calls
asynchronously (`SchedulesCalls`): the engine submits a batch and is told when it is
done, so no thread of ours waits on a call; the others are called from worker threads.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from recognizer.engine.types import QuantizationCheck
from recognizer.errors import BackendError, InvalidImageError
from recognizer.models.jpeg import DeviceInput

TopK = tuple[np.ndarray, np.ndarray]
"""The top-k (scores, class ids) of a batch, each (N, k), best first."""


class Backend(Protocol):
    """Maps an (N, H, W, 3) uint8 batch to the top-k (scores, class ids), each (N, k).

    `precision` is what the model runs in ("fp32", "bf16", "fp16", "int8");
    `quantization_check` is set where int8 was asked for (prepared.py).
    """

    name: str
    device: str
    precision: str
    quantization_check: QuantizationCheck | None

    def __call__(self, pixels: np.ndarray, top_k: int) -> TopK: ...


@runtime_checkable
class SchedulesCalls(Protocol):
    """A backend whose runtime runs several calls at once and says when each is done.

    `submit` returns at once; `done` is called later, on a thread of the runtime's, with
    the top-k or the exception the call raised. `slots` is how many calls should be in
    flight at once to keep the runtime busy: the engine submits no more, so that batches
    keep growing in its own queue rather than waiting in the runtime's. `streams` is how
    many of them run at once; the others wait their turn in the runtime.
    """

    slots: int
    streams: int

    def submit(
        self, pixels: np.ndarray, top_k: int, done: Callable[[TopK | BaseException], None]
    ) -> None: ...


RowErrors = list[InvalidImageError | None]


@runtime_checkable
class DecodesOnDevice(Protocol):
    """A backend that also decodes JPEGs, and prepares the batch, where the model runs.

    Maps rows of Pillow's uint8 pixels or encoded JPEGs (models/jpeg.py) to the top-k
    (scores, class ids) and each row's error: a row that fails to decode is answered by
    its error alone, its scores meaningless.
    """

    def classify_rows(
        self, rows: Sequence[DeviceInput], top_k: int
    ) -> tuple[np.ndarray, np.ndarray, RowErrors]: ...


@runtime_checkable
class CapturesGraphs(Protocol):
    """A backend that can record its model for the batch sizes it will see (CUDA graphs)."""

    def capture_graphs(self, max_batch_size: int) -> None: ...


@runtime_checkable
class HoldsRuntime(Protocol):
    """A backend whose runtime holds references back into it (OpenVINO's request queue
    holds its completion callback), a cycle Python's collector cannot see: `close` breaks
    it, so that a retired model version's memory is freed."""

    def close(self) -> None: ...


def resolve_device(device: str) -> str:
    """Turn "auto", "cpu", "cuda" or "cuda:N" into "cpu" or "cuda:N", a device this machine has.

    "auto" on a machine without NVIDIA's driver is the CPU without importing PyTorch,
    which would cost a second and hundreds of MiB for nothing.
    """
    if device == "cpu" or (device == "auto" and not _nvidia_driver()):
        return "cpu"
    import torch

    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    try:
        resolved = torch.device(device)
    except RuntimeError:
        resolved = torch.device("meta")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise BackendError(f"device {device!r} asked for, but no CUDA device is available")
        index = resolved.index or 0
        if index >= torch.cuda.device_count():
            raise BackendError(
                f"device {device!r} asked for, but only {torch.cuda.device_count()} CUDA"
                " device(s) exist"
            )
        return f"cuda:{index}"
    if resolved.type != "cpu":
        raise BackendError(f"device must be auto, cpu, cuda or cuda:N, not {device!r}")
    return "cpu"


def _nvidia_driver() -> bool:
    """Whether NVIDIA's driver library loads: without it, PyTorch finds no CUDA device."""
    try:
        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True
