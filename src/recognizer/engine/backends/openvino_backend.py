"""The OpenVINO backend: the fastest way we measured to run our models on an x86 CPU.

OpenVINO compiles the graph for the CPU it runs on (AVX2, AVX-512, AMX) and keeps one
stream per inference worker, so workers never wait on each other. In float32 its answers
match PyTorch to about 1e-6; bfloat16 (`precision="bf16"`, on CPUs with AMX or
AVX512-BF16) is faster again, and checked at start-up to stay within
REDUCED_PRECISION_TOLERANCE of PyTorch's probabilities (backends/__init__.py); int8 runs
a model NNCF quantised (int8.py), checked against fp32 before it serves (prepared.py).
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from recognizer.engine.backends.arrays import GraphInputs, activate, top_k_scores
from recognizer.engine.types import QuantizationCheck
from recognizer.errors import BackendError
from recognizer.models.spec import ModelSpec, OnnxGraph

# The precision of what is not quantised: int8 models keep their other layers in fp32.
PRECISIONS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}


def read_graph(graph: OnnxGraph) -> ov.Model:
    """An ONNX graph in memory as an OpenVINO model (OpenVINO reads ONNX from files)."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "model.onnx"
        path.write_bytes(graph.data)
        return ov.Core().read_model(path)


class OpenVinoBackend:
    """A model compiled for this CPU, with `workers` streams of `threads_per_worker` threads each.

    CPU pinning is off so that image decoding threads share the cores fairly. With
    `compiled_cache`, a model file is compiled once and the compiled form is kept there
    (OpenVINO's model caching): later starts import it instead of compiling again.
    """

    name = "openvino"
    device = "cpu"

    def __init__(
        self,
        model: Path | ov.Model,
        spec: ModelSpec,
        *,
        workers: int,
        threads_per_worker: int,
        precision: str,
        quantization_check: QuantizationCheck | None = None,
        compiled_cache: Path | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise BackendError(f"OpenVINO runs fp32, bf16 or int8, not {precision}")
        self.precision = precision
        self.quantization_check = quantization_check
        core = ov.Core()
        if compiled_cache is not None and isinstance(model, Path):
            core.set_property({"CACHE_DIR": str(compiled_cache)})
        try:
            config: dict[str, Any] = {
                "PERFORMANCE_HINT": "THROUGHPUT",
                "NUM_STREAMS": workers,
                "INFERENCE_NUM_THREADS": workers * threads_per_worker,
                "INFERENCE_PRECISION_HINT": PRECISIONS[precision],
                "ENABLE_CPU_PINNING": False,
            }
            self._compiled = core.compile_model(
                str(model) if isinstance(model, Path) else model, "CPU", config
            )
        except Exception as error:  # OpenVINO raises its own untyped errors
            raise BackendError(f"OpenVINO cannot compile {spec.name}: {error}") from error
        if len(self._compiled.inputs) != 1:
            raise BackendError(
                f"{spec.name} has {len(self._compiled.inputs)} ONNX inputs; an image model has one"
            )
        takes_pixels = self._compiled.input(0).get_element_type() == ov.Type.u8
        self._inputs = GraphInputs(spec, takes_pixels=takes_pixels)
        self._activation = spec.activation
        self._requests = threading.local()

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """The model's raw output for an (N, H, W, 3) uint8 batch, on this thread's request."""
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self._compiled.create_infer_request()
        logits: np.ndarray = request.infer({0: self._inputs(pixels)})[0]
        return logits

    def __call__(self, pixels: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        return top_k_scores(activate(self.logits(pixels), self._activation), top_k)
