"""The composition root: load models, build the engine and its servers, serve until signalled."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import TYPE_CHECKING

from recognizer.config import Config
from recognizer.config.schema import ServerSettings
from recognizer.engine import sizing
from recognizer.engine.backends import create_backend, resolve_device
from recognizer.engine.engine import Engine, ServedModel
from recognizer.models.loading import load_model
from recognizer.security.policy import Security
from recognizer.transport.metrics import ServerMetrics
from recognizer.transport.server import RecognizerServer

if TYPE_CHECKING:
    from recognizer.http.server import HttpServer

logger = logging.getLogger(__name__)


def build_engine(config: Config, security: Security) -> Engine:
    """Load every configured model onto its backend and device (blocking, at start-up)."""
    return Engine(load_served_models(config), config.engine, access=security.access)


def load_served_models(config: Config) -> list[ServedModel]:
    """Each configured model, loaded and on the backend that will run it, default first.

    A model's own max_batch_size travels in its spec, and caps the engine's batch for it.
    """
    settings = config.engine
    device = resolve_device(settings.device)
    served = []
    for model_config in config.models:
        model = load_model(model_config, allow_code=config.security.allow_code_models)
        backend = create_backend(
            model,
            device=device,
            kind=settings.backend,
            workers=sizing.inference_workers(settings, device.type),
            threads_per_worker=sizing.intra_op_threads(settings, device.type),
            precision=settings.precision,
        )
        spec = model.spec
        logger.info(
            "loaded %s (%s %s, %d classes, labels in %s, %s) on %s with %s",
            spec.name,
            spec.source_format,
            spec.architecture or "model",
            spec.num_classes,
            "/".join(spec.labels.languages),
            spec.preprocessing,
            backend.device,
            backend.name,
        )
        served.append(ServedModel(spec, backend))
    return served


class Service:
    """One engine and the servers in front of it: gRPC always, HTTP when --http-port is set.

    The engine is the service's: warmed before any server listens, drained once for all
    of them, closed after they have all stopped. Both servers run on this event loop.

    Usage:

        service = Service(engine, ServerSettings(port=0, http_port=0), Security())
        await service.start()
        ...
        await service.stop()          # drain, finish in-flight work, close the engine
    """

    def __init__(
        self, engine: Engine, settings: ServerSettings, security: Security | None = None
    ) -> None:
        security = security or Security()
        self.engine = engine
        self.settings = settings
        self.metrics = ServerMetrics(engine, tenants=security.authenticator is not None)
        self.metrics_port: int | None = None
        self.grpc = RecognizerServer(engine, settings, self.metrics, security)
        self.http: HttpServer | None = None
        if settings.http_port is not None:
            # Imported only when asked for: with HTTP off, nothing of it is loaded.
            from recognizer.http.server import HttpServer

            self.http = HttpServer(engine, settings, self.metrics, security)

    async def start(self) -> None:
        """Warm the models up, then listen: each server reports ready once it listens."""
        await self.engine.start()
        if self.http is not None:
            await self.http.start()
        await self.grpc.start()
        if self.settings.metrics_port is not None:
            host = self.settings.metrics_host
            self.metrics_port = self.metrics.serve(host, self.settings.metrics_port)
            logger.info("metrics on http://%s:%d/metrics", host, self.metrics_port)

    async def stop(self) -> None:
        """Drain, then stop: the grace period covers both.

        While draining, the servers still accept connections, so health checks see
        NOT_SERVING (gRPC) or 503 (/readyz) and new calls are refused with a reason
        (UNAVAILABLE, 503), not a refused connection; accepted work finishes. Whatever
        is still running when the grace period ends is cancelled.
        """
        grace = self.settings.grace_period
        logger.info("draining; in-flight calls have %.1fs to finish", grace)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        await self.grpc.drain()
        self.engine.drain()
        await self.engine.wait_idle(grace)
        remaining = max(deadline - loop.time(), 0.0)
        servers = [self.grpc.stop(remaining)]
        if self.http is not None:
            servers.append(self.http.stop(remaining))
        await asyncio.gather(*servers)
        await self.engine.close()
        self.metrics.close()
        logger.info("stopped")


async def serve(config: Config, security: Security) -> None:
    """Serve until SIGTERM or SIGINT, then drain gracefully and return; `security` is
    Security.from_settings(config.security), read before the models load."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    service = Service(build_engine(config, security), config.server, security)
    await service.start()
    await stop.wait()
    await service.stop()
