"""The engine: the one entry point the transport calls to classify an image.

classify(image, options)
  -> validate options              (on the event loop, cheap)
  -> admission                     (the model's queue limit, refused at once)
  -> result cache, if on           (the image's hash, in the preprocess thread pool)
  -> decode + preprocess           (preprocess thread pool)
  -> batch queue -> worker thread  (the model's backend)
  -> labels in the asked language  (on the event loop)
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NoReturn

from recognizer.engine.backends import Backend
from recognizer.engine.cache import CachedScores, ResultCache, image_digest
from recognizer.engine.runner import ModelRunner
from recognizer.engine.settings import EngineSettings
from recognizer.engine.types import Classification, Label, ModelStatus, Options, Timing
from recognizer.errors import (
    InvalidRequestError,
    ModelNotFoundError,
    ShuttingDownError,
)
from recognizer.models.labels import normalize_language
from recognizer.models.raw import RawFrame
from recognizer.models.spec import ModelSpec

DEFAULT_LANGUAGE = "zh"
DRAIN_QUIET_S = 0.3


@dataclass(frozen=True, slots=True)
class ServedModel:
    """A model as the engine serves it: its spec and the backend that runs it."""

    spec: ModelSpec
    backend: Backend


class Engine:
    """Classifies images with the served models; the first model is the default.

    Usage:

        engine = Engine([ServedModel(spec, backend)], EngineSettings())
        await engine.start()
        result = await engine.classify(jpeg_bytes, Options(top_k=3, language="en"))
        await engine.close()
    """

    def __init__(self, models: Sequence[ServedModel], settings: EngineSettings) -> None:
        if not models:
            raise ValueError("the engine needs at least one model")
        self.settings = settings
        self._runners = {
            model.spec.name: ModelRunner(model.spec, model.backend, settings) for model in models
        }
        if len(self._runners) != len(models):
            raise ValueError("model names must be unique")
        self._languages = {lang for model in models for lang in model.spec.labels.languages}
        self._default_model = models[0].spec.name
        self._preprocess_pool = ThreadPoolExecutor(
            settings.preprocess_threads, thread_name_prefix="preprocess"
        )
        self._cache = (
            ResultCache(max_entries=settings.cache_entries, max_bytes=settings.cache_bytes)
            if settings.cache_entries
            else None
        )
        self._draining = False
        self._last_refusal = -math.inf
        self._streams: set[Callable[[], object]] = set()

    def describe(self) -> tuple[ModelStatus, ...]:
        """The served models as they run (batch sizes are set by start()), default first."""
        return tuple(runner.status() for runner in self._runners.values())

    @property
    def draining(self) -> bool:
        return self._draining

    async def start(self) -> None:
        """Warm every model up off the event loop, then start the inference workers."""
        loop = asyncio.get_running_loop()
        for runner in self._runners.values():
            await loop.run_in_executor(self._preprocess_pool, runner.warm_up)
            runner.start(loop, self._preprocess_pool)

    def drain(self) -> None:
        """Refuse new requests from now on; requests already accepted are still answered."""
        self._draining = True
        for on_drain in list(self._streams):
            on_drain()

    @contextmanager
    def open_stream(self, on_drain: Callable[[], object]) -> Iterator[None]:
        """Count an open stream as busy while inside; a new stream is refused when draining.

        `on_drain` runs when draining starts, so the stream stops reading new frames.
        """
        if self._draining:
            self._refuse()
        self._streams.add(on_drain)
        try:
            yield
        finally:
            self._streams.discard(on_drain)

    async def close(self) -> None:
        """Answer what was accepted, then stop the preprocess pool and the workers."""
        self.drain()
        # A request may still need the pool (to hash, then to decode): wait for it to
        # leave. Polled like wait_idle, as `pending` changes across threads.
        while any(runner.pending for runner in self._runners.values()):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._preprocess_pool.shutdown)
        for runner in self._runners.values():
            await loop.run_in_executor(None, runner.stop)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no accepted request or stream is left, or `timeout` passes.

        While callers are still being refused, it waits for them to stop too (a quiet
        `DRAIN_QUIET_S`), so that the server closes once they have seen UNAVAILABLE, and
        not while their next call is on the wire (which gRPC would cancel).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (
            self._streams
            or any(r.pending for r in self._runners.values())
            or time.monotonic() - self._last_refusal < DRAIN_QUIET_S
        ):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    @property
    def cache(self) -> ResultCache | None:
        """The result cache, when enabled (EngineSettings.cache_entries)."""
        return self._cache

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def pending(self, model: str = "") -> int:
        """Requests accepted for a model (default: the default model) and not yet answered."""
        return self._runner(model).pending

    async def classify(
        self,
        image: bytes | RawFrame,
        options: Options,
        *,
        deadline: float | None = None,
        flow: Hashable | None = None,
    ) -> Classification:
        """Classify one image, encoded or raw.

        `deadline` is a time.monotonic() instant after which the answer is useless;
        `flow` groups requests for fair batching (one stream's frames, say).
        """
        if self._draining:
            self._refuse()
        runner = self._runner(options.model)
        spec = runner.spec
        top_k = min(options.top_k or self.settings.default_top_k, spec.num_classes)
        language = self._language(options.language)
        if not 0.0 <= options.min_score <= 1.0:  # also rejects NaN
            raise InvalidRequestError(
                f"min_score must be within [0, 1], not {options.min_score}", field="min_score"
            )
        with runner.admission():
            digest = None
            if self._cache is not None:
                loop = asyncio.get_running_loop()
                digest = await loop.run_in_executor(self._preprocess_pool, image_digest, image)
                cached = self._cache.get(spec.name, digest, top_k)
                if cached is not None:
                    return self._answer(spec, language, options, cached, Timing(cache_hit=True))
            output = await runner.classify(image, top_k, deadline=deadline, flow=flow)
        scores = CachedScores(output.scores, output.class_ids)
        if self._cache is not None and digest is not None:
            self._cache.put(spec.name, digest, scores.copy())
        timing = Timing(
            queue_s=output.queue_s,
            preprocess_s=output.preprocess_s,
            inference_s=output.inference_s,
            batch_size=output.batch_size,
        )
        return self._answer(spec, language, options, scores, timing)

    @staticmethod
    def _answer(
        spec: ModelSpec, language: str, options: Options, scores: CachedScores, timing: Timing
    ) -> Classification:
        """Name the classes in the asked language (or the model's fallback), drop weak ones."""
        answered_in = spec.labels.resolve(language)
        names = spec.labels.names(answered_in)
        labels = tuple(
            Label(int(class_id), names[class_id], float(score))
            for score, class_id in zip(scores.scores, scores.class_ids, strict=True)
            if score >= options.min_score
        )
        return Classification(model=spec.name, language=answered_in, labels=labels, timing=timing)

    def _runner(self, name: str) -> ModelRunner:
        runner = self._runners.get(name or self._default_model)
        if runner is None:
            raise ModelNotFoundError(name, list(self._runners))
        return runner

    def _refuse(self) -> NoReturn:
        self._last_refusal = time.monotonic()
        raise ShuttingDownError()

    def _language(self, tag: str) -> str:
        """The language asked for; no tag means DEFAULT_LANGUAGE, or a model's fallback."""
        if not tag:
            return DEFAULT_LANGUAGE
        language = normalize_language(tag)
        if language not in self._languages:
            supported = ", ".join(sorted(self._languages))
            raise InvalidRequestError(
                f"language {tag!r} is not supported; use one of: {supported}", field="language"
            )
        return language
