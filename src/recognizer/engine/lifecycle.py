"""The life of one request in the engine, stage by stage, on the threads it visits.

The engine takes a request through its first three stages (Engine.classify: validate,
limit, admit) and hands over the job, bound to its model's runner and to the pipeline
(pools, cache, budget); every later stage is here, and reaches them through the job.

    stage     thread             what happens                          ends it early
    validate  event loop         model (the tenant's right to it, its  InvalidRequestError,
                                 health), language, top_k (bounded),   ModelNotFoundError,
                                 min_score                             PermissionDeniedError,
                                                                       ModelUnavailableError
    limit     event loop         the caller's rate limit               RateLimitedError
    admit     event loop         a place in the model's queue, shared  OverloadedError
                                 fairly between callers
    hash      event loop (small  the image's digest, in the tenant's
              image) or lookup   part of the cache; a cached answer
              pool               skips to `name`
    budget    preprocess pool    room in the memory budget for what    InvalidImageError,
                                 decoding will hold, from the header   DeadlineExceededError
                                 (a JPEG's markers walked first)
    decode    preprocess pool    bytes or raw frame -> uint8 input     InvalidImageError,
                                 (a JPEG's header only, where the      DeadlineExceededError
                                 backend decodes on its device),
                                 stopped between chunks when the
                                 caller gives up
    queue     preprocess pool    the decoding thread queues the job
    batch     dispatcher         when the backend has room for a       DeadlineExceededError
                                 call: live jobs taken round-robin
                                 by caller, then by flow
    infer     the runtime's      the backend runs the batch (decoding  InvalidImageError for
              threads, or a      its JPEGs first, where it does)       a JPEG that fails to
              worker thread                                            decode there (a failed
                                                                       batch is retried job
                                                                       by job)
    name      where the call     top-k class ids named in the language
              ended
    answer    event loop         the caller's future resolves

Limits and admission come before hashing so that an overloaded model refuses at once,
before spending a thread on the image. Hashing never waits behind decoding, so a cached
answer comes at once however long other images take to decode: an image of up to
INLINE_HASH_BYTES is hashed on the event loop, where that costs no more than the hop to
a thread would (64 KiB, about 0.1 ms, on this repository's 2-core machine), a larger
one on a lookup thread of its own pool. One `Job` carries the request through every
stage; in a traced call it carries the spans of its stages too (tracing.py), each made on
the thread that ends the stage. Only the event loop touches asyncio objects: the other
threads write the job's result slot (`answer` or `error`) and hand it back with one
`call_soon_threadsafe` per batch; the loop may also end a job early with `fail` (its
place went to a fairer caller, or the watchdog found its model broken). A caller that
gives up abandons its job; any thread may read that, so the pool and the dispatcher skip
it. `time.monotonic()` is the one clock: deadlines, timings and the batch queue all use it
(a traced stage's span takes the wall clock's time, as OpenTelemetry's spans do).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Hashable, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING

import numpy as np

from recognizer import tracing
from recognizer.engine.budget import MemoryBudget
from recognizer.engine.cache import CacheKey, cache_key
from recognizer.engine.types import Classification, Label, Priority, Timing, TopClasses
from recognizer.errors import DeadlineExceededError, RecognizerError, without_tracebacks
from recognizer.models.jpeg import DeviceInput, device_jpeg
from recognizer.models.preprocessing import (
    DecodingStopped,
    decode_cost,
    decode_image,
    prepare_input,
    reduce_on_decode,
)
from recognizer.models.raw import RawFrame, frame_cost, frame_to_image

if TYPE_CHECKING:
    from recognizer.engine.pipeline import Pipeline
    from recognizer.engine.progress import Running
    from recognizer.engine.runner import ModelRunner, RowsTopK

logger = logging.getLogger(__name__)

_NOT_DECODED = np.empty(0, dtype=np.uint8)
INLINE_HASH_BYTES = 64 << 10


class Job:
    """One request from admission to answer: the only object that crosses threads.

    The event loop creates it and alone touches `future`. The thread that ends the job (a
    preprocess thread on a cache hit or a bad image, else the thread its model call ended
    on) fills the result slot, `answer` or `error`, before handing the job back; the loop
    reads the slot only after that hand-off. `abandon()` and `abandoned` are safe anywhere;
    `in_batch` is set by the dispatcher that takes the job, and read by the loop.
    """

    __slots__ = (
        "_abandoned",
        "answer",
        "cache_key",
        "caller",
        "deadline",
        "enqueued_at",
        "error",
        "flow",
        "future",
        "image",
        "in_batch",
        "language",
        "loop",
        "min_score",
        "pipeline",
        "pixels",
        "preprocess_s",
        "priority",
        "ranked",
        "runner",
        "scores",
        "tenant",
        "top_k",
        "trace",
    )

    def __init__(
        self,
        runner: ModelRunner,
        pipeline: Pipeline,
        image: bytes | RawFrame,
        *,
        language: str,
        top_k: int,
        min_score: float,
        scores: bool,
        ranked: int,
        deadline: float | None,
        flow: Hashable | None,
        tenant: str,
        caller: str,
        priority: Priority,
    ) -> None:
        self.runner = runner
        self.pipeline = pipeline
        self.image = image
        self.language = language
        self.top_k = top_k
        self.min_score = min_score
        self.scores = scores  # every class's score asked for, as well as the labels
        self.ranked = ranked  # classes the model ranks for the job: top_k, or all it may
        self.deadline = deadline
        # A unary call is a flow of its own: a fresh key, as the job itself would be a
        # cycle that outlives the call until the garbage collector's next full pass.
        self.flow: Hashable = object() if flow is None else flow
        self.tenant = tenant
        self.caller = caller  # a place in the model's queue is claimed for it (engine/shares.py)
        self.priority = priority  # its class in the batch queue (engine/batching.py)
        self.loop = asyncio.get_running_loop()
        self.future: asyncio.Future[Classification] = self.loop.create_future()
        self.cache_key: CacheKey | None = None
        self.pixels: DeviceInput = _NOT_DECODED
        self.preprocess_s = 0.0
        self.enqueued_at = 0.0
        self.answer: Classification | None = None
        self.error: BaseException | None = None
        self.in_batch = False
        self.trace: tracing.Stages | None = None  # its stages' spans, when its call is traced
        self._abandoned = threading.Event()

    def abandon(self) -> None:
        """The caller no longer waits: skip whatever stage has not started."""
        self._abandoned.set()

    def abandon_if_cancelled(self, future: asyncio.Future[Classification]) -> None:
        """The future's done callback: a cancelled caller no longer waits."""
        if future.cancelled():
            self.abandon()

    @property
    def abandoned(self) -> bool:
        return self._abandoned.is_set()

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline

    def gave_up(self) -> bool:
        """Nobody waits for the answer any more, or it would come too late."""
        return self.abandoned or self.expired(time.monotonic())

    @property
    def evictable(self) -> bool:
        """Not yet in a batch: giving up its place spares the model work."""
        return not self.in_batch

    def set_error(self, error: BaseException) -> None:
        """From the thread that ends the job: its result slot becomes `error`. An expected
        error (a RecognizerError, told to the caller by its message alone) is kept without
        its tracebacks, whose frames hold this job, its image and the decoder's pixels: a
        cycle that only the garbage collector's rare full passes would free."""
        self.error = without_tracebacks(error) if isinstance(error, RecognizerError) else error
        if self.trace is not None:
            self.trace.end(error)

    def stage(self, stage: str) -> None:
        """From the thread the job is on: a traced job's `stage` begins now (tracing.py),
        and the one under way ends."""
        if self.trace is not None:
            self.trace.begin(stage)

    def end_stage(self) -> None:
        """From the thread the job is on: a traced job's stage under way ends now."""
        if self.trace is not None:
            self.trace.end()

    def fail(self, error: Exception) -> None:
        """On the event loop: answer the caller with `error` now, and drop the job."""
        self.abandon()
        if not self.future.done():
            self.future.set_exception(error)


