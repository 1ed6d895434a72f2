"""Assemble the gRPC server: Recognizer, health and reflection on one port, connection
management, health that follows the engine's watchdog, and the drain."""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from recognizer.config.schema import ServerSettings
from recognizer.engine.engine import Engine
from recognizer.engine.types import Health
from recognizer.errors import StartupError
from recognizer.transport.metrics import ServerMetrics
from recognizer.transport.servicer import RecognizerServicer
from recognizer.v1 import recognizer_pb2 as pb
from recognizer.v1 import recognizer_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Recognizer"].full_name
CLOSE_AFTER_GRACE_S = 2.0  # for the workers to finish their batches once calls are gone
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def channel_options(settings: ServerSettings) -> list[tuple[str, int]]:
    """gRPC's server options: message limits, keepalive, connection lifetimes and streams.

    Keepalive pings find clients that vanished without closing their connection (they
    are sent with or without calls, for ever). A connection past its age is sent GOAWAY:
    its calls finish, and the client opens a new connection for the next ones, which a
    Kubernetes Service (L4) may send to a newer replica.
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
    ]
    lifetimes = {
        "grpc.max_connection_idle_ms": settings.max_connection_idle,
        "grpc.max_connection_age_ms": settings.max_connection_age,
        "grpc.max_connection_age_grace_ms": settings.max_connection_age_grace,
    }
    options += [(name, ms(seconds)) for name, seconds in lifetimes.items() if seconds is not None]
    return options


class RecognizerServer:
    """A grpc.aio server for an Engine: start it, then stop it gracefully.

    Health answers for "" (the whole server), recognizer.v1.Recognizer, and each
    served model by name: SERVING once the engine is warm, NOT_SERVING while draining.
    A model is NOT_SERVING while the engine's watchdog finds it broken, and the server
    and the service are NOT_SERVING while every model is.

    Usage:

        server = RecognizerServer(engine, ServerSettings(port=0))
        await server.start()          # warms the engine up, then binds server.port
        ...
        await server.stop()           # drain, finish in-flight calls, close the engine
    """

    def __init__(self, engine: Engine, settings: ServerSettings) -> None:
        self.engine = engine
        self.settings = settings
        self.port: int | None = None
        self._health = health.aio.HealthServicer()
        self._server = grpc.aio.server(
            options=channel_options(settings), maximum_concurrent_rpcs=settings.max_concurrent_rpcs
        )
        self.metrics = ServerMetrics(engine)
        self.metrics_port: int | None = None
        servicer = RecognizerServicer(
            engine, self.metrics, first_frame_timeout=settings.first_frame_timeout
        )
        engine.on_health_change(self._model_health_changed)
        pb_grpc.add_RecognizerServicer_to_server(servicer, self._server)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self._server
        )

    @property
    def health_names(self) -> tuple[str, ...]:
        return ("", SERVICE_NAME, *(model.spec.name for model in self.engine.describe()))

    async def start(self) -> None:
        """Warm the models up, listen, and only then report SERVING."""
        await self.engine.start()
        address = f"{self.settings.host}:{self.settings.port}"
        try:
            self.port = self._server.add_insecure_port(address)
        except RuntimeError as error:  # grpc says only "Failed to bind"
            raise StartupError(f"cannot listen on {address}: {error}") from error
        await self._server.start()
        if self.settings.metrics_port is not None:
            self.metrics_port = self.metrics.serve(self.settings.host, self.settings.metrics_port)
            logger.info("metrics on http://%s:%d/metrics", self.settings.host, self.metrics_port)
        for name in self.health_names:
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        logger.info("serving %s on %s:%d", SERVICE_NAME, self.settings.host, self.port)

    async def _model_health_changed(self, model: str, health: Health) -> None:
        await self._health.set(model, SERVING if health.serving else NOT_SERVING)
        overall = SERVING if any(m.serving for m in self.engine.describe()) else NOT_SERVING
        for name in ("", SERVICE_NAME):
            await self._health.set(name, overall)

    async def stop(
        self, drain_delay: float | None = None, *, hurry: asyncio.Event | None = None
    ) -> None:
        """Drain, then stop.

        Health says NOT_SERVING at once, and calls are still served for `drain_delay`
        seconds (ServerSettings.drain_delay by default; until `hurry` is set, if sooner),
        so that load balancers and clients checking health move away before anyone is
        refused. Then new calls get UNAVAILABLE with a reason, not a refused connection
        (the server still accepts connections), and accepted work finishes within the
        grace period; whatever is still running when it ends is cancelled by grpc.
        """
        await self._health.enter_graceful_shutdown()
        delay = self.settings.drain_delay if drain_delay is None else drain_delay
        if delay > 0:
            logger.info("NOT_SERVING; still serving for %.1fs so balancers move away", delay)
            with suppress(TimeoutError):
                await asyncio.wait_for((hurry or asyncio.Event()).wait(), delay)
        grace = self.settings.grace_period
        logger.info("draining; in-flight calls have %.1fs to finish", grace)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        self.engine.drain()
        await self.engine.wait_idle(grace)
        await self._server.stop(max(deadline - loop.time(), 0.0))
        await self.engine.close(max(deadline - loop.time(), CLOSE_AFTER_GRACE_S))
        self.metrics.close()
        logger.info("stopped")
