"""Inference backends: run a batch of uint8 pixels through a model to top-k scores.

A backend owns everything device-specific (placement, precision, memory layout,
normalisation, activation), so workers stay the same whatever runs the model.
Which backend serves a model is chosen per device by measurement (BENCHMARKS.md):
OpenVINO on the CPU, then ONNX Runtime, both several times faster than eager PyTorch
there, and PyTorch on CUDA.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from recognizer.config.schema import BackendKind, Precision
from recognizer.engine.types import QuantizationCheck
from recognizer.errors import BackendError, InvalidImageError
from recognizer.models.jpeg import DeviceInput
from recognizer.models.spec import LoadedModel, ModelSpec, OnnxGraph

if TYPE_CHECKING:  # PyTorch is imported only where a model needs it: a cached one does not
    import torch

logger = logging.getLogger(__name__)

# Largest difference in any class probability tolerated between a backend and PyTorch:
# in float32, and in bfloat16 (whose 8-bit mantissa moves probabilities by a few 0.01).
EXPORT_TOLERANCE = 1e-4
REDUCED_PRECISION_TOLERANCE = 0.05


class Backend(Protocol):
    """Maps an (N, H, W, 3) uint8 batch to the top-k (scores, class ids), each (N, k).

    `precision` is what the model runs in ("fp32", "bf16", "fp16", "int8");
    `quantization_check` is set where int8 was asked for (prepared.py).
    """

    name: str
    device: str
    precision: str
    quantization_check: QuantizationCheck | None

    def __call__(self, pixels: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]: ...


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


def create_backend(
    model: LoadedModel,
    *,
    device: str | torch.device,
    kind: BackendKind,
    workers: int,
    threads_per_worker: int,
    precision: Precision = "auto",
) -> Backend:
    """Pick and build the backend for a model on `workers` threads of `threads_per_worker` each.

    "auto" tries, in order of measured speed, OpenVINO then ONNX Runtime on the CPU
    (PyTorch models are exported to ONNX at start-up) and PyTorch on CUDA, falling back
    with a warning when one cannot run the model; TorchScript runs on PyTorch (the
    exporter cannot trace into it), ONNX files on the graph backends. Every export is
    checked against PyTorch before it serves. "auto" precision is fp32 on the CPU and
    fp16 on CUDA. A model too large for the device is a BackendError that says so. int8
    is prepared.py's: it needs the model cache and the gate.
    """
    import torch

    device = torch.device(device)
    precision = resolve_precision(precision, str(device))
    if precision == "int8":
        raise BackendError(f"{model.spec.name}: int8 models are made by prepared.load_backend")
    candidates = [kind] if kind != "auto" else _auto_candidates(model, device)
    graph = functools.cache(lambda: _graph(model))  # exported once, whichever backend runs it
    failures: list[str] = []
    for index, candidate in enumerate(candidates):
        try:
            return _build(model, graph, candidate, device, workers, threads_per_worker, precision)
        except BackendError as error:
            failures.append(str(error))
            if index + 1 < len(candidates):
                logger.warning("%s; trying %s next", error, candidates[index + 1])
        except torch.OutOfMemoryError as error:
            raise BackendError(
                f"{model.spec.name} does not fit in the memory of {device}"
                f" ({str(error).splitlines()[0]}): serve it on another device, or fewer models"
                " beside it"
            ) from error
    raise BackendError("; ".join(failures))


def resolve_precision(precision: Precision, device: str) -> Precision:
    if precision == "auto":
        return "fp16" if device.startswith("cuda") else "fp32"
    return precision


def _auto_candidates(model: LoadedModel, device: torch.device) -> list[BackendKind]:
    """The backends "auto" tries for a model, fastest first."""
    import torch

    if device.type == "cuda":
        return ["onnxruntime"] if isinstance(model.network, OnnxGraph) else ["torch"]
    if isinstance(model.network, torch.jit.ScriptModule):
        return ["torch"]
    if isinstance(model.network, OnnxGraph):
        return ["openvino", "onnxruntime"]
    return ["openvino", "onnxruntime", "torch"]


def _graph(model: LoadedModel) -> OnnxGraph:
    from recognizer.engine.backends.graphs import export_to_onnx

    return model.network if isinstance(model.network, OnnxGraph) else export_to_onnx(model)


def _build(
    model: LoadedModel,
    graph: Callable[[], OnnxGraph],
    kind: BackendKind,
    device: torch.device,
    workers: int,
    threads_per_worker: int,
    precision: Precision,
) -> Backend:
    import torch

    from recognizer.engine.backends.graphs import check_against_torch
    from recognizer.engine.backends.onnx_backend import OnnxRuntimeBackend
    from recognizer.engine.backends.openvino_backend import OpenVinoBackend, read_graph
    from recognizer.engine.backends.torch_backend import TorchBackend

    name = model.spec.name
    if kind == "torch":
        if isinstance(model.network, OnnxGraph):
            raise BackendError(f"{name} is an ONNX model; it runs on onnxruntime or openvino")
        if device.type == "cpu":
            if precision != "fp32":
                raise BackendError(f"PyTorch runs {name} in fp32 on the CPU, not {precision}")
            torch.set_num_threads(threads_per_worker)
        return TorchBackend(model, device=device, half=precision == "fp16")
    if kind == "openvino" and device.type != "cpu":
        raise BackendError(f"OpenVINO runs {name} on the CPU only, not on {device}")
    if kind == "onnxruntime" and precision != "fp32":
        raise BackendError(f"ONNX Runtime runs {name} in fp32, not {precision}")
    backend: Backend
    if kind == "openvino":
        backend = OpenVinoBackend(
            read_graph(graph()),
            model.spec,
            workers=workers,
            threads_per_worker=threads_per_worker,
            precision=precision,
        )
    else:
        backend = OnnxRuntimeBackend(graph(), model.spec, device=device, threads=threads_per_worker)
    if not isinstance(model.network, OnnxGraph):
        exact = precision == "fp32"
        tolerance = EXPORT_TOLERANCE if exact else REDUCED_PRECISION_TOLERANCE
        check_against_torch(backend, model, name=kind, tolerance=tolerance, same_top1=exact)
    return backend


def choose_graph_backend(
    model: LoadedModel,
    graph: Path,
    *,
    kind: BackendKind,
    workers: int,
    threads_per_worker: int,
    precision: Precision,
) -> tuple[str, Backend]:
    """The first graph backend ("auto": OpenVINO, then ONNX Runtime) that runs the exported
    `graph` file as PyTorch runs `model`, and its name."""
    from recognizer.engine.backends.graphs import check_against_torch

    candidates = ["openvino", "onnxruntime"] if kind == "auto" else [kind]
    failures: list[str] = []
    for index, candidate in enumerate(candidates):
        try:
            backend = graph_backend(
                candidate,
                graph,
                model.spec,
                workers=workers,
                threads_per_worker=threads_per_worker,
                precision=precision,
            )
            if not isinstance(model.network, OnnxGraph):
                exact = precision == "fp32"
                tolerance = EXPORT_TOLERANCE if exact else REDUCED_PRECISION_TOLERANCE
                check_against_torch(
                    backend, model, name=candidate, tolerance=tolerance, same_top1=exact
                )
            return candidate, backend
        except BackendError as error:
            failures.append(str(error))
            if index + 1 < len(candidates):
                logger.warning("%s; trying %s next", error, candidates[index + 1])
    raise BackendError("; ".join(failures))


def graph_backend(
    kind: str,
    graph: Path,
    spec: ModelSpec,
    *,
    workers: int,
    threads_per_worker: int,
    precision: str,
    compiled_cache: Path | None = None,
) -> Backend:
    """OpenVINO or ONNX Runtime running a graph file (ONNX, or OpenVINO's IR) on the CPU;
    OpenVINO keeps what it compiles in `compiled_cache`, if given."""
    if kind == "openvino":
        from recognizer.engine.backends.openvino_backend import OpenVinoBackend

        return OpenVinoBackend(
            graph,
            spec,
            workers=workers,
            threads_per_worker=threads_per_worker,
            precision=precision,
            compiled_cache=compiled_cache,
        )
    if kind == "onnxruntime":
        from recognizer.engine.backends.onnx_backend import OnnxRuntimeBackend

        if precision != "fp32":
            raise BackendError(f"ONNX Runtime runs {spec.name} in fp32, not {precision}")
        return OnnxRuntimeBackend(
            OnnxGraph(graph.read_bytes()), spec, device="cpu", threads=threads_per_worker
        )
    raise BackendError(f"{kind} does not run graph files")