# after admission, wait for the answer: on the event loop


async def run(job: Job) -> Classification:
    """Take an admitted job through every later stage and return its answer."""
    pipeline = job.pipeline
    job.future.add_done_callback(job.abandon_if_cancelled)
    image = job.image
    if pipeline.cache is None:
        pipeline.preprocess.submit_at(job.priority, prepare, job)
    elif len(image.data if isinstance(image, RawFrame) else image) <= INLINE_HASH_BYTES:
        look_up(job)
    else:
        pipeline.lookup.submit_at(job.priority, look_up, job)
    try:
        return await job.future
    except BaseException:
        # The error's traceback holds this frame, and the job holds the error: without
        # the job here, both (and the request) are freed when the call ends.
        del job
        raise


# hash: on the event loop for a small image, else on a lookup thread


def look_up(job: Job) -> None:
    """Answer from the cache, or pass the job on to be decoded."""
    if job.abandoned:
        return
    job.stage("hash")
    cache = job.pipeline.cache
    assert cache is not None  # looked up only with the cache on
    try:
        job.cache_key = cache_key(job.tenant, job.runner.cached_as, job.image)
        cached = cache.get(job.cache_key, job.ranked)
        if job.trace is not None:
            job.trace.set({"recognizer.cache": "miss" if cached is None else "hit"})
        if cached is None:
            job.end_stage()
            job.pipeline.preprocess.submit_at(job.priority, prepare, job)
            return
        job.stage("name")
        job.answer = name(job, cached, Timing(cache_hit=True))
        job.end_stage()
    except Exception as error:
        job.set_error(error)
    hand_back([job])


