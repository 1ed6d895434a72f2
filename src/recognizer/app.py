"""The composition root: load models, build the engine and server, serve until signalled."""

from __future__ import annotations

import asyncio
import logging
import signal

from recognizer.config import Config
from recognizer.engine import sizing
from recognizer.engine.backends import resolve_device
from recognizer.engine.backends.prepared import load_backend
from recognizer.engine.engine import Engine, ServedModel
from recognizer.transport.server import RecognizerServer

logger = logging.getLogger(__name__)


def build_engine(config: Config) -> Engine:
    """Load every configured model onto its backend and device (blocking, at start-up)."""
    return Engine(load_served_models(config), config.engine)


def load_served_models(config: Config) -> list[ServedModel]:
    """Each configured model, loaded and on the backend that will run it, default first.

    A model's own max_batch_size travels in its spec, and caps the engine's batch for it.
    """
    settings = config.engine
    device = resolve_device(settings.device)
    device_type = device.split(":")[0]
    served = []
    for model_config in config.models:
        spec, backend = load_backend(
            model_config,
            settings,
            device=device,
            workers=sizing.inference_workers(settings, device_type),
            threads_per_worker=sizing.intra_op_threads(settings, device_type),
        )
        logger.info(
            "loaded %s (%s %s, %d classes, labels in %s, %s) on %s with %s in %s",
            spec.name,
            spec.source_format,
            spec.architecture or "model",
            spec.num_classes,
            "/".join(spec.labels.languages),
            spec.preprocessing,
            backend.device,
            backend.name,
            backend.precision,
        )
        served.append(ServedModel(spec, backend))
    return served


async def serve(config: Config) -> None:
    """Serve until SIGTERM or SIGINT, then drain gracefully and return."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = RecognizerServer(build_engine(config), config.server)
    await server.start()
    await stop.wait()
    await server.stop()
