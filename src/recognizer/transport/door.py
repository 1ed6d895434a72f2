"""The door of every gRPC call: who is calling (auth.py) and its caller's share of the calls
(calls.py) are settled before the call's request is read, and the request is read here.

grpc.aio runs interceptors before it reads a request, but then reads a unary request whole
before the handler runs: a call refused by its handler has cost its full message. So every
method is served here through a handler of the request-streaming kind, whose behaviour
authenticates the caller, takes its place, and only then reads the request (the method's
own handler gets it as before). A call refused at the door costs what the transport took
in before anybody asked for the request: HTTP/2's flow-control window (server.py turns off
the BDP probe, which would otherwise grow that window to megabytes).

Reading here also catches a message that is not what the method takes (invalid UTF-8 in a
string field): INVALID_ARGUMENT, where grpc would answer UNKNOWN and log a traceback. A
call can be ended from outside while it runs, with a status: its place given to a caller
within its share, or its token revoked (the tokens file re-read). Its task is cancelled,
and the call ends with that error. Every method's errors end here too: the call aborted
with the error's status (transport/status.py), an error no RecognizerError explains
logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
from google.protobuf.message import DecodeError

from recognizer import tracing
from recognizer.errors import (
    InvalidRequestError,
    RecognizerError,
    UnauthenticatedError,
    without_tracebacks,
)
from recognizer.logs import AccessLog, trace_id
from recognizer.security.auth import Authenticator
from recognizer.service.calls import CallShares
from recognizer.service.status import code_for
from recognizer.transport.auth import Identity, identify, serving
from recognizer.transport.callers import peer_host
from recognizer.transport.status import abort

Context = grpc.aio.ServicerContext[Any, Any]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # generic in the stubs only
Deserializer = Callable[[bytes], Any] | None

logger = logging.getLogger(__name__)


class Door(grpc.aio.ServerInterceptor):
    """Serves every method through the door: with auth on, every method not in `public`
    (method-name prefixes) needs credentials that name a tenant."""

    def __init__(
        self,
        shares: CallShares,
        authenticator: Authenticator | None = None,
        *,
        public: Sequence[str] = (),
        on_refusal: Callable[[str], object] = lambda reason: None,
        access: AccessLog | None = None,
    ) -> None:
        self._shares = shares
        self._access = access or AccessLog()
        self._authenticator = authenticator
        self._public = tuple(public)
        self._on_refusal = on_refusal

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        return self._through_door(handler, method, required=not method.startswith(self._public))

    def _through_door(self, handler: Handler, method: str, *, required: bool) -> Handler:
        inner = _behaviour(handler)
        decode: Deserializer = handler.request_deserializer
        streams_requests, streams_responses = handler.request_streaming, handler.response_streaming

        async def serve(raw: AsyncIterable[bytes], context: Context, call: _Call | None) -> Any:
            lasting = streams_requests or streams_responses
            try:
                async with self._admitted(context, required=required, lasting=lasting) as tenant:
                    if call is not None:
                        call.tenant = tenant
                    if streams_requests:
                        argument = _decoded(raw, decode)
                    else:
                        data = await context.read()
                        if data is grpc.aio.EOF:
                            raise InvalidRequestError("the call sent no request", field="message")
                        argument = _decode(data, decode)
                        if call is not None:
                            call.name(argument)
                    result = inner(argument, context)
                    if not streams_responses:
                        return await result if inspect.isawaitable(result) else result
                    await _write_all(result, context)
                    return None
            except grpc.aio.AbortError:
                raise  # ended by context.abort() (grpc's own health service does)
            except Exception as error:
                if context.code() not in (None, grpc.StatusCode.OK):
                    raise  # its status set before it raised (generated stubs' UNIMPLEMENTED)
                if not isinstance(error, RecognizerError):
                    logger.exception("%s failed", method)
                return _Failed(without_tracebacks(error))

        async def ended(
            raw: AsyncIterable[bytes], context: Context, span: tracing.Traced | None
        ) -> Any:
            """The call served, and its ending told to the access log and its span."""
            traced = self._access.enabled or span is not None
            call = _Call(method, time.monotonic()) if traced else None
            try:
                outcome = await serve(raw, context, call)
            except BaseException:  # cancelled, or ended by the method with its own status
                if call is not None:
                    code = context.code()
                    self._end(call, context, span, getattr(code, "name", None) or "CANCELLED")
                raise
            if isinstance(outcome, _Failed):
                if call is not None:
                    status = code_for(outcome.error).name
                    self._end(call, context, span, status, outcome.error)
                await abort(context, outcome.error)  # from here, where no request is held
            elif call is not None:
                self._end(call, context, span, "OK")
            return outcome

        async def behaviour(raw: AsyncIterable[bytes], context: Context) -> Any:
            if not tracing.enabled():
                return await ended(raw, context, None)
            service, _, name = method.lstrip("/").rpartition("/")
            attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
            with tracing.serving(method.lstrip("/"), _metadata(context), attributes) as span:
                return await ended(raw, context, span)

        factory = (
            grpc.stream_stream_rpc_method_handler
            if streams_responses
            else grpc.stream_unary_rpc_method_handler
        )
        return factory(behaviour, response_serializer=handler.response_serializer)

    def _end(
        self,
        call: _Call,
        context: Context,
        span: tracing.Traced | None,
        status: str,
        error: BaseException | None = None,
    ) -> None:
        """The call's access line (logs.py), and the end of its span: its status, tenant
        and request id, and its error's reason."""
        reason = error.reason if isinstance(error, RecognizerError) else ""
        if span is not None:
            span.set(
                {
                    "rpc.grpc.status_code": grpc.StatusCode[status].value[0],
                    "recognizer.tenant": call.tenant,
                    "recognizer.request_id": tracing.attribute_text(call.request_id),
                }
            )
            if error is not None:
                span.error(error)
            elif status != "OK":
                span.fail(status)
        if not self._access.enabled:
            return
        self._access.write(
            call.started,
            ok=status == "OK",
            status=status,
            reason=reason,
            door="grpc",
            method=call.method,
            request_id=call.request_id,
            trace_id=trace_id(_metadata(context)),
            tenant=call.tenant,
            model=call.model,
            peer=peer_host(context.peer()),
        )

    @contextlib.asynccontextmanager
    async def _admitted(
        self, context: Context, *, required: bool, lasting: bool
    ) -> AsyncIterator[str]:
        """Serve the block as the caller (its tenant given to it), in its place; a call
        ended from outside raises the error it was ended with."""
        identity = Identity()
        if self._authenticator is not None:
            try:
                identity = identify(self._authenticator, context, required=required)
            except UnauthenticatedError as error:
                self._on_refusal(error.reason)
                raise
        ending = _Ending()
        try:
            with contextlib.ExitStack() as stack:
                caller = identity.tenant or peer_host(context.peer())
                stack.enter_context(self._shares.place(caller, ending.end))
                if lasting and identity.tenant and self._authenticator is not None:
                    stack.enter_context(
                        self._authenticator.hold(
                            identity.tenant,
                            identity.authorization,
                            identity.certificate_name,
                            ending.end,
                        )
                    )
                stack.enter_context(serving(identity.tenant))
                yield identity.tenant
        except asyncio.CancelledError:
            if not ending.ended:
                raise  # the client went away, or the server is stopping
            ending.task.uncancel()
            raise ending.error() from None