# budget, decode, queue: on a preprocess thread


def prepare(job: Job) -> None:
    """Decode the image within the pipeline's memory budget and queue it."""
    if job.abandoned:
        return
    runner = job.runner
    job.stage("decode")
    try:
        started = time.monotonic()
        pixels = decode(job, job.pipeline.budget)
        if pixels is None:
            return  # abandoned while waiting for memory or while decoding
        job.pixels = pixels
        job.enqueued_at = time.monotonic()
        job.preprocess_s = job.enqueued_at - started
    except Exception as error:
        job.set_error(error)
        hand_back([job])
        return
    job.stage("queue")
    runner.queue.put(job, job.flow, job.caller, job.priority)


def decode(job: Job, budget: MemoryBudget) -> DeviceInput | None:
    """The model's input for the job's image, uint8 (crop, crop, 3) pixels, decoded once the
    budget has room for what the header says it will cost; None if the caller gave up. A JPEG
    the backend decodes on its device stays encoded (its header read, so a bad one fails here
    as in Pillow), and costs the budget nothing: no host memory holds its pixels. Decoding
    stops between chunks of the image once the caller gives up or its deadline passes."""
    image = job.image
    preprocessing = job.runner.spec.preprocessing
    settings = job.runner.settings
    max_pixels = settings.max_image_pixels
    try:
        if isinstance(image, RawFrame):
            cost = frame_cost(image, max_pixels=max_pixels)
        else:
            opened = decode_image(  # the header only, so far
                image,
                max_pixels=max_pixels,
                max_jpeg_scans=settings.max_jpeg_scans,
                max_jpeg_markers=settings.max_jpeg_markers,
                stop=job.gave_up,
            )
            if job.runner.decoder is not None and (jpeg := device_jpeg(opened, image)):
                return jpeg
            reduce_on_decode(opened, preprocessing.resize)
            cost = decode_cost(opened, preprocessing)
        held = budget.acquire(cost, give_up=job.gave_up)
        if held is None:
            _unless_abandoned(job, "while waiting for memory to decode")
            return None
        try:
            if isinstance(image, RawFrame):
                return prepare_input(frame_to_image(image, max_pixels=max_pixels), preprocessing)
            return prepare_input(opened, preprocessing)
        finally:
            budget.release(held)
    except DecodingStopped:
        _unless_abandoned(job, "while decoding")
        return None


def _unless_abandoned(job: Job, when: str) -> None:
    """For a job stopped early: nothing if its caller gave up, else tell it its deadline
    passed."""
    if not job.abandoned:
        raise DeadlineExceededError(f"the deadline passed {when}")


# batch, infer, name: on the model's dispatcher, then where its call ends


def keep(job: Job) -> bool:
    """The batch queue's filter: abandoned jobs are dropped, expired ones answered so."""
    if job.abandoned:
        return False
    if job.expired(time.monotonic()):
        job.set_error(DeadlineExceededError("the deadline passed before the model was free"))
        hand_back([job])
        return False
    job.in_batch = True
    job.stage("batch")
    return True


def dispatch(runner: ModelRunner) -> None:
    """The model's dispatcher thread: whenever the backend has room for a call, the next
    batch goes to it, until the queue is closed and drained and no call is in flight
    (a failed batch comes back to the queue, to run job by job)."""
    while True:
        runner.room.acquire()
        batch = runner.queue.next_batch()
        if batch:
            submit(runner, batch)
            continue
        runner.room.release()
        runner.wait_for_calls()
        if not len(runner.queue):
            return


