"""A model's own batch limit bounds the engine's batch size, set or measured."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import pytest

from fakes import colour_model
from recognizer.config.schema import EngineSettings
from recognizer.engine import runner as runner_module
from recognizer.engine.backends import Backend
from recognizer.engine.lifecycle import keep
from recognizer.engine.runner import ModelRunner
from recognizer.engine.tuning import CPU_BATCH_SIZE, GPU_BATCH_LIMIT


class OnDevice:
    """The colour model's backend, reporting another device (the runner's choices follow it)."""

    name = "torch"

    def __init__(self, backend: Backend, device: str) -> None:
        self._backend, self.device = backend, device

    def __call__(self, pixels: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        return self._backend(pixels, top_k)


def runner(model_limit: int | None, *, device: str = "cpu", **settings: object) -> ModelRunner:
    model = colour_model()
    spec = dataclasses.replace(model.spec, max_batch_size=model_limit)
    backend = model.backend if device == "cpu" else OnDevice(model.backend, device)
    return ModelRunner(spec, backend, EngineSettings(**settings), keep=keep)  # type: ignore[arg-type]


@pytest.mark.parametrize(("model_limit", "expected"), [(2, 2), (16, 8), (None, 8)])
def test_the_models_limit_caps_the_configured_batch_size(
    model_limit: int | None, expected: int
) -> None:
    capped = runner(model_limit, max_batch_size=8)
    capped.warm_up()
    assert capped.max_batch_size == capped.status().max_batch_size == expected


def test_the_models_limit_caps_the_measured_batch_size(monkeypatch: pytest.MonkeyPatch) -> None:
    limits: list[int] = []

    def measure(throughput: Callable[[int], float], *, limit: int) -> tuple[int, dict[int, float]]:
        limits.append(limit)
        return limit, {limit: 1.0}

    monkeypatch.setattr(runner_module, "tune_batch_size", measure)
    capped = runner(3, device="cuda:0")
    capped.warm_up()
    assert (limits, capped.max_batch_size) == ([3], 3)
    uncapped = runner(None, device="cuda:0")
    uncapped.warm_up()
    assert limits[1] == uncapped.max_batch_size == GPU_BATCH_LIMIT


@pytest.mark.parametrize(("model_limit", "expected"), [(None, CPU_BATCH_SIZE), (1, 1)])
def test_the_cpu_batches_up_to_its_measured_default_without_tuning(
    monkeypatch: pytest.MonkeyPatch, model_limit: int | None, expected: int
) -> None:
    monkeypatch.setattr(runner_module, "tune_batch_size", None)  # must not be called
    cpu = runner(model_limit)
    cpu.warm_up()
    assert cpu.max_batch_size == expected


def test_only_a_backend_that_decodes_on_its_device_is_given_the_jpegs() -> None:
    assert runner(None, device_decode="on").decoder is not None  # the Torch backend
    assert runner(None, device_decode="auto").decoder is None  # on the CPU, Pillow
    assert runner(None, device="cuda:0", device_decode="on").decoder is None  # cannot decode
