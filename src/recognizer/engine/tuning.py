"""Choose a model's batch size on this machine by measuring it, at start-up.

Batching is not free everywhere: on a 2-core CPU a batch of 8 runs no faster per image
than a batch of 1, while a GPU gains up to batches of a hundred or more. So the engine
measures throughput at batch sizes 1, 2, 4, ... with all its workers busy, and keeps
the smallest size within 10 % of the best: a larger batch costs every request in it
latency, so it must pay clearly, beyond the noise of a short measurement on a shared
machine (which is about 10 %).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from recognizer.engine.backends import Backend

logger = logging.getLogger(__name__)

NEAR_BEST = 0.9


def batch_size_limit(device: str) -> int:
    """The largest batch size worth trying: CPUs stop gaining early, GPUs late."""
    return 16 if device == "cpu" else 256


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


def tune_batch_size(
    throughput: Callable[[int], float], *, limit: int
) -> tuple[int, dict[int, float]]:
    """The chosen batch size and the images per second `throughput(size)` gave for each size."""
    rates: dict[int, float] = {}
    batch_size = 1
    while batch_size <= limit:
        rates[batch_size] = throughput(batch_size)
        if rates[batch_size] < 0.8 * max(rates.values()):
            break  # clearly past the best; larger batches will not come back
        batch_size *= 2
    best = max(rates.values())
    chosen = min(size for size, rate in rates.items() if rate >= NEAR_BEST * best)
    return chosen, rates
