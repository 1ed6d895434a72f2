"""How the server ends a WebSocket stream it must not keep: its caller's place given to a
caller within its share (calls.py), or its token revoked (auth.py). `end` resolves the
scope's `ended` future with the error, which the stream endpoint answers and closes with."""

from __future__ import annotations

import asyncio

from starlette.types import Scope

from recognizer.errors import RecognizerError

ENDED = "recognizer.ended"  # the scope key of the stream's `ended` future


def ended(scope: Scope) -> asyncio.Future[RecognizerError]:
    """Resolved with the error to end the stream with, if the server ends it."""
    future: asyncio.Future[RecognizerError] = scope.setdefault(
        ENDED, asyncio.get_running_loop().create_future()
    )
    return future


def end(scope: Scope, error: RecognizerError) -> None:
    """End the scope's stream with `error` (the first error given wins)."""
    future = ended(scope)
    if not future.done():
        future.set_result(error)
