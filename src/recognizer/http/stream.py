"""The WebSocket stream: ClassifyStream for browsers, over the same stream engine.

    GET /v1/classify/stream?policy=latest&max_frame_age_ms=500&top_k=3&language=en

The query holds the stream's options (`policy`: `every` or `latest`, `max_frame_age_ms`)
and every frame's (`top_k`, `min_score`, `language`, `model`). Each binary message is one
frame, an encoded image (JPEG, WebP, PNG, ...); its request id is its index, from 0. The
text message `{"end": true}` ends the frames, like a gRPC half-close: every frame sent is
answered before the stream ends.

Each frame is answered, in order, by a text message: a ClassifyResponse in the proto's
JSON mapping, classified, `skipped`, or with its `error`, as ClassifyStream answers it.
The last message counts the stream's frames and says how it ended, as gRPC's trailers do:
`{"status": {"code": 0, ...}, "frames": {"answered": 9, "skipped": 3, "failed": 0}}`.
Then the server closes: 1000 when all went well; 1008 for invalid options or messages, no
first frame within --first-frame-timeout, no frame for --stream-idle-timeout, or a token
revoked; 1013 when its caller's place among the server's calls went to another caller;
1012 when it drains, 1011 for a bug; the close reason is the ErrorInfo reason.

With auth on, the handshake carries the token (auth.py) and the stream's frames are
classified for its tenant; a client that offers the `recognizer.v1` subprotocol gets it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import suppress
from typing import Any

from google.rpc import status_pb2
from starlette.websockets import WebSocket, WebSocketDisconnect

from recognizer import tracing
from recognizer.engine.engine import Engine
from recognizer.engine.stream import Frame, StreamSettings, classify_stream
from recognizer.engine.types import Options
from recognizer.errors import (
    DeadlineExceededError,
    InvalidRequestError,
    OverloadedError,
    RecognizerError,
    ShuttingDownError,
    UnauthenticatedError,
    first_frame_late,
    quoted,
    stream_idle,
)
from recognizer.http import inputs
from recognizer.http.auth import STREAM_PROTOCOL, caller_of, tenant_of
from recognizer.http.ending import ended
from recognizer.http.jsonmap import to_dict
from recognizer.outcomes import FrameOutcome
from recognizer.service import convert
from recognizer.service.metrics import ServerMetrics
from recognizer.service.status import to_status
from recognizer.v1 import recognizer_pb2 as pb

logger = logging.getLogger(__name__)

FRAME_OPTIONS = ("top_k", "min_score", "language", "model", "priority")
POLICIES = {
    "every": pb.STREAM_POLICY_EVERY_FRAME,
    "latest": pb.STREAM_POLICY_LATEST_FRAME,
}
END = {"end": True}

CLOSE_NORMAL = 1000
CLOSE_POLICY_VIOLATION = 1008
CLOSE_INTERNAL_ERROR = 1011
CLOSE_SERVICE_RESTART = 1012
CLOSE_TRY_AGAIN_LATER = 1013


class StreamEndpoint:
    """WebSocket /v1/classify/stream, over one engine and the service's metrics: a stream
    must send its first frame within `first_frame_timeout`, and each next one within
    `idle_timeout` (None: no limit), as gRPC's streams must."""

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

    async def serve(self, websocket: WebSocket) -> None:
        offered = websocket.scope.get("subprotocols", ())
        await websocket.accept(STREAM_PROTOCOL if STREAM_PROTOCOL in offered else None)
        counts = Counter(dict.fromkeys(FrameOutcome, 0))
        error: Exception | None = None
        stream = asyncio.ensure_future(self._stream(websocket, counts))
        ending = ended(websocket.scope)
        await asyncio.wait((stream, ending), return_when=asyncio.FIRST_COMPLETED)
        if not stream.done():  # the server ends it: a token revoked, its place given up
            stream.cancel()
            with suppress(asyncio.CancelledError, WebSocketDisconnect):
                await stream
            error = ending.result()
        else:
            try:
                stream.result()
            except WebSocketDisconnect:
                return  # the client left: nobody to answer
            except Exception as raised:
                if not isinstance(raised, RecognizerError):
                    logger.exception("a WebSocket stream failed")
                error = raised
        if error is not None:
            tracing.failed(error)
        status = status_pb2.Status() if error is None else to_status(error)
        frames_by_outcome = {outcome.value: n for outcome, n in counts.items()}
        try:
            await websocket.send_json({"status": to_dict(status), "frames": frames_by_outcome})
            await websocket.close(*_close(error))
        except WebSocketDisconnect:
            pass

    async def _stream(self, websocket: WebSocket, counts: Counter[FrameOutcome]) -> None:
        """Answer the stream's frames as they come, counting their outcomes."""
        tenant = tenant_of(websocket)
        settings, options = read_query(websocket.query_params)
        frames = _frames(websocket, options, self._first_frame_timeout, self._idle_timeout)
        async for result in classify_stream(
            self._engine, frames, settings, tenant=tenant, caller=caller_of(websocket)
        ):
            counts[result.outcome] += 1
            self._metrics.observe_frame("http", result, tenant)
            await websocket.send_json(to_dict(convert.to_frame_response(result)))


