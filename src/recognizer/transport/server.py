"""Assemble the gRPC server: Recognizer, health and reflection on one port, and drain it.

The port is plaintext, TLS or mTLS as the Security says; with auth on, an interceptor
names each call's tenant (health, and reflection if asked, may stay open).
"""

from __future__ import annotations

import asyncio
import logging

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from recognizer.config.schema import ServerSettings
from recognizer.engine.engine import Engine
from recognizer.errors import StartupError
from recognizer.security.addresses import is_loopback
from recognizer.security.policy import Security
from recognizer.transport.auth import HEALTH_METHODS, REFLECTION_METHODS, AuthInterceptor
from recognizer.transport.credentials import server_credentials
from recognizer.transport.metrics import ServerMetrics
from recognizer.transport.servicer import RecognizerServicer
from recognizer.v1 import recognizer_pb2 as pb
from recognizer.v1 import recognizer_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Recognizer"].full_name


class RecognizerServer:
    """A grpc.aio server for an Engine: start it, then stop it gracefully.

    Health answers for "" (the whole server), recognizer.v1.Recognizer, and each
    served model by name: SERVING once the engine is warm, NOT_SERVING while draining.
    The engine should have been built with `security.access`, so that it holds each
    tenant to its models.

    Usage:

        server = RecognizerServer(engine, ServerSettings(port=0), Security())
        await server.start()          # warms the engine up, then binds server.port
        ...
        await server.stop()           # drain, finish in-flight calls, close the engine
    """

    def __init__(
        self, engine: Engine, settings: ServerSettings, security: Security | None = None
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.security = security = security or Security()
        self.port: int | None = None
        self._health = health.aio.HealthServicer()
        self.metrics = ServerMetrics(engine, tenants=security.authenticator is not None)
        self._server = grpc.aio.server(
            interceptors=self._interceptors(),
            options=[
                ("grpc.max_receive_message_length", settings.max_message_bytes),
                ("grpc.max_send_message_length", settings.max_message_bytes),
                ("grpc.so_reuseport", 0),  # a second server on a busy port fails loudly
                ("grpc.keepalive_permit_without_calls", 1),
                ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
            ],
        )
        self.metrics_port: int | None = None
        servicer = RecognizerServicer(engine, self.metrics)
        pb_grpc.add_RecognizerServicer_to_server(servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        if settings.reflection:
            reflection.enable_server_reflection(
                (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server
            )

    def _interceptors(self) -> list[grpc.aio.ServerInterceptor]:
        """With auth on, one that authenticates every call to a method not left open."""
        security = self.security
        if security.authenticator is None:
            return []
        public = (
            *([HEALTH_METHODS] if security.public_health else []),
            *(REFLECTION_METHODS if security.public_reflection else ()),
        )
        return [
            AuthInterceptor(security.authenticator, public=public, on_refusal=self.metrics.refused)
        ]

    @property
    def health_names(self) -> tuple[str, ...]:
        return ("", SERVICE_NAME, *(model.spec.name for model in self.engine.describe()))

    async def start(self) -> None:
        """Warm the models up, listen, and only then report SERVING."""
        await self.engine.start()
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
        if settings.metrics_port is not None:
            self.metrics_port = self.metrics.serve(settings.metrics_host, settings.metrics_port)
            logger.info("metrics on http://%s:%d/metrics", settings.metrics_host, self.metrics_port)
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
            " path can read %s. Serve TLS with --tls-cert FILE --tls-key FILE (README:"
            " Running it securely)",
            self.settings.host,
            what,
        )

    async def stop(self) -> None:
        """Drain, then stop: the grace period covers both.

        While draining, the server still accepts connections, so health checks see
        NOT_SERVING and new calls get UNAVAILABLE with a reason, not a refused connection;
        accepted work finishes. Whatever is still running when the grace period ends is
        cancelled by grpc.
        """
        grace = self.settings.grace_period
        logger.info("draining; in-flight calls have %.1fs to finish", grace)
        deadline = asyncio.get_running_loop().time() + grace
        await self._health.enter_graceful_shutdown()
        self.engine.drain()
        await self.engine.wait_idle(grace)
        remaining = max(deadline - asyncio.get_running_loop().time(), 0.0)
        await self._server.stop(remaining)
        await self.engine.close()
        self.metrics.close()
        logger.info("stopped")
