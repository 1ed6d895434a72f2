"""The Recognizer servicer: each RPC converts its message, awaits the engine, converts back.
An error is raised to the door (transport/door.py), which ends the call with its status.

The caller's tenant (named by the auth interceptor; "" with auth off) goes with each call
into the engine, which scopes the cache and the models by it, and into the metrics. Fair
shares and rate limits count the tenant, or the peer's host without one
(transport/callers.py). An answer with many labels is converted to its message on a
thread, off the event loop (thousands of labels take milliseconds to build).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator

import grpc

from recognizer.engine.engine import Engine
from recognizer.engine.stream import Answered, Frame, classify_stream
from recognizer.engine.types import Classification
from recognizer.errors import first_frame_late, stream_idle
from recognizer.outcomes import FrameOutcome
from recognizer.service import convert
from recognizer.service.metrics import ServerMetrics
from recognizer.transport.auth import current_tenant
from recognizer.transport.callers import caller
from recognizer.v1 import recognizer_pb2 as pb
from recognizer.v1 import recognizer_pb2_grpc as pb_grpc

Context = grpc.aio.ServicerContext[object, object]
LARGE_ANSWER = 100  # labels from which an answer is converted on a thread


class RecognizerServicer(pb_grpc.RecognizerServicer):
    """Serves recognizer.v1.Recognizer on top of an Engine."""

    def __init__(
        self,
        engine: Engine,
        metrics: ServerMetrics,
        *,
        first_frame_timeout: float = 10.0,
        idle_timeout: float | None = None,
    ) -> None:
        self._engine = engine
        self._metrics = metrics
        self._first_frame_timeout = first_frame_timeout
        self._idle_timeout = idle_timeout

    async def Classify(self, request: pb.ClassifyRequest, context: Context) -> pb.ClassifyResponse:
        tenant = current_tenant()
        with self._metrics.observed("grpc", "Classify", tenant, request.model):
            result = await self._engine.classify(
                convert.to_image(request),
                convert.to_options(request),
                deadline=_deadline(context),
                tenant=tenant,
                caller=caller(context, tenant),
            )
        request_id = convert.request_id(request)
        if _large(result):
            return await asyncio.to_thread(convert.to_response, request_id, result)
        return convert.to_response(request_id, result)

    async def ClassifyStream(
        self, request_iterator: AsyncIterable[pb.ClassifyRequest], context: Context
    ) -> AsyncIterator[pb.ClassifyResponse]:
        requests = aiter(request_iterator)
        try:
            async with asyncio.timeout(self._first_frame_timeout):
                first = await anext(requests, None)
        except TimeoutError:
            raise first_frame_late(self._first_frame_timeout) from None
        if first is None:
            return
        counts = Counter(dict.fromkeys(FrameOutcome, 0))
        tenant = current_tenant()
        try:
            settings = convert.to_stream_settings(first.stream_options)
            frames = _frames(first, requests, self._idle_timeout)
            async for result in classify_stream(
                self._engine, frames, settings, tenant=tenant, caller=caller(context, tenant)
            ):
                counts[result.outcome] += 1
                self._metrics.observe_frame("grpc", result, tenant)
                if isinstance(result, Answered) and _large(result.classification):
                    yield await asyncio.to_thread(convert.to_frame_response, result)
                else:
                    yield convert.to_frame_response(result)
        finally:
            context.set_trailing_metadata(_summary(counts))

    async def ListModels(
        self, request: pb.ListModelsRequest, context: Context
    ) -> pb.ListModelsResponse:
        """Every version of the models the caller's tenant may use, and its state."""
        tenant = current_tenant()
        return pb.ListModelsResponse(
            models=convert.to_versions(
                [e for e in self._engine.models.entries() if self._engine.may_use(tenant, e.name)]
            )
        )


async def _frames(
    first: pb.ClassifyRequest, rest: AsyncIterator[pb.ClassifyRequest], idle_timeout: float | None
) -> AsyncIterator[Frame]:
    """The stream's frames; waiting over `idle_timeout` for the next one ends the stream."""
    yield convert.to_frame(first)
    while True:
        try:
            async with asyncio.timeout(idle_timeout):
                request = await anext(rest)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise stream_idle(idle_timeout or 0) from None
        yield convert.to_frame(request)


def _large(result: Classification) -> bool:
    return len(result.labels) >= LARGE_ANSWER


def _summary(counts: Counter[FrameOutcome]) -> tuple[tuple[str, str], ...]:
    """Trailing metadata counting a stream's frames: recognizer-frames-answered, ..."""
    return tuple((outcome.trailer, str(n)) for outcome, n in counts.items())


def _deadline(context: Context) -> float | None:
    """The caller's deadline as a time.monotonic() instant, if it set one."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining
