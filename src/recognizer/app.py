"""The composition root: load models, build the engine and server, serve until signalled."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from recognizer.config import Config
from recognizer.engine.backends import create_backend, resolve_device
from recognizer.engine.engine import Engine, ServedModel
from recognizer.models.loading import load_model
from recognizer.transport.server import RecognizerServer

logger = logging.getLogger(__name__)


def build_engine(config: Config) -> Engine:
    """Load every configured model onto its backend and device (blocking, at start-up)."""
    settings = config.engine
    device = resolve_device(settings.device)
    # Each worker's calls get an equal share of the cores (ONNX Runtime, PyTorch on the CPU).
    threads = max(1, (os.cpu_count() or 1) // settings.workers_for(device.type))
    served = []
    for source in config.models:
        model = load_model(source)
        backend = create_backend(model, device=device, kind=settings.backend, threads=threads)
        logger.info(
            "loaded %s (%s, %d classes) on %s with %s",
            model.spec.name,
            model.spec.architecture,
            model.spec.num_classes,
            backend.device,
            backend.name,
        )
        served.append(ServedModel(model.spec, backend))
    return Engine(served, settings)


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
