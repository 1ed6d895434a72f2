"""How many threads the engine runs and how long batches wait, where the settings say "auto".

On the CPU every stage gets a share of the cores: one inference worker per core, each
running the model on an equal share of them, and one decoding thread per core. On CUDA
one worker feeds the device, and a batch waits up to 2 ms to fill (on the CPU it never
waits: that would idle the cores), and JPEGs are decoded there, where the backend can.
"""

from __future__ import annotations

import os

from recognizer.config.schema import EngineSettings

GPU_BATCH_DELAY_S = 0.002


def cpus() -> int:
    """The CPUs this process may use."""
    return os.cpu_count() or 1


def inference_workers(settings: EngineSettings, device: str) -> int:
    """Inference worker threads per model."""
    if settings.inference_workers is not None:
        return settings.inference_workers
    return cpus() if device == "cpu" else 1


def intra_op_threads(settings: EngineSettings, device: str) -> int:
    """Threads each worker's model call may use: an equal share of the cores."""
    return max(1, cpus() // inference_workers(settings, device))


def preprocess_threads(settings: EngineSettings) -> int:
    return settings.preprocess_threads or cpus()


def batch_delay_s(settings: EngineSettings, device: str) -> float:
    """Seconds a batch waits to fill once its first request is in."""
    if settings.max_batch_delay_ms is not None:
        return settings.max_batch_delay_ms / 1000
    return 0.0 if device == "cpu" else GPU_BATCH_DELAY_S


def device_decode(settings: EngineSettings, device: str) -> bool:
    """Whether JPEGs are decoded on the model's device, where its backend can: --device-decode
    on, or auto on CUDA (where Pillow's few hundred images a second per core would be the wall)."""
    return settings.device_decode == "on" or (
        settings.device_decode == "auto" and device.startswith("cuda")
    )
