"""The HTTP door's access log: one line a request or WebSocket when it ends (logs.py).

Outermost of the app's middleware, so that what the others refuse (another site's page,
a body too large, a missing token) is logged too. A WebSocket's line comes when it
closes, with its close code; the tenant is the one the route's authentication named.
"""

from __future__ import annotations

import time

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recognizer.http.auth import TENANT
from recognizer.logs import AccessLog, trace_id

_WEBSOCKET_CLOSED_WELL = (1000, 1001)


class AccessLogged:
    """ASGI middleware writing each request's access line, when the log is on."""

    def __init__(self, app: ASGIApp, access: AccessLog) -> None:
        self._app = app
        self._access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._access.enabled or scope["type"] not in ("http", "websocket"):
            await self._app(scope, receive, send)
            return
        started = time.monotonic()
        websocket = scope["type"] == "websocket"
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

        try:
            await self._app(scope, receive, sending)
        finally:
            client = scope.get("client")
            self._access.write(
                started,
                ok=ok,
                status=status,
                door="http",
                method=f"{'WEBSOCKET' if websocket else scope['method']} {scope['path']}",
                trace_id=trace_id(Headers(scope=scope)),
                tenant=scope.get(TENANT, ""),
                peer=client[0] if client else "",
            )
