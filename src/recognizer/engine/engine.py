"""The engine: the one entry point the transport calls to classify an image.

It holds what every request shares (the served models, the preprocess pool, the result
cache, the count of work in flight) and decides when the server may stop. The path of
one request through it is in lifecycle.py.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass

from recognizer.config.schema import EngineSettings
from recognizer.engine import lifecycle, sizing
from recognizer.engine.backends import Backend
from recognizer.engine.cache import ResultCache
from recognizer.engine.runner import ModelRunner
from recognizer.engine.types import Classification, ModelStatus, Options
from recognizer.errors import (
    InvalidRequestError,
    ModelNotFoundError,
    PermissionDeniedError,
    ShuttingDownError,
    quoted,
)
from recognizer.models.labels import normalize_language
from recognizer.models.raw import RawFrame
from recognizer.models.spec import ModelSpec

DEFAULT_LANGUAGE = "zh"
DRAIN_QUIET_S = 0.3

ModelAccess = Callable[[str, str], bool]
"""Whether a tenant may use a model, asked as (tenant, model); the security package's
Authenticator.may_use is one. With none, every caller may use every model."""


@dataclass(frozen=True, slots=True)
class ServedModel:
    """A model as the engine serves it: its spec and the backend that runs it."""

    spec: ModelSpec
    backend: Backend


class Engine:
    """Classifies images with the served models; the first model is the default.

    Work in flight (accepted requests and open streams) is counted on the event loop,
    which alone changes it; `wait_idle` and `close` wait on events set when it ends.

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
    ) -> None:
        if not models:
            raise ValueError("the engine needs at least one model")
        self.settings = settings
        self._access = access
        self._runners = {
            model.spec.name: ModelRunner(model.spec, model.backend, settings) for model in models
        }
        if len(self._runners) != len(models):
            raise ValueError("model names must be unique")
        self._languages = {lang for model in models for lang in model.spec.labels.languages}
        self._default_model = models[0].spec.name
        self.preprocess_pool = ThreadPoolExecutor(
            sizing.preprocess_threads(settings), thread_name_prefix="preprocess"
        )
        self.cache = (
            ResultCache(max_entries=settings.cache_entries, max_bytes=settings.cache_bytes)
            if settings.cache_entries
            else None
        )
        self._draining = False
        self._requests = 0
        self._streams: set[Callable[[], object]] = set()
        self._no_requests = asyncio.Event()
        self._idle = asyncio.Event()  # no requests and no streams
        self._no_requests.set()
        self._idle.set()
        self._last_refusal = -math.inf
        self._refused = asyncio.Event()

    def describe(self) -> tuple[ModelStatus, ...]:
        """The served models as they run (batch sizes are set by start()), default first."""
        return tuple(runner.status() for runner in self._runners.values())

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def pending(self, model: str = "") -> int:
        """Requests accepted for a model (default: the default model) and not yet answered."""
        return self.runner(model).pending

    async def start(self) -> None:
        """Warm every model up off the event loop, then start the inference workers."""
        loop = asyncio.get_running_loop()
        for runner in self._runners.values():
            await loop.run_in_executor(self.preprocess_pool, runner.warm_up)
            runner.start(self.cache)

    async def classify(
        self,
        image: bytes | RawFrame,
        options: Options,
        *,
        deadline: float | None = None,
        flow: Hashable | None = None,
        tenant: str = "",
    ) -> Classification:
        """Classify one image, encoded or raw.

        `deadline` is a time.monotonic() instant after which the answer is useless;
        `flow` groups requests for fair batching (one stream's frames, say); `tenant`
        names the caller ("" when callers are not told apart).
        """
        return await lifecycle.classify(
            self, image, options, deadline=deadline, flow=flow, tenant=tenant
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
    def admission(self, runner: ModelRunner) -> Iterator[None]:
        """Hold a place in the model's queue and count the request as work in flight."""
        with runner.admission():
            self._requests += 1
            self._no_requests.clear()
            self._idle.clear()
            try:
                yield
            finally:
                self._requests -= 1
                self._settle()

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no accepted request or stream is left, or `timeout` passes.

        While callers are still being refused, it waits for them to stop too (a quiet
        `DRAIN_QUIET_S`), so that the server closes once they have seen UNAVAILABLE, and
        not while their next call is on the wire (which gRPC would cancel).
        """
        try:
            async with asyncio.timeout(timeout):
                while True:
                    await self._idle.wait()
                    quiet_for = DRAIN_QUIET_S - (time.monotonic() - self._last_refusal)
                    if quiet_for <= 0 and self._idle.is_set():
                        return True
                    self._refused.clear()
                    with suppress(TimeoutError):
                        await asyncio.wait_for(self._refused.wait(), max(quiet_for, 0.0))
        except TimeoutError:
            return False

    async def close(self) -> None:
        """Answer what was accepted, then stop the preprocess pool and the workers."""
        self.drain()
        await self._no_requests.wait()  # accepted requests may still need the pool
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.preprocess_pool.shutdown)
        for runner in self._runners.values():
            await loop.run_in_executor(None, runner.stop)

    def runner(self, name: str) -> ModelRunner:
        """The runner of a served model; "" is the default model."""
        runner = self._runners.get(name or self._default_model)
        if runner is None:
            raise ModelNotFoundError(name, list(self._runners))
        return runner

    def runner_for(self, name: str, tenant: str) -> ModelRunner:
        """The runner a tenant's request names ("" is the default model), if it may use it.

        Errors list only the models the tenant may use, so none learns of the others.
        """
        runner = self._runners.get(name or self._default_model)
        if runner is None:
            raise ModelNotFoundError(name, self.models_for(tenant))
        if not self.may_use(tenant, runner.spec.name):
            raise PermissionDeniedError(tenant, runner.spec.name, self.models_for(tenant))
        return runner

    def may_use(self, tenant: str, model: str) -> bool:
        return self._access is None or self._access(tenant, model)

    def models_for(self, tenant: str) -> list[str]:
        """The served models a tenant may use, default first."""
        return [name for name in self._runners if self.may_use(tenant, name)]

    def language(self, tag: str) -> str:
        """The language asked for; no tag means DEFAULT_LANGUAGE, or a model's fallback."""
        if not tag:
            return DEFAULT_LANGUAGE
        language = normalize_language(tag)
        if language not in self._languages:
            supported = ", ".join(sorted(self._languages))
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
