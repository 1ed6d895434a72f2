"""The Recognizer servicer: each RPC converts its message, awaits the engine, converts back."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator

import grpc

from recognizer.engine.engine import Engine
from recognizer.engine.stream import Frame, classify_stream
from recognizer.errors import RecognizerError
from recognizer.outcomes import FrameOutcome
from recognizer.transport import convert
from recognizer.transport.metrics import ServerMetrics
from recognizer.transport.status import abort
from recognizer.v1 import recognizer_pb2 as pb
from recognizer.v1 import recognizer_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[object, object]


class RecognizerServicer(pb_grpc.RecognizerServicer):
    """Serves recognizer.v1.Recognizer on top of an Engine."""

    def __init__(self, engine: Engine, metrics: ServerMetrics) -> None:
        self._engine = engine
        self._metrics = metrics

    async def Classify(self, request: pb.ClassifyRequest, context: Context) -> pb.ClassifyResponse:
        started = time.monotonic()
        try:
            result = await self._engine.classify(
                convert.to_image(request), convert.to_options(request), deadline=_deadline(context)
            )
        except Exception as error:
            if not isinstance(error, RecognizerError):
                logger.exception("Classify failed")
            self._metrics.observe("grpc", request.model, error, started)
            await abort(context, error)
        self._metrics.observe("grpc", request.model, None, started)
        return convert.to_response(request.request_id, result)

    async def ClassifyStream(
        self, request_iterator: AsyncIterable[pb.ClassifyRequest], context: Context
    ) -> AsyncIterator[pb.ClassifyResponse]:
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if first is None:
            return
        counts = Counter(dict.fromkeys(FrameOutcome, 0))
        try:
            settings = convert.to_stream_settings(first.stream_options)
            async for result in classify_stream(self._engine, _frames(first, requests), settings):
                counts[result.outcome] += 1
                self._metrics.observe_frame("grpc", result)
                yield convert.to_frame_response(result)
        except RecognizerError as error:
            await abort(context, error, _summary(counts))
        context.set_trailing_metadata(_summary(counts))

    async def ListModels(
        self, request: pb.ListModelsRequest, context: Context
    ) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(
            models=[convert.to_model_info(model) for model in self._engine.describe()]
        )


async def _frames(
    first: pb.ClassifyRequest, rest: AsyncIterator[pb.ClassifyRequest]
) -> AsyncIterator[Frame]:
    yield convert.to_frame(first)
    async for request in rest:
        yield convert.to_frame(request)


def _summary(counts: Counter[FrameOutcome]) -> tuple[tuple[str, str], ...]:
    """Trailing metadata counting a stream's frames: recognizer-frames-answered, ..."""
    return tuple((outcome.trailer, str(n)) for outcome, n in counts.items())


def _deadline(context: Context) -> float | None:
    """The caller's deadline as a time.monotonic() instant, if it set one."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining
