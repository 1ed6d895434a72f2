"""The Recognizer servicer: each RPC converts its message, awaits the engine, converts back.

The caller's tenant (named by the auth interceptor; "" with auth off) goes with each call
into the engine, which scopes the cache and the models by it, and into the metrics.
"""

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
from recognizer.transport.auth import current_tenant
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
        tenant = current_tenant()
        try:
            result = await self._engine.classify(
                convert.to_image(request),
                convert.to_options(request),
                deadline=_deadline(context),
                tenant=tenant,
            )
        except Exception as error:
            if not isinstance(error, RecognizerError):
                logger.exception("Classify failed")
            self._metrics.observe("grpc", request.model, error, started, tenant)
            await abort(context, error)
        self._metrics.observe("grpc", request.model, None, started, tenant)
        return convert.to_response(convert.request_id(request), result)

    async def ClassifyStream(
        self, request_iterator: AsyncIterable[pb.ClassifyRequest], context: Context
    ) -> AsyncIterator[pb.ClassifyResponse]:
        requests = aiter(request_iterator)
        first = await anext(requests, None)
        if first is None:
            return
        counts = Counter(dict.fromkeys(FrameOutcome, 0))
        tenant = current_tenant()
        try:
            settings = convert.to_stream_settings(first.stream_options)
            frames = _frames(first, requests)
            async for result in classify_stream(self._engine, frames, settings, tenant=tenant):
                counts[result.outcome] += 1
                self._metrics.observe_frame("grpc", result, tenant)
                yield convert.to_frame_response(result)
        except RecognizerError as error:
            await abort(context, error, _summary(counts))
        context.set_trailing_metadata(_summary(counts))

    async def ListModels(
        self, request: pb.ListModelsRequest, context: Context
    ) -> pb.ListModelsResponse:
        """The served models the caller's tenant may use."""
        tenant = current_tenant()
        return pb.ListModelsResponse(
            models=[
                convert.to_model_info(model)
                for model in self._engine.describe()
                if self._engine.may_use(tenant, model.spec.name)
            ]
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
