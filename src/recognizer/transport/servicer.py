"""The Recognizer servicer: each RPC converts its message, awaits the engine, converts back."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterable, AsyncIterator

import grpc

from recognizer.engine.engine import Engine
from recognizer.engine.stream import classify_stream
from recognizer.errors import RecognizerError
from recognizer.transport import convert
from recognizer.transport.status import abort
from recognizer.v1 import recognizer_pb2 as pb
from recognizer.v1 import recognizer_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

Context = grpc.aio.ServicerContext[object, object]


class RecognizerServicer(pb_grpc.RecognizerServicer):
    """Serves recognizer.v1.Recognizer on top of an Engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def Classify(self, request: pb.ClassifyRequest, context: Context) -> pb.ClassifyResponse:
        try:
            result = await self._engine.classify(
                request.image, convert.to_options(request), deadline=_deadline(context)
            )
        except RecognizerError as error:
            await abort(context, error)
        except Exception as error:
            logger.exception("Classify failed")
            await abort(context, error)
        return convert.to_response(request.request_id, result)

    async def ClassifyStream(
        self, request_iterator: AsyncIterable[pb.ClassifyRequest], context: Context
    ) -> AsyncIterator[pb.ClassifyResponse]:
        frames = (convert.to_frame(request) async for request in request_iterator)
        try:
            async for result in classify_stream(self._engine, frames):
                yield convert.to_frame_response(result)
        except RecognizerError as error:
            await abort(context, error)

    async def ListModels(
        self, request: pb.ListModelsRequest, context: Context
    ) -> pb.ListModelsResponse:
        return pb.ListModelsResponse(
            models=[convert.to_model_info(model) for model in self._engine.describe()]
        )


def _deadline(context: Context) -> float | None:
    """The caller's deadline as a time.monotonic() instant, if it set one."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining
