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
from recognizer.security.policy import Security
from recognizer.transport.server import RecognizerServer

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


async def serve(config: Config, security: Security) -> None:
    """Serve until SIGTERM or SIGINT, then drain gracefully and return; `security` is
    Security.from_settings(config.security), read before the models load."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server = RecognizerServer(build_engine(config, security), config.server, security)
    await server.start()
    await stop.wait()
    await server.stop()
