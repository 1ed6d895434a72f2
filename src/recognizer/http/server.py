"""Serve the HTTP application with uvicorn, as a task on the service's own event loop.

One loop for gRPC and HTTP: both await the same Engine, so an HTTP request is admitted,
batched and cached with the gRPC calls, and no thread or process sits between them. The
socket is bound here, so a busy port is a StartupError like gRPC's; uvicorn's own signal
handling is left out, since the composition root owns SIGTERM and the drain.

The port serves TLS (or mTLS) whenever the gRPC port does, from the same certificate files,
rotated the same way (tls.py), and its routes take the same tokens (auth.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn

from recognizer.config.schema import ServerSettings
from recognizer.engine.engine import Engine
from recognizer.errors import StartupError
from recognizer.http.app import create_app
from recognizer.http.tls import HttpProtocol, RotatingContext, WebSocketProtocol
from recognizer.security.policy import Security
from recognizer.transport.metrics import ServerMetrics

logger = logging.getLogger(__name__)


class HttpServer:
    """HTTP/JSON, the WebSocket stream and the page, over an engine the caller starts and closes.

    Usage:

        server = HttpServer(engine, ServerSettings(http_port=0), metrics, security)
        await server.start()          # binds server.port
        ...                           # (the engine drains and goes idle)
        await server.stop(grace)      # requests still running after `grace` are cancelled
    """

    def __init__(
        self,
        engine: Engine,
        settings: ServerSettings,
        metrics: ServerMetrics,
        security: Security | None = None,
    ) -> None:
        assert settings.http_port is not None
        self.settings = settings
        self.security = security or Security()
        self.port: int | None = None
        self._config = uvicorn.Config(
            create_app(engine, settings, metrics, self.security),
            **_transport(self.security),
            ws_max_size=settings.max_message_bytes,
            lifespan="off",
            log_config=None,  # the service's logging stays as configured
            log_level="warning",  # uvicorn's start and stop lines repeat ours
            access_log=False,  # as gRPC: calls are counted in the metrics, not logged
            proxy_headers=False,  # no proxy is trusted to name the client
            server_header=False,
            timeout_graceful_shutdown=math.ceil(settings.grace_period),
        )
        self._server = _Server(self._config)
        self._serving: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Listen; returns once uvicorn accepts connections."""
        listener = _listen(self.settings.host, self.settings.http_port or 0)
        self.port = listener.getsockname()[1]
        self._serving = asyncio.create_task(self._server.serve(sockets=[listener]))
        started = asyncio.create_task(self._server.started_event.wait())
        await asyncio.wait((started, self._serving), return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        if self._serving.done():
            self._serving.result()  # raises what stopped it
            raise StartupError("the HTTP server stopped while starting")
        security = self.security
        transport = "mTLS" if security.mutual_tls else "TLS" if security.tls else "plaintext"
        auth = "tokens" if security.authenticator is not None else "no auth"
        scheme = "https" if security.tls else "http"
        logger.info(
            "serving HTTP on %s://%s:%d/ (%s, %s)",
            scheme,
            self.settings.host,
            self.port,
            transport,
            auth,
        )

    async def stop(self, grace: float) -> None:
        """Stop listening, close idle connections, give requests in flight `grace` seconds."""
        if self._serving is None:
            return
        self._config.timeout_graceful_shutdown = math.ceil(grace)  # uvicorn takes whole seconds
        self._server.should_exit = True
        await self._serving


def _transport(security: Security) -> dict[str, Any]:
    """uvicorn's protocols and TLS: plaintext as uvicorn comes, or TLS from the certificate
    files with protocols that give the app the client's certificate."""
    if security.certificates is None:
        return {"http": "httptools", "ws": "websockets-sansio"}
    context = RotatingContext(security.certificates).context
    return {
        "http": HttpProtocol,
        "ws": WebSocketProtocol,
        "ssl_context_factory": lambda config, default: context,
    }


class _Server(uvicorn.Server):
    """uvicorn's server, telling when it has started and leaving the signals alone."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.started_event = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.started_event.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, as uvicorn would bind it, or a StartupError."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        listener = socket.socket(family, kind, proto)
    except OSError as error:
        raise StartupError(f"cannot listen on {host}:{port}: {error}") from error
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
    except OSError as error:
        listener.close()
        raise StartupError(f"cannot listen for HTTP on {host}:{port}: {error}") from error
    return listener
