"""Assemble the gRPC server: Recognizer, Triton's inference service (recognizer.v2), health
and reflection on one port, connection management, health that follows the engine's
watchdog, and the drain.

The port is plaintext, TLS or mTLS as the Security says. Every call comes through the door
(door.py): with auth on it names the call's tenant (health, and reflection if asked, may
stay open), and every caller is held to its share of the calls, before a request is read.
"""

from __future__ import annotations

import logging

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from recognizer.config.schema import ServerSettings
from recognizer.engine.engine import Engine, health_name
from recognizer.engine.types import Health
from recognizer.errors import StartupError
from recognizer.logs import AccessLog
from recognizer.security.addresses import is_loopback
from recognizer.security.policy import Security
from recognizer.service.calls import CallShares
from recognizer.service.metrics import ServerMetrics
from recognizer.service.models import ModelManager
from recognizer.transport import v2
from recognizer.transport.admin import ModelAdminServicer
from recognizer.transport.auth import (
    HEALTH_METHODS,
    REFLECTION_METHODS,
    V2_HEALTH_METHODS,
    current_tenant,
)
from recognizer.transport.credentials import server_credentials
from recognizer.transport.door import Door
from recognizer.transport.health import HealthServicer
from recognizer.transport.servicer import RecognizerServicer
from recognizer.v1 import recognizer_pb2 as pb
from recognizer.v1 import recognizer_pb2_grpc as pb_grpc
from recognizer.v2.inference import grpc_service_pb2_grpc as v2_grpc

logger = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Recognizer"].full_name
ADMIN_SERVICE_NAME = pb.DESCRIPTOR.services_by_name["ModelAdminService"].full_name
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def channel_options(settings: ServerSettings) -> list[tuple[str, int]]:
    """gRPC's server options: message limits, keepalive, connection lifetimes and streams.

    Keepalive pings find clients that vanished without closing their connection (they
    are sent with or without calls, for ever). A connection past its age is sent GOAWAY:
    its calls finish, and the client opens a new connection for the next ones, which a
    Kubernetes Service (L4) may send to a newer replica. Connections beyond
    --max-connections are closed as they come, and one that has not finished its TLS
    handshake and sent HTTP/2's settings within --header-timeout is closed.

    The BDP probe is off: it grows every stream's flow-control window towards the
    connection's bandwidth-delay product (tens of MiB on loopback), which is what a call
    refused before its request is read (door.py) can make the server buffer. Without it
    the windows start at 64 KiB and grow for each message the server asks for, which costs
    an upload of a few MiB a round trip or two over a distant link.
    """

    def ms(seconds: float) -> int:
        return round(seconds * 1000)

    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 0),  # a second server on a busy port fails loudly
        ("grpc.keepalive_time_ms", ms(settings.keepalive_time)),
        ("grpc.keepalive_timeout_ms", ms(settings.keepalive_timeout)),
        ("grpc.http2.ping_timeout_ms", ms(settings.keepalive_timeout)),  # else a minute
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.max_concurrent_streams", settings.max_streams_per_connection),
        ("grpc.max_allowed_incoming_connections", settings.max_connections),
        ("grpc.server_handshake_timeout_ms", ms(settings.header_timeout)),
        ("grpc.http2.bdp_probe", 0),
    ]
    lifetimes = {
        "grpc.max_connection_idle_ms": settings.max_connection_idle,
        "grpc.max_connection_age_ms": settings.max_connection_age,
        "grpc.max_connection_age_grace_ms": settings.max_connection_age_grace,
    }
    options += [(name, ms(seconds)) for name, seconds in lifetimes.items() if seconds is not None]
    return options