def submit(runner: ModelRunner, batch: list[Job]) -> None:
    """Start the model on a batch; `finish` takes it from there on the thread the call ends
    on. The backend ranks as many classes as the batch's jobs want at most (at most
    --max-top-k); each job keeps its own."""
    call = runner.progress.started(batch)
    for job in batch:
        job.stage("infer")
    done = functools.partial(finish, runner, batch, call, time.monotonic())
    try:
        runner.submit([job.pixels for job in batch], max(job.ranked for job in batch), done)
    except Exception as error:  # refused at once: the same as failing
        done(error)


def finish(
    runner: ModelRunner,
    batch: list[Job],
    call: Running[Job],
    started: float,
    result: RowsTopK | BaseException,
) -> None:
    """When the model's call ends, on the runtime's or a worker's thread: fill each job's
    result slot and hand the batch back. A failed batch goes back to the queue to run job
    by job, so one bad input fails alone and its neighbours still get their answers; a
    JPEG the backend failed to decode on its device is answered with that error alone."""
    failed = isinstance(result, BaseException)
    runner.progress.ended(call, ok=not failed)
    runner.queue.ended(batch[0].priority)
    runner.room.release()
    trace_batch(runner, batch, result)
    if isinstance(result, BaseException):
        if len(batch) > 1:
            logger.warning(
                "a batch of %d failed (%s); retrying its jobs one by one", len(batch), result
            )
            runner.queue.retry_alone(batch, batch[0].priority)
            return
        logger.error("inference failed", exc_info=result)
        batch[0].set_error(RuntimeError("inference failed"))
        hand_back(batch)
        return
    try:
        answer_all(runner, batch, started, result)
    except Exception as error:  # a bug here must not leave the callers waiting
        logger.exception("answering a batch failed")
        for job in batch:
            job.set_error(error)
    hand_back(batch)


def answer_all(
    runner: ModelRunner,
    batch: list[Job],
    started: float,
    result: RowsTopK,
) -> None:
    """Each job's answer (the classes it ranks, of the batch's), or its row's error."""
    scores, class_ids, errors = result
    inference_s = time.monotonic() - started
    runner.record_batch(len(batch), inference_s)
    for row, (job, error) in enumerate(zip(batch, errors, strict=True)):
        if error is not None:
            job.set_error(error)
            continue
        top = TopClasses(scores[row, : job.ranked].copy(), class_ids[row, : job.ranked].copy())
        if job.pipeline.cache is not None and job.cache_key is not None:
            job.pipeline.cache.put(job.cache_key, top)
        timing = Timing(
            queue_s=started - job.enqueued_at,
            preprocess_s=job.preprocess_s,
            inference_s=inference_s,
            batch_size=len(batch),
        )
        job.stage("name")
        job.answer = name(job, top, timing)
        job.end_stage()


def trace_batch(runner: ModelRunner, batch: list[Job], result: RowsTopK | BaseException) -> None:
    """The batch's span, when any of its jobs is traced; their `infer` stages end."""
    if not tracing.enabled():
        return
    backend = runner.backend
    tracing.batch_ran(
        [job.trace for job in batch if job.trace is not None],
        len(batch),
        {
            "recognizer.model": runner.spec.name,
            "recognizer.backend": backend.name,
            "recognizer.device": backend.device,
            "recognizer.precision": backend.precision,
        },
        result if isinstance(result, BaseException) else None,
    )


def name(job: Job, top: TopClasses, timing: Timing) -> Classification:
    """Name the job's top_k classes in its language and drop those under its min_score; with
    `scores` asked for, place every ranked class's score at its class id."""
    spec = job.runner.spec
    names = spec.labels.names(job.language)
    labels = tuple(
        Label(int(class_id), names[class_id], float(score))
        for score, class_id in zip(top.scores[: job.top_k], top.class_ids[: job.top_k], strict=True)
        if score >= job.min_score
    )
    scores = None
    if job.scores:
        scores = np.zeros(spec.num_classes, dtype=np.float32)
        scores[top.class_ids] = top.scores
    return Classification(
        model=spec.name,
        language=job.language,
        labels=labels,
        timing=timing,
        scores=scores,
        model_version=job.runner.version,
    )


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
