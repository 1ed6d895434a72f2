"""The OpenVINO backend: the fastest way we measured to run our models on an x86 CPU.

OpenVINO compiles the graph for the CPU it runs on (AVX2, AVX-512, AMX) and schedules it
itself: one compiled model with the throughput hint, which picks its streams (parallel
inferences) and threads for the CPU, and infer requests started asynchronously, their
completions handed back by the runtime's own threads. The engine keeps SLOTS_PER_REQUEST
times the runtime's optimal number of requests in flight, so a stream always has its next
request waiting while the last one's answer goes back (measured: BENCHMARKS.md). In
float32 its answers match PyTorch to about 1e-6; bfloat16 (`precision="bf16"`, on CPUs
with AMX or AVX512-BF16) is faster again, and checked at start-up to stay within
REDUCED_PRECISION_TOLERANCE of PyTorch's probabilities (builder.py); int8 runs a model NNCF
quantised (int8.py), checked against fp32 before it serves (prepared.py).
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from recognizer.engine.backends import TopK
from recognizer.engine.backends.arrays import GraphInputs, activate, top_k_scores
from recognizer.engine.backends.plan import Plan
from recognizer.engine.types import QuantizationCheck
from recognizer.errors import BackendError
from recognizer.models.spec import ModelSpec, OnnxGraph

# The precision of what is not quantised: int8 models keep their other layers in fp32.
PRECISIONS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
SLOTS_PER_REQUEST = 2  # requests in flight per optimal request (BENCHMARKS.md)
# Threads are not pinned to cores, so that the decoding threads share them (BENCHMARKS.md).
PINNING = False


def read_graph(graph: OnnxGraph) -> ov.Model:
    """An ONNX graph in memory as an OpenVINO model (OpenVINO reads ONNX from files)."""
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "model.onnx"
        path.write_bytes(graph.data)
        return ov.Core().read_model(path)


class OpenVinoBackend:
    """A model compiled for this CPU as `plan` says: its streams (`plan.workers`, or the
    throughput hint's choice) share `plan.threads` threads.

    With `compiled_cache`, a model file is compiled once and the compiled form is kept
    there (OpenVINO's model caching): later starts import it instead of compiling again.
    """

    name = "openvino"
    device = "cpu"

    def __init__(
        self,
        model: Path | OnnxGraph | ov.Model,
        spec: ModelSpec,
        plan: Plan,
        *,
        quantization_check: QuantizationCheck | None = None,
        compiled_cache: Path | None = None,
    ) -> None:
        if plan.precision not in PRECISIONS:
            raise BackendError(f"OpenVINO runs fp32, bf16 or int8, not {plan.precision}")
        self.precision: str = plan.precision
        self.quantization_check = quantization_check
        core = ov.Core()
        if compiled_cache is not None and isinstance(model, Path):
            core.set_property({"CACHE_DIR": str(compiled_cache)})
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "THROUGHPUT",
            "INFERENCE_NUM_THREADS": plan.threads,
            "INFERENCE_PRECISION_HINT": PRECISIONS[plan.precision],
            "ENABLE_CPU_PINNING": PINNING,
        }
        if plan.workers is not None:
            config["NUM_STREAMS"] = plan.workers
        try:
            graph = read_graph(model) if isinstance(model, OnnxGraph) else model
            self._compiled = core.compile_model(
                str(graph) if isinstance(graph, Path) else graph, "CPU", config
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
        self.streams = int(self._compiled.get_property("NUM_STREAMS"))
        optimal = int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.slots = optimal * SLOTS_PER_REQUEST
        # OpenVINO's own pool of requests: a request goes back to it once its callback has
        # run, so none is started while its last answer is still being read. It takes one
        # submitter at a time (two could pick the same idle request): `_submitting`.
        self._requests = ov.AsyncInferQueue(self._compiled, self.slots)
        self._requests.set_callback(self._completed)
        self._submitting = threading.Lock()
        self._own_requests = threading.local()  # synchronous calls: one request per thread

    def submit(
        self, pixels: np.ndarray, top_k: int, done: Callable[[TopK | BaseException], None]
    ) -> None:
        """Start the batch on an idle request; `done` gets its top-k from the runtime's
        thread. Waits for a request (without the GIL) only when `slots` calls are in flight.

        Where the runtime fails a call without calling back (OpenVINO keeps such errors for
        a `wait_all`), the watchdog answers its callers once it has run too long.
        """
        inputs = self._inputs(pixels)
        with self._submitting:
            # The request reads `inputs` in place, so the call holds them until it ends.
            self._requests.start_async({0: inputs}, (top_k, done, inputs), share_inputs=True)

    def _completed(
        self,
        request: ov.InferRequest,
        call: tuple[int, Callable[[TopK | BaseException], None], np.ndarray],
    ) -> None:
        """On the runtime's thread, once a request is done: the answer goes to `done`."""
        top_k, done, _ = call
        result: TopK | BaseException
        try:
            logits = request.get_output_tensor(0).data
            result = top_k_scores(activate(logits, self._activation), top_k)
        except Exception as error:
            result = error
        done(result)

    def close(self) -> None:
        """Let the runtime go once no call is in flight: the request queue holds
        `_completed`, and so this backend, from C++, where no collector sees it. The
        threads' own requests (`_own_requests`) go with the backend itself: deleting that
        thread-local here, from a thread other than theirs, made the server crash at its
        next signal."""
        self._requests.wait_all()
        del self._requests, self._compiled

    def logits(self, pixels: np.ndarray) -> np.ndarray:
        """The model's raw output for an (N, H, W, 3) uint8 batch, on this thread's request."""
        request = getattr(self._own_requests, "request", None)
        if request is None:
            request = self._own_requests.request = self._compiled.create_infer_request()
        logits: np.ndarray = request.infer({0: self._inputs(pixels)})[0]
        return logits

    def __call__(self, pixels: np.ndarray, top_k: int) -> TopK:
        return top_k_scores(activate(self.logits(pixels), self._activation), top_k)
