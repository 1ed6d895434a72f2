"""Batch-size tuning picks what the hardware rewards: big batches only where they pay."""

from __future__ import annotations

import time

import numpy as np
import pytest

from recognizer.engine.backends.throughput import measure_throughput
from recognizer.engine.tuning import tune_batch_size


def test_cost_per_image_keeps_batches_small() -> None:
    cpu_like = {1: 225.0, 2: 220.0, 4: 214.0, 8: 190.0}
    chosen, rates = tune_batch_size(cpu_like.__getitem__, limit=8)
    assert chosen == 1 and rates == cpu_like


def test_cost_per_call_makes_batches_grow_to_the_limit() -> None:
    chosen, rates = tune_batch_size(lambda size: 100.0 * size, limit=16)
    assert chosen == 16 and list(rates) == [1, 2, 4, 8, 16]


def test_the_smallest_size_near_the_best_wins() -> None:
    gpu_like = {1: 300.0, 2: 590.0, 4: 1100.0, 8: 1700.0, 16: 1750.0, 32: 1760.0}
    assert tune_batch_size(gpu_like.__getitem__, limit=32)[0] == 8


def test_tuning_stops_once_throughput_falls_clearly() -> None:
    tried: list[int] = []

    def cliff(size: int) -> float:
        tried.append(size)
        return {1: 100.0, 2: 150.0, 4: 60.0}.get(size, 1000.0)

    chosen, _ = tune_batch_size(cliff, limit=64)
    assert chosen == 2 and tried == [1, 2, 4]


class SleepingBackend:
    """A backend whose every call takes 10 ms, whatever the batch."""

    name = "sleeping"
    device = "cpu"

    def __call__(self, pixels: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        time.sleep(0.01)
        return np.ones((len(pixels), top_k)), np.zeros((len(pixels), top_k), dtype=np.int64)


def test_throughput_is_measured_with_every_worker_busy() -> None:
    rate = measure_throughput(SleepingBackend(), 8, 4, workers=2, seconds=0.2)
    assert 200 < rate < 900  # 2 workers x 4 images / 10 ms = 800 img/s at best


def test_a_batch_size_that_fails_ends_the_search_at_the_sizes_that_ran() -> None:
    def out_of_memory_at_8(size: int) -> float:
        if size >= 8:
            raise RuntimeError("CUDA out of memory")
        return 100.0 * size

    assert tune_batch_size(out_of_memory_at_8, limit=64) == (4, {1: 100.0, 2: 200.0, 4: 400.0})


def test_a_model_that_fails_at_batch_size_one_fails_start_up() -> None:
    def broken(size: int) -> float:
        raise RuntimeError("does not run")

    with pytest.raises(RuntimeError, match="does not run"):
        tune_batch_size(broken, limit=64)
