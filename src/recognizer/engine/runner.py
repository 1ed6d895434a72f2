"""One served model: its admission limit, batch queue, backend and worker threads."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager

import numpy as np

from recognizer.engine.backends import Backend
from recognizer.engine.batching import BatchQueue
from recognizer.engine.settings import EngineSettings
from recognizer.engine.tuning import (
    CPU_BATCH_SIZE,
    GPU_BATCH_LIMIT,
    measure_throughput,
    tune_batch_size,
)
from recognizer.engine.types import ModelStatus
from recognizer.engine.worker import BatchOutput, InferenceWorker, WorkItem
from recognizer.errors import DeadlineExceededError, OverloadedError
from recognizer.models.preprocessing import decode_image, prepare_input
from recognizer.models.raw import RawFrame, frame_to_image
from recognizer.models.spec import ModelSpec

logger = logging.getLogger(__name__)


class ModelRunner:
    """Runs requests for one model, so a slow model never holds up another.

    Admission counts every request from the moment it is accepted until it is answered
    or its caller gives up (a request given up while queued is dropped when a worker
    reaches it, not run); over `max_queued_requests`, new requests are refused at once
    with OverloadedError.

    The batch size, whether set, the CPU's default or measured on a GPU, never exceeds
    the model's own `spec.max_batch_size`.
    """

    def __init__(self, spec: ModelSpec, backend: Backend, settings: EngineSettings) -> None:
        self.spec = spec
        self.backend = backend
        self.settings = settings
        self.workers = settings.workers_for(backend.device)
        self._queue: BatchQueue[WorkItem] = BatchQueue(
            max_batch_size=self._capped(settings.max_batch_size or 1),
            max_delay_s=settings.batch_delay_for(backend.device),
            keep=self._keep,
        )
        self._threads = [
            InferenceWorker(
                name=f"infer-{spec.name}-{index}",
                queue=self._queue,
                backend=backend,
                deliver=self._deliver,
            )
            for index in range(self.workers)
        ]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._preprocess_pool: Executor | None = None
        self._pending = 0
        self._seconds_per_item = 0.01
        self._batch_sizes: Counter[int] = Counter()
        self._inference_s = 0.0

    @property
    def pending(self) -> int:
        """Requests accepted and not yet answered."""
        return self._pending

    @property
    def max_batch_size(self) -> int:
        return self._queue.max_batch_size

    def status(self) -> ModelStatus:
        return ModelStatus(
            spec=self.spec,
            backend=self.backend.name,
            device=self.backend.device,
            max_batch_size=self.max_batch_size,
            pending=self._pending,
            batch_sizes=dict(self._batch_sizes),
            inference_s=self._inference_s,
        )

    def warm_up(self) -> None:
        """Run the model once at every batch size it will see, choosing the size if unset."""
        if self.settings.max_batch_size is None:
            on_cpu = self.backend.device == "cpu"
            self._queue.max_batch_size = self._capped(CPU_BATCH_SIZE) if on_cpu else self._tuned()
        size = self.spec.preprocessing.crop
        for batch_size in sorted({1, self.max_batch_size}):
            self.backend(np.zeros((batch_size, size, size, 3), dtype=np.uint8), 1)

    def _tuned(self) -> int:
        """The batch size measured best on this device (engine/tuning.py)."""
        throughput = functools.partial(
            measure_throughput,
            self.backend,
            self.spec.preprocessing.crop,
            workers=self.workers,
            seconds=0.4,
        )
        chosen, rates = tune_batch_size(throughput, limit=self._capped(GPU_BATCH_LIMIT))
        logger.info(
            "%s: batch size %d chosen; images/s by batch size: %s",
            self.spec.name,
            chosen,
            ", ".join(f"{batch}: {rate:.0f}" for batch, rate in rates.items()),
        )
        return chosen

    def start(self, loop: asyncio.AbstractEventLoop, preprocess_pool: Executor) -> None:
        self._loop = loop
        self._preprocess_pool = preprocess_pool
        for thread in self._threads:
            thread.start()
        logger.info(
            "%s: batches of up to %d, waiting at most %.1f ms to fill, on %d worker(s)",
            self.spec.name,
            self.max_batch_size,
            self._queue.max_delay_s * 1000,
            self.workers,
        )

    def stop(self) -> None:
        """Finish what is queued, then stop the workers."""
        self._queue.close()
        for thread in self._threads:
            if thread.is_alive():
                thread.join()

    @contextmanager
    def admission(self) -> Iterator[None]:
        """Hold a place in this model's queue for the duration of the block."""
        if self._pending >= self.settings.max_queued_requests:
            raise OverloadedError(
                self.spec.name, self.settings.max_queued_requests, self._retry_after()
            )
        self._pending += 1
        try:
            yield
        finally:
            self._pending -= 1

    def preprocess(self, image: bytes | RawFrame) -> np.ndarray:
        """Decode and prepare one image; blocking, so it runs in the preprocess pool."""
        limit = self.settings.max_image_pixels
        if isinstance(image, RawFrame):
            decoded = frame_to_image(image, max_pixels=limit)
        else:
            decoded = decode_image(image, max_pixels=limit)
        return prepare_input(decoded, self.spec.preprocessing)

    async def classify(
        self,
        image: bytes | RawFrame,
        top_k: int,
        *,
        deadline: float | None,
        flow: Hashable | None,
    ) -> BatchOutput:
        """Decode the image in the preprocess pool, batch it, and wait for the top-k answer.

        The decoding thread queues the pixels itself, so the event loop is woken once per
        request, with the answer; a caller that gives up first takes its job back.
        """
        if self._loop is None or self._preprocess_pool is None:
            raise RuntimeError("the runner has not been started")
        answer: asyncio.Future[BatchOutput] = self._loop.create_future()
        job = self._preprocess_pool.submit(self._prepare, image, top_k, deadline, flow, answer)
        answer.add_done_callback(lambda done: job.cancel() if done.cancelled() else None)
        return await answer

    def _prepare(
        self,
        image: bytes | RawFrame,
        top_k: int,
        deadline: float | None,
        flow: Hashable | None,
        answer: asyncio.Future[BatchOutput],
    ) -> None:
        """In the preprocess pool: decode, then queue for the model (or report the error)."""
        started = time.monotonic()
        try:
            pixels = self.preprocess(image)
        except Exception as error:
            self._call_on_loop(_fail, answer, error)
            return
        item = WorkItem(pixels, top_k, deadline, answer, time.monotonic() - started)
        self._queue.put(item, item if flow is None else flow)

    def _capped(self, batch_size: int) -> int:
        cap = self.spec.max_batch_size
        return batch_size if cap is None else min(batch_size, cap)

    def _retry_after(self) -> float:
        """How long the current queue should take to drain, given recent model speed."""
        drain_s = self._pending * self._seconds_per_item / self.workers
        return min(max(drain_s, 0.05), 10.0)

    def _keep(self, item: WorkItem) -> bool:
        """Queue filter, on a worker thread: skip cancelled and expired requests."""
        if item.future.done():
            return False
        if item.deadline is not None and time.monotonic() >= item.deadline:
            self._call_on_loop(_fail_expired, item.future)
            return False
        return True

    def _deliver(
        self, items: Sequence[WorkItem], outputs: Sequence[BatchOutput | BaseException]
    ) -> None:
        """Worker callback: resolve the batch's futures on the event loop, in one hop."""
        self._call_on_loop(self._resolve, items, outputs)

    def _call_on_loop(self, callback: Callable[..., object], *args: object) -> None:
        """Schedule a callback on the event loop from a worker; a closed loop has no one to tell."""
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback, *args)

    def _resolve(
        self, items: Sequence[WorkItem], outputs: Sequence[BatchOutput | BaseException]
    ) -> None:
        batch = next((o for o in outputs if isinstance(o, BatchOutput)), None)
        if batch is not None:
            per_item = batch.inference_s / batch.batch_size
            self._seconds_per_item = 0.9 * self._seconds_per_item + 0.1 * per_item
            self._batch_sizes[batch.batch_size] += 1
            self._inference_s += batch.inference_s
        for item, output in zip(items, outputs, strict=True):
            if item.future.done():
                continue
            if isinstance(output, BaseException):
                item.future.set_exception(output)
            else:
                item.future.set_result(output)


def _fail(future: asyncio.Future[BatchOutput], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


def _fail_expired(future: asyncio.Future[BatchOutput]) -> None:
    _fail(future, DeadlineExceededError("the deadline passed before the model was free"))