def read_query(query: Mapping[str, str]) -> tuple[StreamSettings, Options]:
    """The stream's settings and its frames' options, from the URL's query."""
    fields = dict(query)
    policy = fields.pop("policy", "every")
    age = fields.pop("max_frame_age_ms", "0")
    if policy not in POLICIES:
        raise InvalidRequestError(
            f"policy must be one of {', '.join(POLICIES)}, got {quoted(policy)}", field="policy"
        )
    stream_options = pb.StreamOptions(
        policy=POLICIES[policy],
        max_frame_age_ms=inputs.whole_number("max_frame_age_ms", age),
    )
    template = pb.ClassifyRequest()
    inputs.merge_options(template, fields, names=FRAME_OPTIONS)
    return convert.to_stream_settings(stream_options), convert.to_options(template)


async def _frames(
    websocket: WebSocket, options: Options, first_timeout: float, idle_timeout: float | None
) -> AsyncIterator[Frame]:
    """The frames as they come, until `{"end": true}`; a disconnect raises, and so does a
    wait over `first_timeout` for the first message or `idle_timeout` for a later one."""
    index = 0
    while True:
        try:
            async with asyncio.timeout(idle_timeout if index else first_timeout):
                message = await websocket.receive()
        except TimeoutError:
            late = stream_idle(idle_timeout or 0) if index else first_frame_late(first_timeout)
            raise late from None
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", CLOSE_NORMAL))
        if message.get("bytes") is not None:
            yield Frame(str(index), message["bytes"], options)
            index += 1
        elif _is_end(message.get("text")):
            return
        else:
            raise InvalidRequestError(
                'frames are binary messages; the only text message is {"end": true}',
                field="message",
            )


def _is_end(text: str | None) -> bool:
    try:
        message: Any = json.loads(text or "")
    except ValueError:
        return False
    return bool(message == END)


def _close(error: Exception | None) -> tuple[int, str]:
    """The close code and reason (the ErrorInfo reason) for how the stream ended."""
    if error is None:
        return CLOSE_NORMAL, ""
    reason = error.reason if isinstance(error, RecognizerError) else "INTERNAL"
    if isinstance(error, InvalidRequestError | DeadlineExceededError | UnauthenticatedError):
        return CLOSE_POLICY_VIOLATION, reason
    if isinstance(error, OverloadedError):
        return CLOSE_TRY_AGAIN_LATER, reason
    if isinstance(error, ShuttingDownError):
        return CLOSE_SERVICE_RESTART, reason
    return CLOSE_INTERNAL_ERROR, reason
