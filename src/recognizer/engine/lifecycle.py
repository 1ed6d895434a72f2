"""The life of one request in the engine, stage by stage, on the threads it visits.

    stage     thread             what happens                          ends it early
    validate  event loop         model (and the tenant's right to      InvalidRequestError,
                                 it), language, top_k, min_score       ModelNotFoundError,
                                                                       PermissionDeniedError
    admit     event loop         a place in the model's queue          OverloadedError
    hash      preprocess pool    the image's digest, in the tenant's
                                 part of the cache; a cached answer
                                 skips to `name`
    decode    preprocess pool    bytes or raw frame -> uint8 input     InvalidImageError
                                 (a JPEG's header only, where the
                                 backend decodes on its device)
    queue     preprocess pool    the decoding thread queues the job
    batch     inference worker   live jobs taken round-robin by flow   DeadlineExceededError
    infer     inference worker   the backend runs the batch (decoding  InvalidImageError for
                                 its JPEGs first, where it does)       a JPEG that fails to
                                                                       decode there (a failed
                                                                       batch is retried job
                                                                       by job)
    name      inference worker   top-k class ids named in the language
    answer    event loop         the caller's future resolves

admission comes before hashing so that a full model refuses at once, before spending a
thread on the image. One `Job` carries the request through every stage. Only the event
loop touches asyncio objects: the other threads write the job's result slot (`answer` or
`error`) and hand it back with one `call_soon_threadsafe` per batch. A caller that gives
up abandons its job; any thread may read that, so the pool and the workers skip it.
`time.monotonic()` is the one clock: deadlines, timings and the batch queue all use it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Hashable, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, cast

import numpy as np

from recognizer.engine.backends import RowErrors
from recognizer.engine.cache import CacheKey, ResultCache, cache_key
from recognizer.engine.types import Classification, Label, Options, Timing, TopClasses
from recognizer.errors import DeadlineExceededError, InvalidRequestError
from recognizer.models.jpeg import DeviceInput, read_jpeg_header
from recognizer.models.preprocessing import decode_image, prepare_input
from recognizer.models.raw import RawFrame, frame_to_image

if TYPE_CHECKING:
    from recognizer.engine.engine import Engine
    from recognizer.engine.runner import ModelRunner

logger = logging.getLogger(__name__)

_NOT_DECODED = np.empty(0, dtype=np.uint8)


class Job:
    """One request from admission to answer: the only object that crosses threads.

    The event loop creates it and alone touches `future`. The thread that ends the job
    (a preprocess thread on a cache hit or a bad image, else an inference worker) fills
    the result slot, `answer` or `error`, before handing the job back; the loop reads
    the slot only after that hand-off. `abandon()` and `abandoned` are safe anywhere.
    """

    __slots__ = (
        "_abandoned",
        "answer",
        "cache_key",
        "deadline",
        "enqueued_at",
        "error",
        "flow",
        "future",
        "image",
        "language",
        "loop",
        "min_score",
        "pixels",
        "preprocess_s",
        "runner",
        "tenant",
        "top_k",
    )

    def __init__(
        self,
        runner: ModelRunner,
        image: bytes | RawFrame,
        *,
        language: str,
        top_k: int,
        min_score: float,
        deadline: float | None,
        flow: Hashable | None,
        tenant: str,
    ) -> None:
        self.runner = runner
        self.image = image
        self.language = language
        self.top_k = top_k
        self.min_score = min_score
        self.deadline = deadline
        self.flow: Hashable = self if flow is None else flow
        self.tenant = tenant
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[Classification] = self.loop.create_future()
        self.cache_key: CacheKey | None = None
        self.pixels: DeviceInput = _NOT_DECODED
        self.preprocess_s = 0.0
        self.enqueued_at = 0.0
        self.answer: Classification | None = None
        self.error: BaseException | None = None
        self._abandoned = threading.Event()

    def abandon(self) -> None:
        """The caller no longer waits: skip whatever stage has not started."""
        self._abandoned.set()

    @property
    def abandoned(self) -> bool:
        return self._abandoned.is_set()

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline


# validate, admit, then wait for the answer: on the event loop


async def classify(
    engine: Engine,
    image: bytes | RawFrame,
    options: Options,
    *,
    deadline: float | None,
    flow: Hashable | None,
    tenant: str,
) -> Classification:
    """Take one request through every stage and return its answer."""
    engine.refuse_if_draining()
    runner = engine.runner_for(options.model, tenant)
    language = runner.spec.labels.resolve(engine.language(options.language))
    if not 0.0 <= options.min_score <= 1.0:  # also refuses NaN
        raise InvalidRequestError(
            f"min_score must be within [0, 1], not {options.min_score}", field="min_score"
        )
    top_k = min(options.top_k or engine.settings.default_top_k, runner.spec.num_classes)
    with engine.admission(runner):
        job = Job(
            runner,
            image,
            language=language,
            top_k=top_k,
            min_score=options.min_score,
            deadline=deadline,
            flow=flow,
            tenant=tenant,
        )
        job.future.add_done_callback(lambda future: job.abandon() if future.cancelled() else None)
        engine.preprocess_pool.submit(prepare, job, engine.cache)
        return await job.future


# hash, decode, queue: on a preprocess thread


def prepare(job: Job, cache: ResultCache | None) -> None:
    """Answer from the cache, or decode the image and queue it for the model."""
    if job.abandoned:
        return
    runner = job.runner
    try:
        if cache is not None:
            job.cache_key = cache_key(job.tenant, runner.spec.name, job.image)
            cached = cache.get(job.cache_key, job.top_k)
            if cached is not None:
                job.answer = name(job, cached, Timing(cache_hit=True))
                hand_back([job])
                return
        started = time.monotonic()
        job.pixels = decode(job, runner.settings.max_image_pixels)
        job.enqueued_at = time.monotonic()
        job.preprocess_s = job.enqueued_at - started
    except Exception as error:
        job.error = error
        hand_back([job])
        return
    runner.queue.put(job, job.flow)


def decode(job: Job, max_pixels: int) -> DeviceInput:
    """The model's input for the job's image: uint8 (crop, crop, 3) pixels, or a JPEG the
    backend decodes on its device (its header read, so a bad one fails here as in Pillow)."""
    image = job.image
    if isinstance(image, RawFrame):
        decoded = frame_to_image(image, max_pixels=max_pixels)
    elif job.runner.decoder is not None and (jpeg := read_jpeg_header(image, max_pixels)):
        return jpeg
    else:
        decoded = decode_image(image, max_pixels=max_pixels)
    return prepare_input(decoded, job.runner.spec.preprocessing)


# batch, infer, name: on an inference worker


def keep(job: Job) -> bool:
    """The batch queue's filter: abandoned jobs are dropped, expired ones answered so."""
    if job.abandoned:
        return False
    if job.expired(time.monotonic()):
        job.error = DeadlineExceededError("the deadline passed before the model was free")
        hand_back([job])
        return False
    return True


def run_worker(runner: ModelRunner, cache: ResultCache | None) -> None:
    """An inference worker thread: batches until the queue is closed and drained."""
    while batch := runner.queue.next_batch():
        infer(runner, batch, cache)
        hand_back(batch)


def infer(runner: ModelRunner, batch: Sequence[Job], cache: ResultCache | None) -> None:
    """Run a batch and fill each job's result slot; a failed batch is retried job by job,
    so one bad input fails alone and its neighbours still get their answers. A JPEG the
    backend fails to decode on its device is answered with that error alone."""
    started = time.monotonic()
    try:
        top_k = max(job.top_k for job in batch)
        rows = [job.pixels for job in batch]
        errors: RowErrors = [None] * len(batch)
        if runner.decoder is not None:
            scores, class_ids, errors = runner.decoder.classify_rows(rows, top_k)
        else:
            pixels = cast(list[np.ndarray], rows)  # without a decoder, every row is pixels
            scores, class_ids = runner.backend(np.stack(pixels), top_k)
    except Exception:
        if len(batch) > 1:
            logger.warning("a batch of %d failed; retrying its jobs one by one", len(batch))
            for job in batch:
                infer(runner, [job], cache)
            return
        logger.exception("inference failed")
        batch[0].error = RuntimeError("inference failed")
        return
    inference_s = time.monotonic() - started
    runner.record_batch(len(batch), inference_s)
    for row, (job, error) in enumerate(zip(batch, errors, strict=True)):
        if error is not None:
            job.error = error
            continue
        top = TopClasses(scores[row, : job.top_k].copy(), class_ids[row, : job.top_k].copy())
        if cache is not None and job.cache_key is not None:
            cache.put(job.cache_key, top)
        timing = Timing(
            queue_s=started - job.enqueued_at,
            preprocess_s=job.preprocess_s,
            inference_s=inference_s,
            batch_size=len(batch),
        )
        job.answer = name(job, top, timing)


def name(job: Job, top: TopClasses, timing: Timing) -> Classification:
    """Name the classes in the job's language and drop those under its min_score."""
    spec = job.runner.spec
    names = spec.labels.names(job.language)
    labels = tuple(
        Label(int(class_id), names[class_id], float(score))
        for score, class_id in zip(top.scores, top.class_ids, strict=True)
        if score >= job.min_score
    )
    return Classification(model=spec.name, language=job.language, labels=labels, timing=timing)


# answer: back on the event loop


def hand_back(jobs: Sequence[Job]) -> None:
    """From any thread: resolve the jobs' futures on their event loop, in one hop."""
    with suppress(RuntimeError):  # a closed loop has nobody left to answer
        jobs[0].loop.call_soon_threadsafe(answer, jobs)


def answer(jobs: Sequence[Job]) -> None:
    """On the event loop: each job's result slot becomes its future's result."""
    for job in jobs:
        if job.future.done():
            continue  # the caller gave up
        if job.error is not None:
            job.future.set_exception(job.error)
        elif job.answer is not None:
            job.future.set_result(job.answer)
