"""The engine: the one entry point the transport calls to classify an image.

It holds what every request shares (the registry of served models and their versions,
the pipeline: decoding and lookup pools, result cache, decoding memory budget; the
callers' rate limits, the count of work in flight), runs the watchdog that judges each
model's health, and decides when the server may stop. It admits a request (validate,
limit, a place in its model's queue) as a job bound to its model's runner and to the
pipeline; from there the job's life is lifecycle.py's, which never sees the engine.
Versions come and go while it serves (`add`, `retire`): what loads them is the
service's (service/models.py).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from recognizer import tracing
from recognizer.config.schema import EngineSettings
from recognizer.engine import lifecycle, sizing
from recognizer.engine.backends import Backend
from recognizer.engine.budget import MemoryBudget
from recognizer.engine.cache import ResultCache
from recognizer.engine.pipeline import Pipeline
from recognizer.engine.pools import PriorityThreads
from recognizer.engine.ratelimit import RateLimiter
from recognizer.engine.registry import ModelRegistry, ModelVersion, VersionState
from recognizer.engine.runner import ModelRunner
from recognizer.engine.types import Classification, Health, ModelStatus, Options, Priority
from recognizer.engine.watchdog import Watchdog
from recognizer.errors import (
    InvalidRequestError,
    ModelUnavailableError,
    PermissionDeniedError,
    RecognizerError,
    ShuttingDownError,
    quoted,
)
from recognizer.models.labels import normalize_language
from recognizer.models.raw import RawFrame
from recognizer.models.spec import ModelSpec

DEFAULT_LANGUAGE = "zh"
RETIRE_POLL_S = 0.02  # how often a retiring version's unanswered calls are counted
DRAIN_QUIET_S = 0.3
DRAIN_QUIET_MAX_S = 2.0
CLOSE_TIMEOUT_S = 10.0

HealthCallback = Callable[[str, Health], Awaitable[None]]

ModelAccess = Callable[[str, str], bool]
"""Whether a tenant may use a model, asked as (tenant, model); the security package's
Authenticator.may_use is one. With none, every caller may use every model."""

PriorityCeiling = Callable[[str], Priority]
"""The highest class a tenant's requests may take; the security package's
Authenticator.priority_ceiling is one. With none, every caller may take every class."""


@dataclass(frozen=True, slots=True)
class ServedModel:
    """A model version as the engine serves it: its spec and the backend that runs it."""

    spec: ModelSpec
    backend: Backend
    version: int = 1


def health_name(name: str, version: int) -> str:
    """The health service name of one model version: NAME:VERSION."""
    return f"{name}:{version}"


class Engine:
    """Classifies images with the served models; the first model is the default.

    Work in flight (accepted requests and open streams) is counted on the event loop,
    which alone changes it; `wait_idle` and `close` wait on events set when it ends.
    `hopeless` is set when the watchdog finds every model broken for too long.

    Usage:

        engine = Engine([ServedModel(spec, backend)], EngineSettings())
        await engine.start()
        result = await engine.classify(jpeg_bytes, Options(top_k=3, language="en"))
        await engine.close()
    """

    def __init__(
        self,
        models: Sequence[ServedModel],
        settings: EngineSettings,
        *,
        access: ModelAccess | None = None,
        priority_ceiling: PriorityCeiling | None = None,
    ) -> None:
        if not models:
            raise ValueError("the engine needs at least one model")
        if len({(model.spec.name, model.version) for model in models}) != len(models):
            raise ValueError("model names and versions must be unique")
        self.settings = settings
        self._access = access
        self._priority_ceiling = priority_ceiling
        self.models = ModelRegistry()
        for model in models:  # warmed by start(), before any request can come
            runner = self._runner(model)
            self.models.put(
                ModelVersion(model.spec.name, model.version, VersionState.READY, runner)
            )
        self._in_progress = [0] * (max(Priority) + 1)  # admitted requests, by class
        threads = sizing.preprocess_threads(settings)
        self.pipeline = Pipeline(
            preprocess=PriorityThreads(threads, name="preprocess", held=self._higher_at_work),
            lookup=PriorityThreads(threads, name="lookup", held=self._higher_at_work),
            cache=(
                ResultCache(max_entries=settings.cache_entries, max_bytes=settings.cache_bytes)
                if settings.cache_entries
                else None
            ),
            budget=MemoryBudget(sizing.decode_budget_bytes(settings)),
        )
        self.rate_limiter = (
            RateLimiter(
                settings.rate_limit, settings.rate_limit_burst or math.ceil(settings.rate_limit)
            )
            if settings.rate_limit is not None
            else None
        )
        self.hopeless = asyncio.Event()
        self._health_callbacks: list[HealthCallback] = []
        self._watchdog = Watchdog(
            self.models.ready_runners,
            settings,
            on_change=self._runner_health_changed,
            on_hopeless=self.hopeless.set,
        )
        self._watching: asyncio.Task[None] | None = None
        self._draining = False
        self._leaving = False
        self._requests = 0
        self._streams: set[Callable[[], object]] = set()
        self._no_requests = asyncio.Event()
        self._idle = asyncio.Event()  # no requests and no streams
        self._no_requests.set()
        self._idle.set()
        self._last_refusal = -math.inf
        self._refused = asyncio.Event()

    def _runner(self, model: ServedModel) -> ModelRunner:
        return ModelRunner(
            model.spec, model.backend, self.settings, version=model.version, keep=lifecycle.keep
        )

    def describe(self) -> tuple[ModelStatus, ...]:
        """The served models as they run, default first: for each, the version requests
        that name none go to (batch sizes are set when it is warmed)."""
        return tuple(self.models.runner(name).status() for name in self.models.names())

    @property
    def draining(self) -> bool:
        return self._draining

    def not_ready(self) -> RecognizerError | None:
        """Why balancers should send no work here now, or None: the server is leaving or
        draining, or the watchdog finds every model broken."""
        if self._leaving or self._draining:
            return ShuttingDownError()
        if not any(self.models.serving(name) for name in self.models.names()):
            default = self.models.default
            ready = self.models.ready(default)
            why = ready[0].runner.health.value if ready and ready[0].runner else "not loaded"
            return ModelUnavailableError(default, why)
        return None

    def announce_drain(self) -> None:
        """Report not ready from now on, while still serving (the drain delay before drain())."""
        self._leaving = True

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def pending(self, model: str = "") -> int:
        """Requests accepted for a model (default: the default model) and not yet answered."""
        return self.runner(model).pending

    async def start(self) -> None:
        """Warm every model up off the event loop, then start its dispatcher and the watchdog."""
        for runner in list(self.models.runners()):
            await self._warm_and_start(runner)
        self._watching = asyncio.create_task(self._watchdog.run(), name="watchdog")

    async def _warm_and_start(self, runner: ModelRunner) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.pipeline.preprocess, runner.warm_up)
        runner.start(lifecycle.dispatch)

    def loading(self, name: str, version: int) -> None:
        """Record that a version is being loaded (ListModels shows it; it takes no traffic)."""
        if self.models.get(name, version) is None:
            self.models.put(ModelVersion(name, version, VersionState.LOADING))

    def forget_loading(self, name: str, version: int) -> None:
        """A load given up (the server closing): its LOADING entry goes."""
        entry = self.models.get(name, version)
        if entry is not None and entry.state is VersionState.LOADING:
            self.models.drop(name, version)

    async def failed(self, name: str, version: int, reason: str) -> None:
        """Record that a version failed to load, and why. What served before still does: a
        version that was READY under the same number stays so."""
        entry = self.models.get(name, version)
        if entry is not None and entry.state is VersionState.READY:
            return
        self.models.put(ModelVersion(name, version, VersionState.FAILED, reason=reason))
        await self._health_changed(health_name(name, version), Health.UNLOADED)

    async def add(self, model: ServedModel, timeout: float) -> None:
        """Warm a loaded version up and start it; once ready it takes the requests that name
        its model and no version. A version READY under the same number is replaced: it
        answers what it accepted (`timeout` seconds at most), then stops."""
        name, version = model.spec.name, model.version
        runner = self._runner(model)
        previous = self.models.get(name, version)
        try:
            await self._warm_and_start(runner)
        except BaseException:
            await self._finish(runner, 0.0)
            raise
        self.models.put(ModelVersion(name, version, VersionState.READY, runner))
        await self._health_changed(health_name(name, version), Health.SERVING)
        await self._health_changed(name, Health.SERVING)
        if previous is not None and previous.runner is not None:
            await self._finish(previous.runner, timeout)

    async def retire(self, name: str, version: int, timeout: float) -> None:
        """Take a version out of service: it takes no new requests at once, answers those
        it accepted (`timeout` seconds at most, then refuses them), then stops and is
        forgotten, its memory with it."""
        entry = self.models.get(name, version)
        if entry is None:
            return
        self.models.put(ModelVersion(name, version, VersionState.UNLOADING, entry.runner))
        await self._health_changed(health_name(name, version), Health.UNLOADED)
        if not self.models.serving(name):
            await self._health_changed(name, Health.UNLOADED)
        if entry.runner is not None:
            await self._finish(entry.runner, timeout)
        self.models.drop(name, version)

    async def _finish(self, runner: ModelRunner, timeout: float) -> None:
        """Wait for a runner out of service to answer what it accepted, then stop it."""
        deadline = time.monotonic() + timeout
        # Polled: the count changes wherever a request ends, and this runs once a change.
        while runner.pending and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(RETIRE_POLL_S)
        if runner.pending:
            runner.shares.fail_all(ShuttingDownError)
        remaining = max(deadline - time.monotonic(), 0.0)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, runner.stop, remaining)
        if not runner.progress.running():  # a hung call keeps its runtime
            await loop.run_in_executor(None, runner.close)

    def on_health_change(self, callback: HealthCallback) -> None:
        """Have `callback(name, health)` awaited whenever a model's or a version's health
        changes: the watchdog's verdict, a version ready or retired. `name` is a model's
        name or a version's health_name."""
        self._health_callbacks.append(callback)

    async def _runner_health_changed(self, runner: ModelRunner, health: Health) -> None:
        name = runner.spec.name
        await self._health_changed(health_name(name, runner.version), health)
        await self._health_changed(name, Health.SERVING if self.models.serving(name) else health)

    async def _health_changed(self, name: str, health: Health) -> None:
        for callback in self._health_callbacks:
            await callback(name, health)

    async def classify(
        self,
        image: bytes | RawFrame,
        options: Options,
        *,
        deadline: float | None = None,
        flow: Hashable | None = None,
        tenant: str = "",
        caller: str = "",
    ) -> Classification:
        """Classify one image, encoded or raw.

        `deadline` is a time.monotonic() instant after which the answer is useless;
        `flow` groups requests for fair batching (one stream's frames, say); `tenant` is
        the authenticated caller, whose models and cache entries it uses ("" with auth
        off); `caller` is who fair shares and rate limits count (the tenant by default;
        the transports pass the peer's host when there is no tenant).
        """
        trace = tracing.request()  # None unless the call is traced
        if trace is not None:
            trace.begin("admit")
        job = self._job(
            image,
            options,
            deadline=deadline,
            flow=flow,
            tenant=tenant,
            caller=caller or tenant,
        )
        with self.admission(job):
            if trace is not None:
                trace.set({"recognizer.model": job.runner.spec.name})
                trace.end()
                job.trace = trace
            return await lifecycle.run(job)

    def _job(
        self,
        image: bytes | RawFrame,
        options: Options,
        *,
        deadline: float | None,
        flow: Hashable | None,
        tenant: str,
        caller: str,
    ) -> lifecycle.Job:
        """Validate a request and take it through the caller's rate limit: its job, bound
        to its model's runner and to the pipeline (lifecycle.py's stages validate, limit)."""
        self.refuse_if_draining()
        runner = self.runner_for(options.model, tenant, options.model_version)
        runner.refuse_if_unavailable()
        language = runner.spec.labels.resolve(self.language(options.language))
        if not 0.0 <= options.min_score <= 1.0:  # also refuses NaN
            raise InvalidRequestError(
                f"min_score must be within [0, 1], not {options.min_score}", field="min_score"
            )
        settings, classes = self.settings, runner.spec.num_classes
        top_k = min(options.top_k or settings.default_top_k, classes, settings.max_top_k)
        if self.rate_limiter is not None:
            self.rate_limiter.take(caller)
        return lifecycle.Job(
            runner,
            self.pipeline,
            image,
            language=language,
            top_k=top_k,
            min_score=options.min_score,
            scores=options.scores,
            ranked=min(classes, settings.max_top_k) if options.scores else top_k,
            deadline=deadline,
            flow=flow,
            tenant=tenant,
            caller=caller,
            priority=min(options.priority or Priority.NORMAL, self.priority_ceiling(tenant)),
        )

    def drain(self) -> None:
        """Refuse new requests from now on; requests already accepted are still answered."""
        self._draining = True
        for on_drain in list(self._streams):
            on_drain()

    @contextmanager
    def open_stream(self, on_drain: Callable[[], object]) -> Iterator[None]:
        """Count an open stream as work in flight; a new stream is refused when draining.

        `on_drain` runs when draining starts, so the stream stops reading new frames.
        """
        self.refuse_if_draining()
        self._streams.add(on_drain)
        self._idle.clear()
        try:
            yield
        finally:
            self._streams.discard(on_drain)
            self._settle()

    @contextmanager
    def admission(self, job: lifecycle.Job) -> Iterator[None]:
        """Hold the job's place in its model's queue (lifecycle.py's stage `admit`: refused
        at once when full) and count it as work in flight."""
        with job.runner.shares.place(job):
            self._requests += 1
            self._in_progress[job.priority] += 1
            self._no_requests.clear()
            self._idle.clear()
            try:
                yield
            finally:
                self._requests -= 1
                self._in_progress[job.priority] -= 1
                if job.priority > Priority.LOW and not self._in_progress[job.priority]:
                    self.pipeline.preprocess.wake()
                    self.pipeline.lookup.wake()
                self._settle()

    def _higher_at_work(self, priority: int) -> bool:
        """Whether a request of a class above `priority` is admitted and not yet answered:
        lower decoding waits for it (pools.py). Read from the pools' threads: each count is
        one list item, changed on the event loop."""
        return any(self._in_progress[priority + 1 :])

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no accepted request or stream is left, or `timeout` passes.

        While callers are still being refused, it waits for them to stop too (a quiet
        `DRAIN_QUIET_S`), so that the server closes once they have seen UNAVAILABLE, and
        not while their next call is on the wire (which gRPC would cancel). It waits for
        quiet `DRAIN_QUIET_MAX_S` at most: a client balancing its calls over several
        replicas goes on sending some here until the connection closes.
        """
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
                stop_waiting = time.monotonic() + DRAIN_QUIET_MAX_S
                while True:
                    await self._idle.wait()
                    now = time.monotonic()
                    quiet_for = DRAIN_QUIET_S - (now - self._last_refusal)
                    if quiet_for <= 0 or now >= stop_waiting:
                        return True
                    self._refused.clear()
                    with suppress(TimeoutError):
                        wait = min(quiet_for, stop_waiting - now)
                        await asyncio.wait_for(self._refused.wait(), wait)
        except TimeoutError:
            return False

    async def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Answer what was accepted, then stop the preprocess pool, the models' calls and the
        watchdog, within about `timeout` seconds: requests still unanswered by then are
        refused with ShuttingDownError, and threads hung in a model call are left behind."""
        deadline = time.monotonic() + timeout
        self.drain()
        if not await _wait(self._no_requests, timeout):
            for runner in self.models.runners():
                runner.shares.fail_all(ShuttingDownError)
            await self._no_requests.wait()  # the failed requests' callers now return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.pipeline.lookup.shutdown)  # it feeds the next
        await loop.run_in_executor(None, self.pipeline.preprocess.shutdown)
        for runner in list(self.models.runners()):
            remaining = max(deadline - time.monotonic(), 0.0)
            await loop.run_in_executor(None, runner.stop, remaining)
        if self._watching is not None:
            self._watching.cancel()

    def runner(self, name: str, version: int = 0) -> ModelRunner:
        """The runner of a served model's version; "" is the default model, 0 its newest
        ready version."""
        return self.models.runner(name, version)

    def runner_for(self, name: str, tenant: str, version: int = 0) -> ModelRunner:
        """The runner a tenant's request names ("" is the default model, 0 its newest ready
        version), if it may use it.

        Errors list only the models the tenant may use, so none learns of the others.
        """
        runner = self.models.runner(name, version, served=lambda: self.models_for(tenant))
        if not self.may_use(tenant, runner.spec.name):
            raise PermissionDeniedError(tenant, runner.spec.name, self.models_for(tenant))
        return runner

    def may_use(self, tenant: str, model: str) -> bool:
        return self._access is None or self._access(tenant, model)

    def priority_ceiling(self, tenant: str) -> Priority:
        """The highest class the tenant's requests may take (engine/batching.py)."""
        return Priority.HIGH if self._priority_ceiling is None else self._priority_ceiling(tenant)

    def models_for(self, tenant: str) -> list[str]:
        """The served models a tenant may use, default first."""
        return [name for name in self.models.names() if self.may_use(tenant, name)]

    def language(self, tag: str) -> str:
        """The language asked for; no tag means DEFAULT_LANGUAGE, or a model's fallback."""
        if not tag:
            return DEFAULT_LANGUAGE
        language = normalize_language(tag)
        languages = {
            language
            for runner in self.models.runners()
            for language in runner.spec.labels.languages
        }
        if language not in languages:
            supported = ", ".join(sorted(languages))
            raise InvalidRequestError(
                f"language {quoted(tag)} is not supported; use one of: {supported}",
                field="language",
            )
        return language

    def refuse_if_draining(self) -> None:
        if self._draining:
            self._last_refusal = time.monotonic()
            self._refused.set()
            raise ShuttingDownError()

    def _settle(self) -> None:
        if not self._requests:
            self._no_requests.set()
            if not self._streams:
                self._idle.set()


async def _wait(event: asyncio.Event, timeout: float) -> bool:
    """Whether the event was set within `timeout` seconds."""
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True
