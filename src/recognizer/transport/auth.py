"""The gRPC side of auth: an interceptor that names each call's tenant, or refuses the call.

Every method but the public ones (health with --public-health, reflection with
--public-reflection) passes the `authorization` metadata and, under mTLS, the verified
client certificate's subject CN to the Authenticator. A call it refuses ends with
UNAUTHENTICATED and an ErrorInfo reason before any handler runs; a call it accepts runs
with its tenant in `current_tenant()`, which the servicer hands to the engine.

grpc.aio interceptors see only the method and metadata, not the peer's certificate, so
the check runs in a wrapper around the method's handler, where the context is at hand.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeAlias

import grpc

from recognizer.errors import UnauthenticatedError
from recognizer.security.auth import Authenticator
from recognizer.transport.status import abort

Context = grpc.aio.ServicerContext[Any, Any]
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # generic in the stubs only
HandlerFactory: TypeAlias = Callable[..., Handler]

HEALTH_METHODS = "/grpc.health.v1.Health/"
V2_HEALTH_METHODS = tuple(
    f"/inference.GRPCInferenceService/{name}"
    for name in ("ServerLive", "ServerReady", "ModelReady")
)
REFLECTION_METHODS = (
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)

_tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="")


def current_tenant() -> str:
    """The tenant of the call being served; "" with auth off."""
    return _tenant.get()


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every call to a method not in `public` (method-name prefixes)."""

    def __init__(
        self,
        authenticator: Authenticator,
        *,
        public: Sequence[str] = (),
        on_refusal: Callable[[str], object] = lambda reason: None,
    ) -> None:
        self._authenticator = authenticator
        self._public = tuple(public)
        self._on_refusal = on_refusal

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(self._public):
            return handler
        return self._guarded(handler)

    async def _admit(self, context: Context) -> contextvars.Token[str] | None:
        """Set the call's tenant, or end the call with UNAUTHENTICATED (None)."""
        try:
            tenant = self._authenticator.authenticate(
                _authorization(context), _certificate_name(context)
            )
        except UnauthenticatedError as error:
            self._on_refusal(error.reason)
            await abort(context, error)
            return None
        return _tenant.set(tenant.name)

    def _guarded(self, handler: Handler) -> Handler:
        """The same handler, its behaviour run only for an authenticated caller.

        A streaming behaviour is an (async) generator or a coroutine that writes through
        the context (health's Watch); the wrapper keeps its style, since grpc tells them
        apart by it.
        """
        kind, inner = _behaviour(handler)
        admit = self._admit
        behaviour: Callable[..., Any]
        if handler.response_streaming and not inspect.iscoroutinefunction(inner):

            async def generator(request: Any, context: Context) -> AsyncIterator[Any]:
                token = await admit(context)
                try:
                    responses = inner(request, context)
                    if hasattr(responses, "aclose"):  # closed with the call, not later by gc
                        async with contextlib.aclosing(responses):
                            async for response in responses:
                                yield response
                    elif hasattr(responses, "__aiter__"):
                        async for response in responses:
                            yield response
                    else:
                        for response in responses:
                            yield response
                finally:
                    if token is not None:
                        _tenant.reset(token)

            behaviour = generator
        else:

            async def coroutine(request: Any, context: Context) -> Any:
                token = await admit(context)
                try:
                    result = inner(request, context)
                    return await result if inspect.isawaitable(result) else result
                finally:
                    if token is not None:
                        _tenant.reset(token)

            behaviour = coroutine
        return _HANDLERS[kind](
            behaviour,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


_HANDLERS: dict[str, HandlerFactory] = {
    "unary_unary": grpc.unary_unary_rpc_method_handler,
    "unary_stream": grpc.unary_stream_rpc_method_handler,
    "stream_unary": grpc.stream_unary_rpc_method_handler,
    "stream_stream": grpc.stream_stream_rpc_method_handler,
}


def _behaviour(handler: Handler) -> tuple[str, Callable[..., Any]]:
    for kind in _HANDLERS:
        inner = getattr(handler, kind)
        if inner is not None:
            return kind, inner
    raise ValueError(f"a method handler with no behaviour: {handler}")


def _authorization(context: Context) -> str | None:
    values = [value for key, value in context.invocation_metadata() or () if key == "authorization"]
    if len(values) > 1:
        raise UnauthenticatedError(
            "send one authorization header, not several", reason="TOKEN_INVALID"
        )
    return str(values[0]) if values else None


def _certificate_name(context: Context) -> str | None:
    """The subject CN of the client certificate grpc verified (mTLS only)."""
    names = list(context.auth_context().get("x509_common_name", ()))
    return names[0].decode("utf-8", "replace") if names else None
