"""A WebSocket stream's place among the calls the server runs at once.

Each stream holds a place in the server's calls (service/calls.py, shared with gRPC) for
its caller, the tenant or else the client's host: a handshake beyond the caller's share is
refused with 429 (TOO_MANY_CALLS), before the socket opens; an open stream whose place goes
to a caller within its share is ended (ending.py).
"""

from __future__ import annotations

import contextlib

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from recognizer.errors import TooManyCallsError
from recognizer.http.auth import caller_of
from recognizer.http.ending import end
from recognizer.http.errors import error_response
from recognizer.service.calls import CallShares


class StreamPlace:
    """Route middleware for the WebSocket stream: its caller's place among the server's calls,
    or a 429 answer to the handshake."""

    def __init__(self, app: ASGIApp, shares: CallShares) -> None:
        self._app = app
        self._shares = shares

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with contextlib.ExitStack() as stack:
            caller = caller_of(HTTPConnection(scope))
            try:
                stack.enter_context(self._shares.place(caller, lambda error: end(scope, error)))
            except TooManyCallsError as error:
                await error_response(error)(scope, receive, send)  # denied, not opened
                return
            await self._app(scope, receive, send)
