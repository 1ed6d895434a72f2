"""Pages of other sites refused: only the server's own page (and --http-allowed-origins)
may call the API or open the WebSocket stream from a browser.

A browser names the page behind a request in its `Origin` header. The same-origin policy
keeps other sites from reading the API's answers, but not from sending it work, and a
WebSocket is not covered by it at all: the browser opens one from any page and lets the
page read it. When a browser's own credentials reach the server (a client certificate
under mTLS, or just its place on the network when auth is off), any site a person visits
could otherwise stream frames in their name: cross-site WebSocket hijacking. A request
without `Origin` (curl, programs, a browser opening a page) is not a page's call and
passes; a token is what guards against those.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from recognizer.errors import quoted
from recognizer.http.errors import failure
from recognizer.origins import origin

FORBIDDEN = 403


class SameOrigin:
    """Middleware: a request or WebSocket handshake from another site's page gets 403
    ORIGIN_NOT_ALLOWED before anything else runs."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str] = ()) -> None:
        self._app = app
        self._allowed = frozenset(allowed)  # normalised by the settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            connection = HTTPConnection(scope)
            sent = connection.headers.get("origin")
            if sent is not None and not self._allows(sent, connection):
                message = (
                    f"pages of {quoted(sent)} may not call this server; its own may, and"
                    " those of --http-allowed-origins"
                )
                await failure(FORBIDDEN, message)(scope, receive, send)
                return
        await self._app(scope, receive, send)

    def _allows(self, sent: str, connection: HTTPConnection) -> bool:
        """Whether `sent` is this server's origin (the scheme it serves and the host the
        browser dialled) or one allowed; "null" and anything malformed are not."""
        scheme = "https" if connection.url.scheme in ("https", "wss") else "http"
        try:
            page = origin(sent)
            return page in self._allowed or page == origin(
                f"{scheme}://{connection.headers.get('host', '')}"
            )
        except ValueError:
            return False
