"""Batch-size tuning picks what the hardware rewards: big batches only where they pay."""

from __future__ import annotations

import time

import numpy as np

from recognizer.engine.settings import EngineSettings
from recognizer.engine.tuning import tune_batch_size


class SleepingBackend:
    """A backend whose call takes `per_call + per_image * batch` seconds."""

    name = "sleeping"
    device = "cpu"

    def __init__(self, per_call: float, per_image: float) -> None:
        self.per_call, self.per_image = per_call, per_image

    def __call__(self, pixels: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        time.sleep(self.per_call + self.per_image * len(pixels))
        return np.ones((len(pixels), top_k)), np.zeros((len(pixels), top_k), dtype=np.int64)


def test_cost_per_image_keeps_batches_small() -> None:
    chosen, rates = tune_batch_size(SleepingBackend(0, 0.004), 8, workers=1, limit=8, seconds=0.1)
    assert chosen == 1
    assert set(rates) == {1, 2, 4, 8}


def test_cost_per_call_makes_batches_grow_to_the_limit() -> None:
    chosen, rates = tune_batch_size(SleepingBackend(0.01, 0), 8, workers=2, limit=16, seconds=0.1)
    assert chosen == 16
    assert rates[16] > 8 * rates[1]


def test_tuning_stops_once_throughput_falls_clearly() -> None:
    class Cliff(SleepingBackend):
        def __call__(self, pixels: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
            self.per_image = 0.002 if len(pixels) <= 2 else 0.02
            return super().__call__(pixels, top_k)

    chosen, rates = tune_batch_size(Cliff(0.004, 0), 8, workers=1, limit=64, seconds=0.1)
    assert chosen == 2
    assert max(rates) == 4  # 4 was clearly worse, so 8 and beyond were not tried


def test_unset_settings_follow_the_device() -> None:
    settings = EngineSettings()
    assert settings.batch_delay_for("cpu") == 0 and settings.batch_delay_for("cuda:0") == 0.002
    assert settings.workers_for("cuda:0") == 1 and settings.workers_for("cpu") >= 1
    fixed = EngineSettings(max_batch_delay_ms=5, inference_threads=3)
    assert (fixed.batch_delay_for("cpu"), fixed.workers_for("cpu")) == (0.005, 3)
