"""What a backend is built from: one plan value, and the plans "auto" tries, fastest first.

A plan says where a model runs (device), by what (runtime), in what (precision), how many
calls at once (workers: OpenVINO's streams, or the threads that call ONNX Runtime and
PyTorch) and on how many inference threads in all. The settings and the model's kind
decide it here, once; builder.py turns it into a backend, and the model cache keys what
it prepares by the same settings (prepared.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from recognizer.config.schema import EngineSettings, Precision
from recognizer.engine import sizing

Runtime = Literal["openvino", "onnxruntime", "torch"]
NetworkKind = Literal["pytorch", "torchscript", "onnx"]


@dataclass(frozen=True, kw_only=True)
class Plan:
    """How one model runs.

    `workers` is how many calls run at once, as asked (None: the default): OpenVINO's
    streams (by default as many as its throughput hint finds best for the CPU), or the
    threads that call ONNX Runtime or PyTorch (by default one per core on the CPU, two on
    CUDA); `threads` is the inference threads of all of them together.
    """

    device: str
    runtime: Runtime
    precision: Precision
    workers: int | None
    threads: int

    @property
    def threads_per_worker(self) -> int:
        """Inference threads for each thread calling a runtime that does not schedule its
        own calls (ONNX Runtime, PyTorch)."""
        return max(1, self.threads // sizing.worker_threads(self.workers, self.device))


def plans(settings: EngineSettings, device: str, network: NetworkKind) -> list[Plan]:
    """The plans to try for a model, fastest first: only one when --backend names a runtime."""
    runtimes = [settings.backend] if settings.backend != "auto" else auto_runtimes(device, network)
    return [
        Plan(
            device=device,
            runtime=runtime,
            precision=resolve_precision(settings.precision, device),
            workers=settings.inference_workers,
            threads=sizing.cpus(),
        )
        for runtime in runtimes
    ]


def auto_runtimes(device: str, network: NetworkKind) -> list[Runtime]:
    """The runtimes "auto" tries for a model on a device, fastest first (BENCHMARKS.md)."""
    if device.startswith("cuda"):
        return ["onnxruntime"] if network == "onnx" else ["torch"]
    if network == "torchscript":
        return ["torch"]  # the exporter cannot trace into TorchScript
    if network == "onnx":
        return ["openvino", "onnxruntime"]
    return ["openvino", "onnxruntime", "torch"]


def resolve_precision(precision: Precision, device: str) -> Precision:
    """ "auto" is fp32 on the CPU (prepared.py may choose bf16 there by measurement) and fp16
    on CUDA."""
    if precision == "auto":
        return "fp16" if device.startswith("cuda") else "fp32"
    return precision
