"""Inference worker threads: take a batch, run the backend, hand results back."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from recognizer.engine.backends import Backend
from recognizer.engine.batching import BatchQueue

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BatchOutput:
    """One item's share of a batch: its top-k scores and ids, and what the batch cost."""

    scores: np.ndarray
    class_ids: np.ndarray
    preprocess_s: float
    queue_s: float
    inference_s: float
    batch_size: int


@dataclass(eq=False, slots=True)
class WorkItem:
    """A preprocessed request waiting for the model.

    `future` belongs to the caller's event loop: workers never touch it, they pass
    finished items to the runner's `deliver`, which resolves it on that loop.
    """

    pixels: np.ndarray
    top_k: int
    deadline: float | None
    future: asyncio.Future[BatchOutput]
    preprocess_s: float
    enqueued_at: float = field(default_factory=time.monotonic)


Deliver = Callable[[Sequence[WorkItem], Sequence[BatchOutput | BaseException]], None]


class InferenceWorker(threading.Thread):
    """Runs batches from a queue through a backend until the queue is closed and empty.

    A failing batch is retried one item at a time, so one bad input fails alone and its
    batch neighbours still get their answers.
    """

    def __init__(
        self, *, name: str, queue: BatchQueue[WorkItem], backend: Backend, deliver: Deliver
    ) -> None:
        super().__init__(name=name, daemon=True)
        self._queue = queue
        self._backend = backend
        self._deliver = deliver

    def run(self) -> None:
        while batch := self._queue.next_batch():
            self._deliver(batch, self._run(batch))

    def _run(self, batch: Sequence[WorkItem]) -> list[BatchOutput | BaseException]:
        started = time.monotonic()
        try:
            return self._infer(batch, started)
        except Exception:
            if len(batch) == 1:
                logger.exception("inference failed")
                return [RuntimeError("inference failed")]
            logger.warning("a batch of %d failed; retrying its items one by one", len(batch))
            return [output for item in batch for output in self._run([item])]

    def _infer(
        self, batch: Sequence[WorkItem], started: float
    ) -> list[BatchOutput | BaseException]:
        top_k = max(item.top_k for item in batch)
        scores, class_ids = self._backend(np.stack([item.pixels for item in batch]), top_k)
        inference_s = time.monotonic() - started
        return [
            BatchOutput(
                scores=scores[row, : item.top_k],
                class_ids=class_ids[row, : item.top_k],
                preprocess_s=item.preprocess_s,
                queue_s=started - item.enqueued_at,
                inference_s=inference_s,
                batch_size=len(batch),
            )
            for row, item in enumerate(batch)
        ]
