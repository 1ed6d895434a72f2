"""uvicorn's HTTP protocol (httptools) and WebSocket protocol (websockets-sansio), held to
the limits a port open to the network needs, which uvicorn leaves out for httptools.

The HTTP port shares the event loop with gRPC, so nothing a client sends may stall it or
hold it for long. uvicorn's own settings do not cover that: `h11_max_incomplete_event_size`
bounds only the h11 parser, `timeout_keep_alive` runs only between requests (a connection
that never sends one is kept for ever), and `limit_concurrency` answers 503 to a request
whose head has been read, having accepted, parsed and held its connection. So here, as
Go's http.Server (MaxHeaderBytes, ReadHeaderTimeout), nginx and Envoy do:

- a request's URL is at most --http-max-url-kb (414) and its head at most
  --http-max-header-kb (431), counted as the bytes come: httptools joins a header's pieces
  with `bytes +=`, which is quadratic, so an unbounded header stalled the loop for seconds;
- a connection must send a request's head within --header-timeout of connecting (after its
  TLS handshake), or of the first byte of each later request (408, or closed if nothing
  came); between requests it may idle for --max-connection-idle (uvicorn's keep-alive);
- a port holds at most --max-connections connections: one over it is closed at once, as
  Envoy's and nginx's connection limits do, before anything is read (a TLS connection
  before its handshake, by tls.py).

Refusals are answered in the API's JSON error form and close the connection. The protocols
also put the ASGI TLS extension (tls.py) in each scope of a TLS connection.
"""

from __future__ import annotations

import asyncio
import http
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from recognizer.http import errors
from recognizer.http.tls import Connections, tls_extension

App = Callable[[Any, Any, Any], Awaitable[None]]  # an ASGI application, as uvicorn types it
REFUSAL_LINGER_S = 1.0  # a refused connection's answer has this long to reach its client


@dataclass(frozen=True)
class Limits:
    """One port's limits, and the connections it holds (counted here in plaintext, by the
    listening context under TLS)."""

    connections: Connections
    header_timeout: float
    max_url_bytes: int
    max_header_bytes: int
    tls: bool = False


class _Refused(Exception):
    """A request over a limit, answered with `code` and the connection closed."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def protocols(limits: Limits) -> tuple[type[HttpProtocol], type[WebSocketProtocol]]:
    """The protocol classes for uvicorn's `http` and `ws`, held to one port's limits."""

    class Http(HttpProtocol):
        LIMITS = limits

    class WebSocket(WebSocketProtocol):
        LIMITS = limits

    return Http, WebSocket


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the port's limits and the TLS extension."""

    LIMITS: ClassVar[Limits]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._counted = False  # in the port's connections, until it closes or upgrades
        self._in_head = True  # the next bytes belong to a request's head
        self._head_bytes = 0  # as they came, for a head not yet complete
        self._url_bytes = 0
        self._header_bytes = 0  # the URL's and the headers', as parsed
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        limits = self.LIMITS
        if not limits.tls:  # (under TLS the listening context counted it)
            if limits.connections.full:
                self.transport = transport
                transport.abort()
                return
            limits.connections.open += 1
            self._counted = True
        super().connection_made(transport)
        if (tls := tls_extension(transport)) is not None:
            self.app = _with_tls(self.app, tls)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        if self._counted:
            self._counted = False
            self.LIMITS.connections.open -= 1
        if self.flow is not None:  # (refused connections never got this far)
            super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """uvicorn's, counting the head's bytes as they come and refusing over a limit."""
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_bytes += len(data)
            self._arm_head_timer()
        try:
            self.parser.feed_data(data)
            if self._in_head and self._head_bytes > self.LIMITS.max_header_bytes:
                raise _Refused(431, "the request's headers are over --http-max-header-kb")
        except _Refused as refused:
            self._refuse(refused)
        except httptools.HttpParserCallbackError as error:
            if isinstance(error.__context__, _Refused):
                self._refuse(error.__context__)
            else:
                self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserError:
            self.send_400_response("Invalid HTTP request received.")
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._url_bytes = self._header_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._url_bytes += len(url)
        if self._url_bytes > self.LIMITS.max_url_bytes:
            raise _Refused(414, "the request's URL is over --http-max-url-kb")
        self._count_head(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value))
        super().on_header(name, value)

    def _count_head(self, size: int) -> None:
        """A head that came in one piece is counted as it is parsed."""
        self._header_bytes += size
        if self._header_bytes > self.LIMITS.max_header_bytes:
            raise _Refused(431, "the request's headers are over --http-max-header-kb")

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._disarm_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # the next request's head may follow at once (pipelining)

    def handle_websocket_upgrade(self) -> None:
        """uvicorn's: the WebSocket protocol takes the connection over, and its count."""
        super().handle_websocket_upgrade()
        protocol = self.transport.get_protocol()
        if isinstance(protocol, WebSocketProtocol) and self._counted:
            self._counted = False
            protocol.counted = True

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            timeout = self.LIMITS.header_timeout
            self._head_timer = self.loop.call_later(timeout, self._head_too_slow)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self._head_bytes == 0:
            self.transport.close()  # it sent nothing: nothing to answer
            return
        self._refuse(_Refused(408, "the request's headers did not come within --header-timeout"))

    def _refuse(self, refused: _Refused) -> None:
        """Answer `refused.code` in the API's JSON form, then close the connection (at once,
        while a request before it is still being answered; else once the answer is out)."""
        self._disarm_head_timer()
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()
            return
        response = errors.failure(refused.code, refused.message, {"connection": "close"})
        phrase = http.HTTPStatus(refused.code).phrase
        head = [f"HTTP/1.1 {refused.code} {phrase}".encode("ascii")]
        head += [name + b": " + value for name, value in response.raw_headers]
        self.transport.write(b"\r\n".join([*head, b"", response.body]))
        # Closed with what the client still sends unread, the socket would be reset, and the
        # client could lose the answer with it: so stop reading (flow control stops the
        # client), end the sending side, and close a moment later, as nginx's lingering close.
        self.transport.pause_reading()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        asyncio.get_running_loop().call_later(REFUSAL_LINGER_S, self.transport.close)


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol, which an HTTP connection upgrades to, with the TLS
    extension; it holds the connection's place in the port's count until it closes."""

    LIMITS: ClassVar[Limits]
    counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if (tls := tls_extension(transport)) is not None:
            self.app = _with_tls(self.app, tls)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.counted:
            self.counted = False
            self.LIMITS.connections.open -= 1
        super().connection_lost(exc)


def _with_tls(app: App, tls: dict[str, Any]) -> App:
    """`app`, its every scope given the connection's TLS extension."""

    async def with_tls(scope: Any, receive: Any, send: Any) -> None:
        scope["extensions"] = {**(scope.get("extensions") or {}), "tls": tls}
        await app(scope, receive, send)

    return with_tls
