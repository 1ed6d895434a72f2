"""The composition root: load models, build the engine and server, serve until signalled."""

from __future__ import annotations

import asyncio
import logging
import signal

from recognizer.config import Config
from recognizer.engine.backends import TorchBackend, resolve_device
from recognizer.engine.engine import Engine, ServedModel
from recognizer.models.loading import load_model
from recognizer.transport.server import RecognizerServer

logger = logging.getLogger(__name__)


def build_engine(config: Config) -> Engine:
    """Load every configured model onto the configured device (blocking, at start-up)."""
    device = resolve_device(config.engine.device)
    served = []
    for source in config.models:
        model = load_model(source)
        backend = TorchBackend(model, device=device, half=device.type == "cuda")
        logger.info(
            "loaded %s (%s, %d classes) on %s",
            model.spec.name,
            model.spec.architecture,
            model.spec.num_classes,
            backend.device,
        )
        served.append(ServedModel(model.spec, backend))
    return Engine(served, config.engine)


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
