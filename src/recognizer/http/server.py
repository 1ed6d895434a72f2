"""Serve the HTTP application with uvicorn, as a task on the service's own event loop.

One loop for gRPC and HTTP: both await the same Engine, so an HTTP request is admitted,
batched and cached with the gRPC calls, and no thread or process sits between them. The
socket is bound here, so a busy port is a StartupError like gRPC's; uvicorn's own signal
handling is left out, since the composition root owns SIGTERM and the drain.

The port serves TLS (or mTLS) whenever the gRPC port does, from the same certificate files,
rotated the same way (tls.py), and its routes take the same tokens (auth.py). Its
connections are held to the limits of protocol.py: a connection cap, time and size limits
on request heads, and the keep-alive time of --max-connection-idle; a TLS handshake, too,
must end within --header-timeout, which uvicorn has no setting for (startup() below).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
from collections.abc import Iterator

import uvicorn

from recognizer.config.schema import GRPC_SECONDS_LIMIT, ServerSettings
from recognizer.engine.engine import Engine
from recognizer.errors import StartupError
from recognizer.http.app import create_app
from recognizer.http.protocol import Limits, protocols
from recognizer.http.tls import Connections, ListeningContext
from recognizer.security.policy import Security
from recognizer.service.calls import CallShares
from recognizer.service.metrics import ServerMetrics
from recognizer.service.models import ModelManager

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
        shares: CallShares | None = None,
        *,
        models: ModelManager | None = None,
    ) -> None:
        assert settings.http_port is not None
        self.settings = settings
        self.security = security or Security()
        self.port: int | None = None
        self.connections = Connections(settings.max_connections)
        shares = shares or CallShares(settings.max_concurrent_rpcs)
        http, ws = protocols(
            Limits(
                self.connections,
                header_timeout=settings.header_timeout,
                max_url_bytes=settings.http_max_url_kb << 10,
                max_header_bytes=settings.http_max_header_kb << 10,
                tls=self.security.tls,
            )
        )
        context = None
        if self.security.certificates is not None:
            context = ListeningContext(self.security.certificates, self.connections)
        idle = settings.max_connection_idle
        self._config = uvicorn.Config(
            create_app(engine, settings, metrics, self.security, shares, models=models),
            http=http,
            ws=ws,
            ssl_context_factory=(lambda config, default: context) if context else None,
            ws_max_size=settings.max_message_bytes,
            lifespan="off",
            log_config=None,  # the service's logging stays as configured
            log_level="warning",  # uvicorn's start and stop lines repeat ours
            access_log=False,  # as gRPC: calls are counted in the metrics, not logged
            proxy_headers=False,  # no proxy is trusted to name the client
            server_header=False,
            timeout_keep_alive=math.ceil(idle) if idle is not None else GRPC_SECONDS_LIMIT,
            timeout_graceful_shutdown=math.ceil(settings.grace_period),
        )
        self._server = _Server(self._config, handshake_timeout=settings.header_timeout)
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


class _Server(uvicorn.Server):
    """uvicorn's server, listening on the sockets given with a time limit on TLS handshakes,
    telling when it has started, and leaving the signals alone."""

    def __init__(self, config: uvicorn.Config, *, handshake_timeout: float) -> None:
        super().__init__(config)
        self.started_event = asyncio.Event()
        self._handshake_timeout = handshake_timeout

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's startup for the sockets given, but for ssl_handshake_timeout (uvicorn
        leaves the event loop's 60 s); lifespan events are off."""
        assert sockets is not None
        config = self.config
        loop = asyncio.get_running_loop()

        def create_protocol() -> asyncio.Protocol:
            protocol: asyncio.Protocol = config.http_protocol_class(  # type: ignore[call-arg]
                config=config, server_state=self.server_state, app_state=self.lifespan.state
            )
            return protocol

        timeout = self._handshake_timeout if config.ssl is not None else None
        self.servers = [
            await loop.create_server(
                create_protocol,
                sock=listener,
                ssl=config.ssl,
                backlog=config.backlog,
                ssl_handshake_timeout=timeout,
            )
            for listener in sockets
        ]
        self.started = True
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
