"""How many images a second a backend runs, called back to back from a few threads: what
the GPU's batch tuner (engine/tuning.py) and the CPU's choice of precision
(prepared.py) compare."""

from __future__ import annotations

import threading
import time

import numpy as np

from recognizer.engine.backends import Backend


def measure_throughput(
    backend: Backend, input_size: int, batch_size: int, *, workers: int, seconds: float
) -> float:
    """Images per second with `workers` threads running batches of `batch_size` back to back."""
    pixels = np.zeros((batch_size, input_size, input_size, 3), dtype=np.uint8)
    backend(pixels, 1)
    counts = [0] * workers
    stop_at = time.monotonic() + seconds

    def run(index: int) -> None:
        while time.monotonic() < stop_at:
            backend(pixels, 1)
            counts[index] += batch_size

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - started)
