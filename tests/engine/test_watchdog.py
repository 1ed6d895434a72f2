"""The watchdog on a real engine with a backend that hangs or fails: honest health, callers
answered, recovery, and giving up when every model is broken."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from fakes import POISON, Faulty, faulty_model, solid_png
from recognizer.config.schema import EngineSettings
from recognizer.engine.engine import Engine
from recognizer.engine.types import Health, Options
from recognizer.errors import ModelUnavailableError

BLUE = (10, 10, 200)
OPTIONS = Options(top_k=1)


class Watched:
    """An engine on faulty backends, with the health changes it announced."""

    def __init__(self, engine: Engine, backends: list[Faulty]) -> None:
        self.engine = engine
        self.backends = backends
        self.changes: list[tuple[str, Health]] = []

        async def record(model: str, health: Health) -> None:
            self.changes.append((model, health))

        engine.on_health_change(record)

    async def classify(self, model: str = "") -> object:
        return await self.engine.classify(solid_png(BLUE), Options(model=model, top_k=1))

    async def until(self, condition: object, timeout: float = 10.0) -> None:
        started = time.monotonic()
        while not condition():  # type: ignore[operator]
            assert time.monotonic() - started < timeout, f"still waiting; changes: {self.changes}"
            await asyncio.sleep(0.02)


@pytest.fixture
async def watched() -> AsyncIterator[Watched]:
    served, backend = faulty_model()
    settings = EngineSettings(
        max_batch_size=1,
        inference_workers=1,
        stall_timeout=0.5,
        max_failed_batches=3,
        unhealthy_exit=None,
    )
    engine = Engine([served], settings)
    await engine.start()
    yield Watched(engine, [backend])
    backend.mode = "ok"
    backend.released.set()
    await engine.close(timeout=5)


def serving(watched: Watched) -> bool:
    return watched.engine.describe()[0].serving


async def test_a_hung_call_answers_its_callers_and_stalls_the_model_until_it_returns(
    watched: Watched,
) -> None:
    backend = watched.backends[0]
    backend.mode = "hang"
    started = time.monotonic()
    with pytest.raises(ModelUnavailableError, match="has run for"):
        await watched.classify()
    assert time.monotonic() - started < 5
    await watched.until(lambda: not serving(watched))
    # The version's health, then its model's (its only version).
    assert watched.changes == [("colours:1", Health.STALLED), ("colours", Health.STALLED)]
    refused_at = time.monotonic()
    with pytest.raises(ModelUnavailableError, match="does not return"):
        await watched.classify()
    assert time.monotonic() - refused_at < 0.5  # refused at once, not queued behind the hang
    backend.mode = "ok"
    backend.released.set()
    await watched.until(lambda: serving(watched))
    assert watched.changes[-1] == ("colours", Health.SERVING)
    result = await watched.classify()
    assert result.labels[0].class_id == 2  # type: ignore[attr-defined]


async def test_a_model_failing_every_call_is_not_serving_until_a_probe_works(
    watched: Watched,
) -> None:
    backend = watched.backends[0]
    backend.mode = "fail"
    for _ in range(3):
        with pytest.raises(RuntimeError):
            await watched.classify()
    await watched.until(lambda: not serving(watched))
    assert watched.changes == [("colours:1", Health.FAILING), ("colours", Health.FAILING)]
    with pytest.raises(ModelUnavailableError, match="fail"):
        await watched.classify()
    backend.mode = "ok"  # the fault clears: the next probe finds it so
    await watched.until(lambda: serving(watched))
    assert (await watched.classify()).labels[0].class_id == 2  # type: ignore[attr-defined]


async def test_inputs_that_break_the_model_do_not_make_it_unhealthy(watched: Watched) -> None:
    for _ in range(5):
        with pytest.raises(RuntimeError):
            await watched.engine.classify(solid_png(POISON), OPTIONS)
    runner = watched.engine.runner("")
    await watched.until(lambda: runner.progress.failures_in_a_row == 0)  # a probe worked
    assert watched.changes == [] and serving(watched)


async def test_closing_does_not_wait_for_a_hung_worker_for_ever(watched: Watched) -> None:
    watched.backends[0].mode = "hang"
    call = asyncio.create_task(watched.classify())
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await watched.engine.close(timeout=1)
    assert time.monotonic() - started < 4
    with pytest.raises(ModelUnavailableError):  # the watchdog answered it first
        await call


async def test_every_model_broken_for_long_enough_is_hopeless_one_working_is_not() -> None:
    (first, first_backend), (second, second_backend) = faulty_model("a"), faulty_model("b")
    settings = EngineSettings(
        max_batch_size=1, inference_workers=1, max_failed_batches=1, unhealthy_exit=0.5
    )
    engine = Engine([first, second], settings)
    await engine.start()
    try:
        first_backend.mode = "fail"
        with pytest.raises(RuntimeError):
            await engine.classify(solid_png(BLUE), Options(model="a"))
        await asyncio.sleep(1.5)
        assert not engine.hopeless.is_set()  # b still works
        second_backend.mode = "fail"
        with pytest.raises(RuntimeError):
            await engine.classify(solid_png(BLUE), Options(model="b"))
        await asyncio.wait_for(engine.hopeless.wait(), timeout=10)
        assert [model.serving for model in engine.describe()] == [False, False]
    finally:
        await engine.close(timeout=5)
