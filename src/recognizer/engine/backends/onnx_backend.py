"""The ONNX Runtime backend: exported graphs and users' ONNX files, on the CPU or CUDA.

Its session is called synchronously from the engine's worker threads (`plan.workers`),
each call on its share of the cores. ONNX Runtime's `run_async` would not schedule the
cores better: it runs each call on a thread of the same intra-op pool.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort

from recognizer.engine.backends.arrays import GraphInputs, activate, top_k_scores
from recognizer.engine.backends.plan import Plan
from recognizer.errors import BackendError
from recognizer.models.spec import ModelSpec, OnnxGraph

if TYPE_CHECKING:
    from recognizer.engine.types import QuantizationCheck


class OnnxRuntimeBackend:
    """One ONNX Runtime session shared by the worker threads, each call on its share of
    `plan.threads`.

    Spinning is off, so idle inference threads leave the cores to image decoding.
    """

    name = "onnxruntime"
    precision = "fp32"
    quantization_check: QuantizationCheck | None = None

    def __init__(self, graph: Path | OnnxGraph, spec: ModelSpec, plan: Plan) -> None:
        device = plan.device
        options = ort.SessionOptions()
        options.intra_op_num_threads = plan.threads_per_worker
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendError(
                    f"{spec.name} needs onnxruntime-gpu to run on {device}; install it, or"
                    " serve it on the CPU"
                )
            providers.insert(0, "CUDAExecutionProvider")
        try:
            model = str(graph) if isinstance(graph, Path) else graph.data
            self._session = ort.InferenceSession(model, options, providers=providers)
        except Exception as error:  # onnxruntime raises its own untyped errors
            raise BackendError(f"ONNX Runtime cannot load {spec.name}: {error}") from error
        self.device = device
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise BackendError(f"{spec.name} has {len(inputs)} ONNX inputs; an image model has one")
        self._input = inputs[0].name
        self._inputs = GraphInputs(spec, takes_pixels=inputs[0].type == "tensor(uint8)")
        self._activation = spec.activation

    def __call__(self, pixels: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        logits = self._session.run(None, {self._input: self._inputs(pixels)})[0]
        return top_k_scores(activate(logits, self._activation), top_k)
