"""The HTTP door's access log: one line a request or WebSocket when it ends (logs.py),
and its server span, when tracing is on (tracing.py).

Outermost of the app's middleware, so that what the others refuse (another site's page,
a body too large, a missing token) is logged too. A WebSocket's line comes when it
closes, with its close code; the tenant is the one the route's authentication named.
"""

from __future__ import annotations

import time

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recognizer import tracing
from recognizer.http.auth import TENANT
from recognizer.logs import AccessLog, trace_id

_WEBSOCKET_CLOSED_WELL = (1000, 1001)


class AccessLogged:
    """ASGI middleware writing each request's access line, when the log is on, and opening
    its span (under the caller's trace context, from its headers), when tracing is on."""

    def __init__(self, app: ASGIApp, access: AccessLog) -> None:
        self._app = app
        self._access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if not (self._access.enabled or tracing.enabled()) or kind not in ("http", "websocket"):
            await self._app(scope, receive, send)
            return
        started = time.monotonic()
        websocket = kind == "websocket"
        method = f"{'WEBSOCKET' if websocket else scope['method']} {scope['path']}"
        headers = Headers(scope=scope)
        status, ok = "500", False  # unless a response starts

        async def sending(message: Message) -> None:
            nonlocal status, ok
            match message["type"]:
                case "http.response.start":
                    status, ok = str(message["status"]), message["status"] < 400
                case "websocket.accept":
                    status, ok = "101", True
                case "websocket.close":
                    code = message.get("code", 1000)
                    status, ok = f"close {code}", code in _WEBSOCKET_CLOSED_WELL
            await send(message)

        attributes = {"http.request.method": scope.get("method", "GET"), "url.path": scope["path"]}
        with tracing.serving(method, headers, attributes) as span:
            try:
                await self._app(scope, receive, sending)
            finally:
                tenant = scope.get(TENANT, "")
                if span is not None:
                    _end(span, status, ok, tenant)
                client = scope.get("client")
                self._access.write(
                    started,
                    ok=ok,
                    status=status,
                    door="http",
                    method=method,
                    trace_id=trace_id(headers),
                    tenant=tenant,
                    peer=client[0] if client else "",
                )


def _end(span: tracing.Traced, status: str, ok: bool, tenant: str) -> None:
    """A request's span ends: its status and tenant; a failure's reason, unless the error
    response already gave it (http/errors.py), is its status."""
    code = int(status) if status.isdigit() else 101  # a WebSocket's close: once accepted
    span.set({"http.response.status_code": code, "recognizer.tenant": tenant})
    if not ok:
        span.fail(status)
