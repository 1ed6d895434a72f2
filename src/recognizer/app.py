"""The composition root: load models, build the engine and its servers, serve until signalled."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import pickle
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from recognizer import open_files
from recognizer.config import Config, ModelConfig
from recognizer.config.schema import EngineSettings, ServerSettings
from recognizer.engine.backends import resolve_device
from recognizer.engine.backends.prepared import Preparation, load_backend, needs_preparation
from recognizer.engine.engine import Engine, ServedModel
from recognizer.logs import LogFormat
from recognizer.models.repository import versions_of
from recognizer.security.auth import Authenticator
from recognizer.security.policy import Security
from recognizer.security.tokens import CHECK_EVERY_S
from recognizer.service.calls import CallShares
from recognizer.service.heap import trim_after_bursts
from recognizer.service.metrics import ServerMetrics
from recognizer.service.models import ModelManager
from recognizer.transport.server import RecognizerServer

if TYPE_CHECKING:
    from recognizer.http.server import HttpServer

logger = logging.getLogger(__name__)

EXIT_UNHEALTHY = 3  # every model stopped working: restart the process
CLOSE_AFTER_GRACE_S = 2.0  # for the workers to finish their batches once calls are gone


def build_engine(config: Config, security: Security) -> Engine:
    """Load every configured model onto its backend and device (blocking, at start-up)."""
    return Engine(
        load_served_models(config),
        config.engine,
        access=security.access,
        priority_ceiling=security.priority_ceiling,
    )


def load_served_models(config: Config) -> list[ServedModel]:
    """Each configured model's versions, loaded and on the backend that will run them,
    default first.

    A model's own max_batch_size travels in its spec, and caps the engine's batch for it.
    """
    loader = VersionLoader.of(config)
    versions = [
        (version, versioned)
        for model_config in config.models
        for version, versioned in versions_of(model_config).items()
    ]
    return loader.load_all(versions)


@dataclass(frozen=True)
class VersionLoader:
    """Loads model versions onto the backend and device the engine settings choose: the
    cache entries they lack made in a child process first (prepare_in_child). Blocking."""

    engine: EngineSettings
    allow_code: bool = False
    log_level: str = "info"
    log_format: LogFormat = "text"

    @classmethod
    def of(cls, config: Config) -> VersionLoader:
        return cls(
            config.engine,
            allow_code=config.security.allow_code_models,
            log_level=config.log.log_level,
            log_format=config.log.log_format,
        )

    def __call__(self, model_config: ModelConfig, version: int) -> ServedModel:
        """Load one version (service/models.py calls it on a thread)."""
        (served,) = self.load_all([(version, model_config)])
        return served

    def load_all(self, versions: Sequence[tuple[int, ModelConfig]]) -> list[ServedModel]:
        device = resolve_device(self.engine.device)
        prepare_in_child(
            Preparation(
                models=tuple(model_config for _, model_config in versions),
                engine=self.engine,
                device=device,
                allow_code=self.allow_code,
                log_level=self.log_level,
                log_format=self.log_format,
            )
        )
        served = []
        for version, model_config in versions:
            spec, backend = load_backend(
                model_config, self.engine, allow_code=self.allow_code, device=device
            )
            logger.info(
                "loaded %s version %d (%s %s, %d classes, labels in %s, %s) on %s with %s in %s",
                spec.name,
                version,
                spec.source_format,
                spec.architecture or "model",
                spec.num_classes,
                "/".join(spec.labels.languages),
                spec.preprocessing,
                backend.device,
                backend.name,
                backend.precision,
            )
            served.append(ServedModel(spec, backend, version))
        return served


def prepare_in_child(job: Preparation) -> None:
    """Make the cache entries the job's models lack in a child process, so that this one
    never imports PyTorch to export them (its memory would stay with the server). If the
    child fails, the models are loaded here as before, and any error is raised here."""
    missing = [
        model
        for model in job.models
        if needs_preparation(model, job.engine, device=job.device, allow_code=job.allow_code)
    ]
    if not missing:
        return
    names = ", ".join(model.name for model in missing)
    logger.info("preparing %s in a child process, so that this one does not load PyTorch", names)
    child = subprocess.run(
        [sys.executable, "-m", "recognizer.cli.prepare"],
        input=pickle.dumps(dataclasses.replace(job, models=missing)),
        check=False,
    )
    if child.returncode == 1:  # a bug, logged by the child (2: left to the load below)
        logger.warning("preparing %s in a child process failed; loading here instead", names)


class Service:
    """One engine and the servers in front of it: gRPC always, HTTP when --http-port is set.

    The engine is the service's: warmed before any server listens, drained once for all
    of them, closed after they have all stopped. Both servers run on this event loop, share
    the calls the server runs at once (--max-concurrent-rpcs, fairly between callers), and
    each keeps its connections within the process's open-file limit. With auth on, the
    tokens file is looked at once a second while they serve, and calls still open under
    credentials it no longer accepts are ended. After a burst of calls, the C heap's free
    memory is given back to the system (service/heap.py).

    Usage:

        service = Service(engine, ServerSettings(port=0, http_port=0), Security())
        await service.start()
        ...
        await service.stop()          # drain, finish in-flight work, close the engine
    """

    def __init__(
        self,
        engine: Engine,
        settings: ServerSettings,
        security: Security | None = None,
        *,
        models: ModelManager | None = None,
    ) -> None:
        security = security or Security()
        # Without the configuration's models, the admin calls load what their source names.
        models = models or ModelManager(
            engine, (), load=VersionLoader(engine.settings), timeout=settings.grace_period
        )
        ports = 1 if settings.http_port is None else 2
        capped = open_files.connections_per_port(settings.max_connections, ports)
        settings = settings.model_copy(update={"max_connections": capped})
        self.engine = engine
        self.models = models
        self.settings = settings
        self.security = security
        self.metrics = ServerMetrics(engine, tenants=security.authenticator is not None)
        self.metrics_port: int | None = None
        self.shares = CallShares(settings.max_concurrent_rpcs)
        self.grpc = RecognizerServer(
            engine, settings, self.metrics, security, self.shares, models=models
        )
        self.http: HttpServer | None = None
        if settings.http_port is not None:
            # Imported only when asked for: with HTTP off, nothing of it is loaded.
            from recognizer.http.server import HttpServer

            self.http = HttpServer(
                engine, settings, self.metrics, security, self.shares, models=models
            )
        self._revoking: asyncio.Task[None] | None = None
        self._trimming: asyncio.Task[None] | None = None
        self._watching: asyncio.Task[None] | None = None

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
        if self.security.authenticator is not None:
            self._revoking = asyncio.create_task(_end_revoked(self.security.authenticator))
        self._trimming = asyncio.create_task(trim_after_bursts(lambda: self.shares.total))
        if self.settings.watch:
            self._watching = asyncio.create_task(self.models.watch())

    async def stop(
        self, drain_delay: float | None = None, *, hurry: asyncio.Event | None = None
    ) -> None:
        """Drain, then stop.

        Health says NOT_SERVING (gRPC) and 503 (/readyz) at once, and calls are still
        served for `drain_delay` seconds (ServerSettings.drain_delay by default; until
        `hurry` is set, if sooner), so that load balancers and clients checking health
        move away before anyone is refused. Then the servers still accept connections,
        so new calls are refused with a reason (UNAVAILABLE, 503), not a refused
        connection, and accepted work finishes within the grace period; whatever is still
        running when it ends is cancelled.
        """
        await self.grpc.drain()
        self.engine.announce_drain()
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
        await self.models.close()  # no model changes while draining
        await self.engine.wait_idle(grace)
        remaining = max(deadline - loop.time(), 0.0)
        servers = [self.grpc.stop(remaining)]
        if self.http is not None:
            servers.append(self.http.stop(remaining))
        await asyncio.gather(*servers)
        for task in (self._revoking, self._trimming, self._watching):
            if task is not None:
                task.cancel()
        await self.engine.close(max(deadline - loop.time(), CLOSE_AFTER_GRACE_S))
        self.metrics.close()
        logger.info("stopped")


async def _end_revoked(authenticator: Authenticator) -> None:
    """End the calls whose credentials the tokens file no longer accepts, within a second or
    so of its change (the file is looked at once a second)."""
    while True:
        await asyncio.sleep(CHECK_EVERY_S)
        try:
            authenticator.check_held()
        except Exception:  # a bug: logged, and the next look tries again
            logger.exception("cannot check the open calls against the tokens file")


async def serve(
    config: Config,
    security: Security,
    *,
    read_models: Callable[[], Sequence[ModelConfig]] | None = None,
    config_file: Path | None = None,
) -> int:
    """Serve until signalled, then drain gracefully; returns the process's exit status.

    `security` is Security.from_settings(config.security), read before the models load.
    SIGTERM (an orchestrator stopping the replica) drains after --drain-delay, SIGINT
    (Ctrl-C) at once, and a second signal cuts the delay short. SIGHUP reloads the
    models as `read_models` says them now (service/models.py), as --watch does when
    `config_file` or a model's files change. If the watchdog finds every model broken
    for --unhealthy-exit seconds, the server drains at once and EXIT_UNHEALTHY is
    returned, so that a supervisor restarts the process.
    """
    loop = asyncio.get_running_loop()
    signals: list[signal.Signals] = []
    signalled, hurry = asyncio.Event(), asyncio.Event()

    def on_signal(signum: signal.Signals) -> None:
        (hurry if signals else signalled).set()
        signals.append(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the models serve: not fatal then
    engine = build_engine(config, security)
    models = ModelManager(
        engine,
        config.models,
        load=VersionLoader.of(config),
        read_models=read_models,
        config_file=config_file,
        timeout=config.server.grace_period,
        allow_code=config.security.allow_code_models,
    )
    service = Service(engine, config.server, security, models=models)
    await service.start()
    loop.add_signal_handler(signal.SIGHUP, models.reload_soon)
    waits = [asyncio.create_task(event.wait()) for event in (signalled, service.engine.hopeless)]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for wait in waits:
        wait.cancel()
    if not signals:
        await service.stop(drain_delay=0)
        return EXIT_UNHEALTHY
    await service.stop(None if signals[0] == signal.SIGTERM else 0, hurry=hurry)
    return 0