@dataclass(slots=True)
class _Call:
    """What a call's access line says of it, gathered as it is served."""

    method: str
    started: float
    tenant: str = ""
    model: str = ""
    request_id: str = ""

    def name(self, request: Any) -> None:
        """The model and request id the request names, where its message has them:
        recognizer.v1's `model` and `request_id`, the v2 protocol's `model_name` and `id`."""
        for field in ("model", "model_name"):
            if isinstance(value := getattr(request, field, None), str) and value:
                self.model = value
        for field in ("request_id", "id"):
            if isinstance(value := getattr(request, field, None), str) and value:
                self.request_id = value


@dataclass(frozen=True, slots=True)
class _Failed:
    """A call's error, returned out of the frames that hold its request."""

    error: BaseException


class _Ending:
    """How a call is ended from outside: its task cancelled, with the error to answer."""

    def __init__(self) -> None:
        task = asyncio.current_task()
        assert task is not None  # grpc runs each call's behaviour in a task
        self.task = task
        self.ended = False
        self._error: RecognizerError | None = None

    def end(self, error: RecognizerError) -> None:
        if not self.ended:
            self.ended = True
            self._error = error
            self.task.cancel()

    def error(self) -> RecognizerError:
        """The error the call was ended with, no longer held here: raised, its traceback
        holds the frame that holds this."""
        error, self._error = self._error, None
        assert error is not None
        return error


def _metadata(context: Context) -> dict[str, str]:
    """The call's text metadata (a trace context among it), by key."""
    return {
        key: value for key, value in context.invocation_metadata() or () if isinstance(value, str)
    }


async def _decoded(raw: AsyncIterable[bytes], decode: Deserializer) -> AsyncIterator[Any]:
    """The call's requests, each decoded as it comes."""
    async for data in raw:
        yield _decode(data, decode)


def _decode(data: bytes, decode: Deserializer) -> Any:
    """A request message from its bytes; one that does not decode is INVALID_ARGUMENT."""
    try:
        return decode(data) if decode is not None else data
    except DecodeError as error:
        raise InvalidRequestError(
            f"the message is not one this method takes: {error}", field="message"
        ) from None


async def _write_all(result: Any, context: Context) -> None:
    """Send a response-streaming behaviour's responses: it may write them itself (a
    coroutine, as health's Watch does), yield them (an async generator, the servicer's
    streams) or return an iterable."""
    if inspect.isawaitable(result):
        result = await result
    if result is None:
        return
    if hasattr(result, "__aiter__"):
        closing = contextlib.aclosing(result) if hasattr(result, "aclose") else None
        async with closing or contextlib.nullcontext():
            async for response in result:
                await context.write(response)
        return
    for response in result:
        await context.write(response)


_KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


def _behaviour(handler: Handler) -> Callable[..., Any]:
    for kind in _KINDS:
        inner = getattr(handler, kind)
        if inner is not None:
            return inner  # type: ignore[no-any-return]
    raise ValueError(f"a method handler with no behaviour: {handler}")
