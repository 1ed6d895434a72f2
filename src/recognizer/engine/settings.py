"""How the engine batches, queues and threads its work."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from recognizer.models.preprocessing import DEFAULT_MAX_PIXELS

BackendKind = Literal["auto", "openvino", "onnxruntime", "torch"]
BACKEND_KINDS: tuple[BackendKind, ...] = ("auto", "openvino", "onnxruntime", "torch")
Precision = Literal["auto", "fp32", "bf16", "fp16"]
PRECISIONS: tuple[Precision, ...] = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True, kw_only=True)
class EngineSettings:
    """Tuning knobs of the inference engine, the same for every served model.

    None means "choose for the device": the batch size is 4 on the CPU and measured
    at start-up on a GPU (engine/tuning.py), the batching delay is 0 on the CPU
    (waiting would idle the cores) and 2 ms on CUDA, and the CPU gets one inference
    worker per core.
    The result cache is off unless `cache_entries` is set.

    Usage:

        settings = EngineSettings(max_batch_size=16, max_batch_delay_ms=5)
    """

    device: str = "auto"
    backend: BackendKind = "auto"
    precision: Precision = "auto"
    max_batch_size: int | None = None
    max_batch_delay_ms: float | None = None
    inference_threads: int | None = None
    max_queued_requests: int = 256
    preprocess_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    default_top_k: int = 5
    cache_entries: int = 0
    cache_bytes: int = 64 << 20

    def __post_init__(self) -> None:
        for name in (
            "max_batch_size",
            "inference_threads",
            "max_queued_requests",
            "preprocess_threads",
            "max_image_pixels",
            "default_top_k",
        ):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.cache_entries < 0 or self.cache_bytes < 0:
            raise ValueError("cache_entries and cache_bytes must not be negative")
        if self.max_batch_delay_ms is not None and self.max_batch_delay_ms < 0:
            raise ValueError("max_batch_delay_ms must not be negative")
        if self.backend not in BACKEND_KINDS:
            raise ValueError(f"backend must be one of {', '.join(BACKEND_KINDS)}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}")

    def workers_for(self, device: str) -> int:
        """Inference worker threads per model: as set, else one per core on the CPU, one on CUDA."""
        if self.inference_threads is not None:
            return self.inference_threads
        return (os.cpu_count() or 1) if device == "cpu" else 1

    def batch_delay_for(self, device: str) -> float:
        """Seconds a batch waits to fill: as set, else 0 on the CPU and 2 ms on CUDA."""
        if self.max_batch_delay_ms is not None:
            return self.max_batch_delay_ms / 1000
        return 0.0 if device == "cpu" else 0.002
