"""The OpenVINO backend: the fastest way we measured to run our models on an x86 CPU.

OpenVINO compiles the ONNX graph for the CPU it runs on (AVX-512, AMX) and keeps one
stream per inference worker, so workers never wait on each other. In float32 its answers
match PyTorch to about 1e-6; bfloat16 (`precision="bf16"`, on CPUs with AMX or
AVX512-BF16) is faster again, and checked at start-up to stay within
REDUCED_PRECISION_TOLERANCE of PyTorch's probabilities (backends/__init__.py).
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from recognizer.engine.backends.graphs import GraphInputs, activate, top_k_scores
from recognizer.errors import BackendError
from recognizer.models.spec import ModelSpec, OnnxGraph

PRECISIONS = {"fp32": "f32", "bf16": "bf16"}


class OpenVinoBackend:
    """A model compiled for this CPU, with `workers` streams of `threads_per_worker` threads each.

    CPU pinning is off so that image decoding threads share the cores fairly.
    """

    name = "openvino"
    device = "cpu"

    def __init__(
        self,
        graph: OnnxGraph,
        spec: ModelSpec,
        *,
        workers: int,
        threads_per_worker: int,
        precision: str,
    ) -> None:
        if precision not in PRECISIONS:
            raise BackendError(f"OpenVINO runs fp32 or bf16, not {precision}")
        core = ov.Core()
        try:
            with tempfile.TemporaryDirectory() as scratch:
                path = Path(scratch) / "model.onnx"
                path.write_bytes(graph.data)
                model = core.read_model(path)
            if len(model.inputs) != 1:
                raise BackendError(
                    f"{spec.name} has {len(model.inputs)} ONNX inputs; an image model has one"
                )
            config: dict[str, Any] = {
                "PERFORMANCE_HINT": "THROUGHPUT",
                "NUM_STREAMS": workers,
                "INFERENCE_NUM_THREADS": workers * threads_per_worker,
                "INFERENCE_PRECISION_HINT": PRECISIONS[precision],
                "ENABLE_CPU_PINNING": False,
            }
            self._compiled = core.compile_model(model, "CPU", config)
        except BackendError:
            raise
        except Exception as error:  # OpenVINO raises its own untyped errors
            raise BackendError(f"OpenVINO cannot compile {spec.name}: {error}") from error
        takes_pixels = model.input(0).get_element_type() == ov.Type.u8
        self._inputs = GraphInputs(spec, takes_pixels=takes_pixels)
        self._activation = spec.activation
        self._requests = threading.local()

    def __call__(self, pixels: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self._compiled.create_infer_request()
        logits = request.infer({0: self._inputs(pixels)})[0]
        return top_k_scores(activate(logits, self._activation), top_k)
