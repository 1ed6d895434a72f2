"""The composition root: load models, build the engine and server, serve until signalled."""

from __future__ import annotations

import asyncio
import logging
import signal

from recognizer.config import Config
from recognizer.engine import sizing
from recognizer.engine.backends import create_backend, resolve_device
from recognizer.engine.engine import Engine, ServedModel
from recognizer.models.loading import load_model
from recognizer.transport.server import RecognizerServer

logger = logging.getLogger(__name__)

EXIT_UNHEALTHY = 3  # every model stopped working: restart the process


def build_engine(config: Config) -> Engine:
    """Load every configured model onto its backend and device (blocking, at start-up)."""
    return Engine(load_served_models(config), config.engine)


def load_served_models(config: Config) -> list[ServedModel]:
    """Each configured model, loaded and on the backend that will run it, default first.

    A model's own max_batch_size travels in its spec, and caps the engine's batch for it.
    """
    settings = config.engine
    device = resolve_device(settings.device)
    served = []
    for model_config in config.models:
        model = load_model(model_config)
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


async def serve(config: Config) -> int:
    """Serve until signalled, then drain gracefully; returns the process's exit status.

    SIGTERM (an orchestrator stopping the replica) drains after --drain-delay, SIGINT
    (Ctrl-C) at once, and a second signal cuts the delay short. If the watchdog finds
    every model broken for --unhealthy-exit seconds, the server drains at once and
    EXIT_UNHEALTHY is returned, so that a supervisor restarts the process.
    """
    loop = asyncio.get_running_loop()
    signals: list[signal.Signals] = []
    signalled, hurry = asyncio.Event(), asyncio.Event()

    def on_signal(signum: signal.Signals) -> None:
        (hurry if signals else signalled).set()
        signals.append(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    server = RecognizerServer(build_engine(config), config.server)
    await server.start()
    waits = [asyncio.create_task(event.wait()) for event in (signalled, server.engine.hopeless)]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for wait in waits:
        wait.cancel()
    if not signals:
        await server.stop(drain_delay=0)
        return EXIT_UNHEALTHY
    await server.stop(None if signals[0] == signal.SIGTERM else 0, hurry=hurry)
    return 0
