"""Test support: real photos with their expected classes, and real servers on loopback."""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import os
import shutil
import sys
import threading
from collections.abc import Coroutine, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import matplotlib
import skimage

from recognizer.config.schema import EngineSettings, ServerSettings
from recognizer.engine.engine import Engine, ServedModel
from recognizer.transport.server import RecognizerServer

SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
BENCHMARKS = Path(__file__).parents[1] / "benchmarks"
MATPLOTLIB_DATA = Path(matplotlib.get_data_path()) / "sample_data"

# Real photos shipped by well-known packages, with the ImageNet classes they show.
PHOTOS = {
    "cat": SKIMAGE_DATA / "chelsea.png",  # a tabby cat
    "coffee": SKIMAGE_DATA / "coffee.png",  # a cup of espresso
    "camera": SKIMAGE_DATA / "camera.png",  # grayscale: a photographer at a tripod
    "motorcycle": SKIMAGE_DATA / "motorcycle_left.png",  # a motorbike
    "hopper": MATPLOTLIB_DATA / "grace_hopper.jpg",  # Grace Hopper in uniform
}
CAT_CLASSES = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
ESPRESSO, TRIPOD, MOPED, MILITARY_UNIFORM = 967, 872, 665, 652

T = TypeVar("T")


def dev_tool(name: str) -> str:
    """A command-line tool the dev extra installs beside this Python (grpcurl, buf)."""
    path = shutil.which(name, path=os.pathsep.join([os.path.dirname(sys.executable), os.defpath]))
    assert path, f"{name} is not installed: run `make install`"
    return path


def load_script(name: str) -> ModuleType:
    """Import benchmarks/<name>.py under a name of its own (tests/images.py exists too)."""
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


class ServerThread:
    """A real RecognizerServer on a free loopback port, running on its own event loop thread.

    Keyword arguments are engine settings; `server` holds server settings (no drain delay
    unless given, and port 0 unless given).

    Usage:

        with ServerThread([model], max_batch_size=4) as running:
            Client(running.address).classify(...)
    """

    def __init__(
        self,
        models: Sequence[ServedModel],
        *,
        grace_period: float = 5.0,
        metrics_port: int | None = None,
        server: Mapping[str, Any] | None = None,
        **engine: Any,
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._models = models
        self._engine_settings = EngineSettings(**engine)
        self._server_settings = ServerSettings(
            **{
                "port": 0,
                "grace_period": grace_period,
                "metrics_port": metrics_port,
                "drain_delay": 0,
                **(server or {}),
            }
        )
        self.server: RecognizerServer

    @property
    def address(self) -> str:
        host = self._server_settings.host
        return f"{'127.0.0.1' if host == 'localhost' else host}:{self.server.port}"

    @property
    def engine(self) -> Engine:
        return self.server.engine

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        return self.submit(coroutine).result(timeout=120)

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run a coroutine on the server's loop without waiting."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def __enter__(self) -> ServerThread:
        self._thread.start()

        async def build() -> RecognizerServer:
            return RecognizerServer(
                Engine(self._models, self._engine_settings), self._server_settings
            )

        self.server = self.run(build())
        self.run(self.server.start())
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self.engine.draining:
            self.run(self.server.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
