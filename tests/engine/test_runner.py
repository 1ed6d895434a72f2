"""A model's own batch limit bounds the engine's batch size, set or measured."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from fakes import colour_model
from recognizer.engine import runner as runner_module
from recognizer.engine.runner import ModelRunner
from recognizer.engine.settings import EngineSettings


def runner(model_limit: int | None, **settings: object) -> ModelRunner:
    model = colour_model()
    spec = dataclasses.replace(model.spec, max_batch_size=model_limit)
    return ModelRunner(spec, model.backend, EngineSettings(**settings))  # type: ignore[arg-type]


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
    capped = runner(3)
    capped.warm_up()
    assert (limits, capped.max_batch_size) == ([3], 3)
    uncapped = runner(None)
    uncapped.warm_up()
    assert limits[1] == uncapped.max_batch_size == 16  # the CPU's own limit
