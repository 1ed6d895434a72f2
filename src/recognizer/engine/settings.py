"""How the engine batches, queues and threads its work."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from recognizer.models.preprocessing import DEFAULT_MAX_PIXELS


@dataclass(frozen=True, kw_only=True)
class EngineSettings:
    """Tuning knobs of the inference engine, the same for every served model.

    Usage:

        settings = EngineSettings(max_batch_size=16, max_batch_delay_ms=5)
    """

    device: str = "auto"
    max_batch_size: int = 8
    max_batch_delay_ms: float = 2.0
    inference_threads: int = 1
    max_queued_requests: int = 256
    preprocess_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    default_top_k: int = 5

    def __post_init__(self) -> None:
        for name in (
            "max_batch_size",
            "inference_threads",
            "max_queued_requests",
            "preprocess_threads",
            "max_image_pixels",
            "default_top_k",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_batch_delay_ms < 0:
            raise ValueError("max_batch_delay_ms must not be negative")
