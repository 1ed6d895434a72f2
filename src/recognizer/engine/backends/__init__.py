"""Inference backends: run a batch of uint8 pixels through a model to top-k scores.

A backend owns everything device-specific (placement, precision, memory layout,
normalisation, activation), so workers stay the same whatever runs the model.
Which backend serves a model is chosen per device by measurement (BENCHMARKS.md):
ONNX Runtime on the CPU, where it is about three times faster than eager PyTorch,
and PyTorch on CUDA.
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np
import torch

from recognizer.engine.settings import BackendKind
from recognizer.errors import BackendError
from recognizer.models.spec import LoadedModel, OnnxGraph

logger = logging.getLogger(__name__)


class Backend(Protocol):
    """Maps an (N, H, W, 3) uint8 batch to the top-k (scores, class ids), each (N, k)."""

    name: str
    device: str

    def __call__(self, pixels: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]: ...


def resolve_device(device: str) -> torch.device:
    """Turn "auto", "cpu", "cuda" or "cuda:N" into a device this machine has."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
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
        return torch.device("cuda", index)
    if resolved.type != "cpu":
        raise BackendError(f"device must be auto, cpu, cuda or cuda:N, not {device!r}")
    return resolved


def create_backend(
    model: LoadedModel, *, device: torch.device, kind: BackendKind, threads: int
) -> Backend:
    """Pick and build the backend for a model: `threads` is each call's intra-op thread count.

    "auto" means ONNX Runtime on the CPU (the model is exported at start-up and its
    outputs checked against PyTorch) and PyTorch on CUDA; a model that will not export
    falls back to PyTorch with a warning. ONNX files always run on ONNX Runtime, and
    TorchScript models on PyTorch under "auto" (the exporter cannot trace into them).
    A model too large for the device is a BackendError that says so.
    """
    try:
        return _create_backend(model, device=device, kind=kind, threads=threads)
    except torch.OutOfMemoryError as error:
        raise BackendError(
            f"{model.spec.name} does not fit in the memory of {device}"
            f" ({str(error).splitlines()[0]}): serve it on another device, or fewer models"
            " beside it"
        ) from error


def _create_backend(
    model: LoadedModel, *, device: torch.device, kind: BackendKind, threads: int
) -> Backend:
    from recognizer.engine.backends.onnx_backend import OnnxRuntimeBackend, export_to_onnx
    from recognizer.engine.backends.torch_backend import TorchBackend

    if isinstance(model.network, OnnxGraph):
        if kind == "torch":
            raise BackendError(f"{model.spec.name} is an ONNX model; it runs on onnxruntime")
        return OnnxRuntimeBackend(model.network, model.spec, device=device, threads=threads)
    scripted = isinstance(model.network, torch.jit.ScriptModule)
    if kind == "torch" or (kind == "auto" and (device.type == "cuda" or scripted)):
        if device.type == "cpu":
            torch.set_num_threads(threads)
        return TorchBackend(model, device=device, half=device.type == "cuda")
    try:
        graph = export_to_onnx(model)
        return OnnxRuntimeBackend(graph, model.spec, device=device, threads=threads)
    except BackendError as error:
        if kind == "onnxruntime":
            raise
        logger.warning("%s; serving %s with PyTorch instead", error, model.spec.name)
        torch.set_num_threads(threads)
        return TorchBackend(model, device=device)
