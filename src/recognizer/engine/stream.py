"""Classify a stream of frames: many in flight at once, one answer per frame, in order.

Two policies decide what happens when frames arrive faster than they are classified:

- EVERY_FRAME: every frame is classified. At most `EVERY_FRAME_WINDOW` frames are
  read with their answers not yet written; beyond that the reader stops reading, so
  the transport's flow control slows the sender instead of memory growing.
- LATEST_FRAME: the reader keeps reading. At most `LATEST_FRAME_IN_FLIGHT` frames are
  classified at once and one more waits its turn; a newer frame replaces the waiting
  one, which is answered as skipped, as is any frame older than `max_frame_age_s` when
  its turn comes. Answers are still written in order, and if the client stops reading
  them the reader stops too (at most `LATEST_FRAME_UNWRITTEN` answers wait).

A frame that fails is answered with its error and the stream goes on. A stream opened
while the engine drains is refused with ShuttingDownError; when the engine starts
draining, an open stream stops reading, the frames already read are answered (up to one
the drain refused, which is left unanswered with those after it), then
ShuttingDownError ends the stream. However the stream ends, its unfinished work is cancelled.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field, replace
from typing import ClassVar

from recognizer import tracing
from recognizer.engine.engine import Engine
from recognizer.engine.types import Classification, Options, Priority
from recognizer.errors import DeadlineExceededError, RecognizerError, ShuttingDownError
from recognizer.models.raw import RawFrame
from recognizer.outcomes import FrameOutcome

logger = logging.getLogger(__name__)

EVERY_FRAME_WINDOW = 8
LATEST_FRAME_IN_FLIGHT = 2
LATEST_FRAME_UNWRITTEN = 32


class StreamPolicy(enum.Enum):
    EVERY_FRAME = "every-frame"
    LATEST_FRAME = "latest-frame"


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamSettings:
    """A stream's policy; `max_frame_age_s` applies to LATEST_FRAME only."""

    policy: StreamPolicy = StreamPolicy.EVERY_FRAME
    max_frame_age_s: float | None = None


@dataclass(frozen=True, slots=True)
class Frame:
    """One image of a stream, with its options, the caller's id and when it arrived."""

    request_id: str
    image: bytes | RawFrame
    options: Options
    received_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class Answered:
    """A frame classified."""

    request_id: str
    model: str
    received_at: float
    classification: Classification
    outcome: ClassVar[FrameOutcome] = FrameOutcome.ANSWERED


@dataclass(frozen=True, slots=True)
class Skipped:
    """A frame not classified: a newer frame replaced it, or it grew too old."""

    request_id: str
    model: str
    received_at: float
    outcome: ClassVar[FrameOutcome] = FrameOutcome.SKIPPED


@dataclass(frozen=True, slots=True)
class Failed:
    """A frame that could not be classified, with the error a unary call would raise."""

    request_id: str
    model: str
    received_at: float
    error: Exception
    outcome: ClassVar[FrameOutcome] = FrameOutcome.FAILED


FrameResult = Answered | Skipped | Failed
"""The answer to one frame. `model` is the model the frame asked for ("" is the default)."""


def _about(frame: Frame) -> tuple[str, str, float]:
    return frame.request_id, frame.options.model, frame.received_at


async def classify_stream(
    engine: Engine,
    frames: AsyncIterable[Frame],
    settings: StreamSettings | None = None,
    *,
    tenant: str = "",
    caller: str = "",
) -> AsyncIterator[FrameResult]:
    """Yield one FrameResult per frame, in the order the frames came; `tenant` and `caller`
    as in Engine.classify."""
    settings = settings or StreamSettings()
    session = _Stream(engine, settings, tenant, caller)
    reader = asyncio.create_task(session.read(frames))
    # The end marker comes from the task's end, which comes even if it never started.
    reader.add_done_callback(lambda _: session.answers.put_nowait(None))
    try:
        with engine.open_stream(on_drain=reader.cancel):
            while (answer := await session.answers.get()) is not None:
                result = await answer
                if isinstance(result, Failed) and isinstance(result.error, ShuttingDownError):
                    # Read just before the drain, refused by it: unanswered, like the
                    # frames after it, so that the client sends them to another replica.
                    raise ShuttingDownError()
                yield result
                session.unwritten.release()
            if reader.cancelled():
                raise ShuttingDownError()
            await reader  # re-raises a failure to read the stream
    finally:
        reader.cancel()
        session.cancel()


