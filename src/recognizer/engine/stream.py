"""Classify a stream of frames: many in flight at once, answers in the order sent.

The reader takes frames while fewer than `window` are unanswered; beyond that it stops
reading, so the transport's flow control slows the sender instead of memory growing.
A frame that fails is answered with its error and the stream goes on. When the engine
drains, reading stops, outstanding frames are answered, then ShuttingDownError ends
the stream.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from recognizer.engine.engine import Engine
from recognizer.engine.types import Classification, Options
from recognizer.errors import RecognizerError, ShuttingDownError

logger = logging.getLogger(__name__)

DEFAULT_WINDOW = 8


@dataclass(frozen=True, slots=True)
class Frame:
    """One image of a stream, with its options and the caller's id for it."""

    request_id: str
    image: bytes
    options: Options


@dataclass(frozen=True, slots=True)
class FrameResult:
    """The answer to one frame: a classification, or the error that prevented it."""

    request_id: str
    classification: Classification | None = None
    error: Exception | None = None


async def classify_stream(
    engine: Engine, frames: AsyncIterable[Frame], *, window: int = DEFAULT_WINDOW
) -> AsyncIterator[FrameResult]:
    """Yield one FrameResult per frame, in order, with up to `window` frames in flight."""
    slots = asyncio.Semaphore(window)
    answers: asyncio.Queue[asyncio.Task[FrameResult] | None] = asyncio.Queue()
    flow = object()

    async def read() -> None:
        try:
            async for frame in frames:
                await slots.acquire()
                answers.put_nowait(asyncio.create_task(_classify(engine, frame, flow)))
        finally:
            answers.put_nowait(None)

    reader = asyncio.create_task(read())
    unregister = engine.register_stream(on_drain=reader.cancel)
    try:
        while (answer := await answers.get()) is not None:
            try:
                yield await answer
            finally:
                slots.release()
        if reader.cancelled():
            raise ShuttingDownError()
        await reader  # re-raises a failure to read the stream
    finally:
        unregister()
        reader.cancel()
        while not answers.empty():
            if (left := answers.get_nowait()) is not None:
                left.cancel()


async def _classify(engine: Engine, frame: Frame, flow: object) -> FrameResult:
    try:
        classification = await engine.classify(frame.image, frame.options, flow=flow)
    except RecognizerError as error:
        return FrameResult(frame.request_id, error=error)
    except Exception as error:
        logger.exception("frame %r failed", frame.request_id)
        return FrameResult(frame.request_id, error=error)
    return FrameResult(frame.request_id, classification)
