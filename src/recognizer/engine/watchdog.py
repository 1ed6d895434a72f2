"""The watchdog: says honestly whether each model works, and gives up when none does.

It looks at every model a few times a second, on the event loop:

- A backend call running longer than `stall_timeout` is hung. Python cannot interrupt
  it, so its thread is left to it; its callers are answered at once with
  ModelUnavailableError (UNAVAILABLE: another replica may serve them). When every slot
  of a model (runner.slots) is a hung call, the model is NOT_SERVING ("stalled"): its queued
  requests are answered the same way and new ones refused, until a hung call returns.
- After `max_failed_batches` failed calls in a row the model is tried on a blank image,
  on a thread of its own, so a bad input cannot pass for a broken model: if the probe
  works the count starts again, if not the model is NOT_SERVING ("failing") and is
  probed again every PROBE_INTERVAL_S until it works.
- When every model has been NOT_SERVING for `unhealthy_exit` seconds, `on_hopeless` is
  called once: the process should exit non-zero so that its supervisor restarts it.

Changes of a runner's health go to `on_change`, which the server turns into health
statuses. The runners are asked for at each look: model versions come and go.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from contextlib import suppress
from typing import TYPE_CHECKING

from recognizer.config.schema import EngineSettings
from recognizer.engine.types import Health
from recognizer.errors import ModelUnavailableError

if TYPE_CHECKING:
    from recognizer.engine.runner import ModelRunner

logger = logging.getLogger(__name__)

PROBE_INTERVAL_S = 1.0
MAX_TICK_S = 0.25


class Watchdog:
    """Judges the runners' health from their progress; run() on the event loop until cancelled."""

    def __init__(
        self,
        runners: Callable[[], Iterable[ModelRunner]],
        settings: EngineSettings,
        *,
        on_change: Callable[[ModelRunner, Health], Awaitable[None]],
        on_hopeless: Callable[[], None],
    ) -> None:
        self._runners = runners
        self._stall_s = settings.stall_timeout
        self._max_failures = settings.max_failed_batches
        self._exit_after = settings.unhealthy_exit
        self._on_change = on_change
        self._on_hopeless = on_hopeless
        self._tick = min(MAX_TICK_S, self._stall_s / 4)
        # By runner, forgotten with it once its version is retired.
        self._probing: weakref.WeakSet[ModelRunner] = weakref.WeakSet()
        self._probed_tasks: set[asyncio.Task[None]] = set()  # referenced until they end
        self._next_probe: weakref.WeakKeyDictionary[ModelRunner, float] = (
            weakref.WeakKeyDictionary()
        )
        self._all_broken_since: float | None = None

    async def run(self) -> None:
        """Watch until cancelled."""
        while True:
            await asyncio.sleep(self._tick)
            now = time.monotonic()
            for runner in list(self._runners()):
                await self._check(runner, now)
            self._check_all(now)

    async def _check(self, runner: ModelRunner, now: float) -> None:
        name = runner.spec.name
        hung = [call for call in runner.progress.running() if now - call.since >= self._stall_s]
        for call in hung:
            why = f"a model call has run for {now - call.since:.0f}s"
            for job in call.batch:
                job.fail(ModelUnavailableError(name, why))
        if len(hung) >= runner.slots:
            await self._set(runner, Health.STALLED)
        elif runner.health is Health.STALLED:
            await self._set(runner, Health.SERVING)
        elif self._due_for_probe(runner, now):
            self._probe(runner)

    def _due_for_probe(self, runner: ModelRunner, now: float) -> bool:
        """Failing now, or found failing before, and not probed lately: a probe will tell."""
        suspect = runner.progress.failures_in_a_row >= self._max_failures
        return (
            (suspect or not runner.health.serving)
            and runner not in self._probing
            and now >= self._next_probe.get(runner, 0.0)
        )

    def _probe(self, runner: ModelRunner) -> None:
        """Run the model once on a blank image on a thread of its own (it may hang)."""
        name = runner.spec.name
        self._probing.add(runner)
        loop = asyncio.get_running_loop()

        def probe() -> None:
            try:
                runner.probe()
                ok = True
            except Exception as error:
                logger.warning("%s: the probe failed too: %s", name, error)
                ok = False
            with suppress(RuntimeError):  # the loop closed: nobody is watching any more
                loop.call_soon_threadsafe(self._report, runner, ok)

        threading.Thread(target=probe, name=f"probe-{name}", daemon=True).start()

    def _report(self, runner: ModelRunner, ok: bool) -> None:
        task = asyncio.get_running_loop().create_task(self._probed(runner, ok))
        self._probed_tasks.add(task)
        task.add_done_callback(self._probed_tasks.discard)

    async def _probed(self, runner: ModelRunner, ok: bool) -> None:
        self._probing.discard(runner)
        self._next_probe[runner] = time.monotonic() + PROBE_INTERVAL_S
        if ok:
            runner.progress.recovered()
            await self._set(runner, Health.SERVING)
        elif runner.health is not Health.STALLED:
            await self._set(runner, Health.FAILING)

    async def _set(self, runner: ModelRunner, health: Health) -> None:
        if health is runner.health:
            return
        name = runner.spec.name
        runner.health = health
        if health.serving:
            logger.warning("%s is SERVING again", name)
        else:
            logger.error("%s is NOT_SERVING: %s", name, health.value)
            failed = runner.shares.fail_all(lambda: ModelUnavailableError(name, health.value))
            if failed:
                logger.error("%s: %d request(s) answered UNAVAILABLE", name, failed)
        await self._on_change(runner, health)

    def _check_all(self, now: float) -> None:
        if any(runner.health.serving for runner in self._runners()):
            self._all_broken_since = None
            return
        if self._all_broken_since is None:
            self._all_broken_since = now
        if self._exit_after is not None and now - self._all_broken_since >= self._exit_after:
            logger.critical(
                "every model has been NOT_SERVING for %.0fs: giving up, for a restart",
                now - self._all_broken_since,
            )
            self._exit_after = None  # once
            self._on_hopeless()