class _Stream:
    """The state of one stream: answers in frame order, frames in flight, the waiting frame."""

    def __init__(self, engine: Engine, settings: StreamSettings, tenant: str, caller: str) -> None:
        self.engine = engine
        self.settings = settings
        self.tenant = tenant
        self.caller = caller
        self.answers: asyncio.Queue[asyncio.Future[FrameResult] | None] = asyncio.Queue()
        latest = settings.policy is StreamPolicy.LATEST_FRAME
        self.unwritten = asyncio.Semaphore(LATEST_FRAME_UNWRITTEN if latest else EVERY_FRAME_WINDOW)
        self._in_flight_limit = LATEST_FRAME_IN_FLIGHT if latest else EVERY_FRAME_WINDOW
        self._tasks: set[asyncio.Task[None]] = set()
        self._waiting: tuple[Frame, asyncio.Future[FrameResult]] | None = None
        self._flow = object()  # this stream's frames take turns with other callers

    async def read(self, frames: AsyncIterable[Frame]) -> None:
        """Take frames until the client half-closes; the waiting frame still gets its turn.

        If reading stops early (draining, a broken stream), the waiting frame is skipped.
        """
        loop = asyncio.get_running_loop()
        try:
            async for frame in frames:
                await self.unwritten.acquire()
                answer: asyncio.Future[FrameResult] = loop.create_future()
                self.answers.put_nowait(answer)
                if len(self._tasks) < self._in_flight_limit:
                    self._start(frame, answer)
                else:
                    self._wait(frame, answer)
        except BaseException:
            if self._waiting is not None:
                self._skip(*self._waiting)
                self._waiting = None
            raise

    def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()
        while not self.answers.empty():
            if (answer := self.answers.get_nowait()) is not None:
                answer.cancel()

    def _wait(self, frame: Frame, answer: asyncio.Future[FrameResult]) -> None:
        """LATEST_FRAME, all slots busy: this frame waits, replacing (skipping) an older one."""
        if self._waiting is not None:
            self._skip(*self._waiting)
        self._waiting = (frame, answer)

    def _start(self, frame: Frame, answer: asyncio.Future[FrameResult]) -> None:
        if self._too_old(frame):
            self._skip(frame, answer)
            return
        traced = tracing.current() is not None  # the stream's call is traced
        work = self._traced if traced else self._classify
        task = asyncio.create_task(work(frame, answer))
        self._tasks.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if self._waiting is not None and not task.cancelled():
            waiting, self._waiting = self._waiting, None
            self._start(*waiting)

    async def _classify(self, frame: Frame, answer: asyncio.Future[FrameResult]) -> None:
        try:
            options = frame.options
            if options.priority is None:  # a live camera waits on each answer
                options = replace(options, priority=Priority.HIGH)
            classification = await self.engine.classify(
                frame.image,
                options,
                deadline=self._deadline(frame),
                flow=self._flow,
                tenant=self.tenant,
                caller=self.caller,
            )
            result: FrameResult = Answered(*_about(frame), classification)
        except DeadlineExceededError:  # grew too old in the queue
            result = Skipped(*_about(frame))
        except RecognizerError as error:
            result = Failed(*_about(frame), error)
        except Exception as error:
            logger.exception("frame %r failed", frame.request_id)
            result = Failed(*_about(frame), error)
        if not answer.done():
            answer.set_result(result)

    async def _traced(self, frame: Frame, answer: asyncio.Future[FrameResult]) -> None:
        """_classify in a "frame" span, a child of the stream's: its request id, outcome and
        failure's reason."""
        request_id = tracing.attribute_text(frame.request_id)
        with tracing.span("frame", {"recognizer.request_id": request_id}) as span:
            await self._classify(frame, answer)
            if span is not None and answer.done() and not answer.cancelled():
                result = answer.result()
                span.set({"recognizer.frame.outcome": result.outcome.value})
                if isinstance(result, Failed):
                    span.error(result.error)

    def _skip(self, frame: Frame, answer: asyncio.Future[FrameResult]) -> None:
        if not answer.done():
            answer.set_result(Skipped(*_about(frame)))

    def _deadline(self, frame: Frame) -> float | None:
        age = self.settings.max_frame_age_s
        return None if age is None else frame.received_at + age

    def _too_old(self, frame: Frame) -> bool:
        deadline = self._deadline(frame)
        return deadline is not None and time.monotonic() >= deadline