class RecognizerServer:
    """A grpc.aio server for an Engine that the caller starts and closes (app.Service).

    Health answers for "" (the whole server), recognizer.v1.Recognizer, and each
    served model by name (with auth on, to a tenant that may use it): SERVING once
    listening (the engine is warm by then), NOT_SERVING from drain() on. A model is
    NOT_SERVING while the engine's watchdog finds it broken, and the server and the
    service are NOT_SERVING while every model is. The engine should have been built with
    `security.access`, so that it holds each tenant to its models. `shares` are the calls
    the server runs at once, which the HTTP port's streams may share.

    Usage:

        await engine.start()
        server = RecognizerServer(engine, ServerSettings(port=0), ServerMetrics(engine))
        await server.start()          # binds server.port, then reports SERVING
        ...
        await server.drain()          # NOT_SERVING; the engine drains and goes idle, then
        await server.stop(grace)      # in-flight calls get `grace` seconds
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
        self.engine = engine
        self.settings = settings
        self.security = security or Security()
        self.shares = shares or CallShares(settings.max_concurrent_rpcs)
        self.port: int | None = None
        self._metrics = metrics
        self._draining = False
        self._health = HealthServicer(self._may_know)
        self._server = grpc.aio.server(
            interceptors=[self._door()],
            options=channel_options(settings),
            # gRPC's own limit, a backstop: the door refuses first, with a reason.
            maximum_concurrent_rpcs=min(2 * settings.max_concurrent_rpcs, 2**31 - 1),
        )
        servicer = RecognizerServicer(
            engine,
            metrics,
            first_frame_timeout=settings.first_frame_timeout,
            idle_timeout=settings.stream_idle_timeout,
        )
        engine.on_health_change(self._model_health_changed)
        pb_grpc.add_RecognizerServicer_to_server(servicer, self._server)
        if models is not None:
            pb_grpc.add_ModelAdminServiceServicer_to_server(
                ModelAdminServicer(models, self.security, metrics), self._server
            )
        v2_grpc.add_GRPCInferenceServiceServicer_to_server(
            v2.InferenceServicer(engine, metrics), self._server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        if settings.reflection:
            reflection.enable_server_reflection(
                (
                    SERVICE_NAME,
                    ADMIN_SERVICE_NAME,
                    v2.SERVICE_NAME,
                    health.SERVICE_NAME,
                    reflection.SERVICE_NAME,
                ),
                self._server,
            )

    def _door(self) -> Door:
        """Every call's door: with auth on, a token for every method not left open."""
        security = self.security
        public = (
            *([HEALTH_METHODS, *V2_HEALTH_METHODS] if security.public_health else []),
            *(REFLECTION_METHODS if security.public_reflection else ()),
        )
        return Door(
            self.shares,
            security.authenticator,
            public=public,
            on_refusal=self._metrics.refused,
            access=AccessLog(
                enabled=self.settings.access_log, sample=self.settings.access_log_sample
            ),
        )

    def _may_know(self, service: str) -> bool:
        """Whether the caller being served may learn the health of `service`: the server's
        and the service's, anyone; a model's, a tenant that may use it (with auth on)."""
        if self.security.authenticator is None or service in ("", SERVICE_NAME):
            return True
        tenant = current_tenant()
        model = service.rpartition(":")[0] if service.rpartition(":")[2].isdigit() else service
        return bool(tenant) and self.engine.may_use(tenant, model)

    @property
    def health_names(self) -> tuple[str, ...]:
        """The server, the service, each model and each of its versions (NAME:VERSION)."""
        return (
            "",
            SERVICE_NAME,
            *(model.spec.name for model in self.engine.describe()),
            *(health_name(entry.name, entry.version) for entry in self.engine.models.entries()),
        )

    async def start(self) -> None:
        """Listen, then report SERVING."""
        settings, security = self.settings, self.security
        address = f"{settings.host}:{settings.port}"
        try:
            if security.certificates is not None:
                credentials = server_credentials(security.certificates)
                self.port = self._server.add_secure_port(address, credentials)
            else:
                self.port = self._server.add_insecure_port(address)
        except RuntimeError as error:  # grpc says only "Failed to bind"
            raise StartupError(f"cannot listen on {address}: {error}") from error
        await self._server.start()
        for name in self.health_names:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._warn_if_exposed()
        transport = "mTLS" if security.mutual_tls else "TLS" if security.tls else "plaintext"
        auth = "tokens" if security.authenticator is not None else "no auth"
        logger.info(
            "serving %s on %s:%d (%s, %s)", SERVICE_NAME, settings.host, self.port, transport, auth
        )

    def _warn_if_exposed(self) -> None:
        """Plaintext beyond this machine: anyone on the path reads the images, the answers
        and any token; say how to turn TLS on."""
        if self.security.tls or is_loopback(self.settings.host):
            return
        what = (
            "the images, the answers and the tokens"
            if self.security.authenticator
            else "the images and the answers"
        )
        logger.warning(
            "serving plaintext on %s, which other machines can reach: anyone on the network"
            " path can read %s. Serve TLS with --tls-cert FILE --tls-key FILE (docs/security.md)",
            self.settings.host,
            what,
        )

    async def _model_health_changed(self, model: str, health: Health) -> None:
        if self._draining:
            return  # NOT_SERVING until the end, whatever the models do
        await self._health.set(model, SERVING if health.serving else NOT_SERVING)
        overall = SERVING if self.engine.not_ready() is None else NOT_SERVING
        for name in ("", SERVICE_NAME):
            await self._health.set(name, overall)

    async def drain(self) -> None:
        """Report NOT_SERVING. The server still accepts connections, so health checks see
        it and new calls get UNAVAILABLE from the draining engine, not a refused connection."""
        self._draining = True
        await self._health.enter_graceful_shutdown()

    async def stop(self, grace: float) -> None:
        """Stop listening; calls still running after `grace` seconds are cancelled by grpc."""
        await self._server.stop(grace)
