"""Test support: real photos with their expected classes, and real servers on loopback."""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import grpc
import matplotlib
import skimage
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from recognizer.app import Service
from recognizer.config.schema import EngineSettings, SecuritySettings, ServerSettings
from recognizer.engine.engine import Engine, ServedModel
from recognizer.security.policy import Security
from recognizer.service.models import ModelManager

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
M = TypeVar("M", bound=Message)

SERVING = re.compile(r"serving recognizer\.v1\.Recognizer on [\d.]+:(\d+)")


def dev_tool(name: str) -> str:
    """A command-line tool the dev extra installs beside this Python (grpcurl, buf)."""
    path = shutil.which(name, path=os.pathsep.join([os.path.dirname(sys.executable), os.defpath]))
    assert path, f"{name} is not installed: run `make install`"
    return path


def run_script(script: str, cwd: Path, *, timeout: float = 300, **env: str) -> str:
    """Run a bash script (-euo pipefail) as a reader of the docs would, with this checkout's
    tools on the PATH (`recognizer`, `python`, grpcurl); a failure fails the test with its
    output. Returns what it printed."""
    tools = os.pathsep.join([os.path.dirname(sys.executable), os.environ["PATH"]])
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PATH": tools, **env},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def error_details(error: grpc.RpcError, kind: type[M]) -> list[M]:
    """The google.rpc details of one type that a failed call carries."""
    status = rpc_status.from_call(error)
    found = []
    for packed in status.details if status else ():
        if packed.Is(kind.DESCRIPTOR):
            message = kind()
            packed.Unpack(message)
            found.append(message)
    return found


def error_reason(error: grpc.RpcError) -> str:
    """The ErrorInfo reason of a failed call (every status this server sends has one)."""
    (info,) = error_details(error, error_details_pb2.ErrorInfo)
    return info.reason


def hatch_build() -> ModuleType:
    """The build hook module (hatch_build.py): it generates the stubs and buf's image."""
    path = BENCHMARKS.parent / "hatch_build.py"
    spec = importlib.util.spec_from_file_location("hatch_build", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    """Return once `condition` holds; fail if it has not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true"
        time.sleep(0.02)


def load_script(name: str) -> ModuleType:
    """Import benchmarks/<name>.py under a name of its own (tests/images.py exists too), with
    the scripts beside it importable, as when it runs."""
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    return module


class ServerThread:
    """A real service (gRPC, and HTTP when asked) on free loopback ports, running on its own
    event loop thread.

    Keyword arguments are engine settings; `server` holds further ServerSettings
    (reflection=False, ...; no drain delay and port 0 unless given). `security` turns on
    TLS and auth as `recognizer serve` would. `manager` builds the service's ModelManager
    (the admin calls' loader) from its engine.

    Usage:

        with ServerThread([model], max_batch_size=4, http=True) as running:
            Client(running.address).classify(...)
            httpx.get(running.http_url + "/v1/models")
    """

    def __init__(
        self,
        models: Sequence[ServedModel],
        *,
        grace_period: float = 5.0,
        metrics_port: int | None = None,
        http: bool = False,
        max_message_mb: float = 32.0,
        security: SecuritySettings | None = None,
        server: Mapping[str, Any] | None = None,
        manager: Callable[[Engine], ModelManager] | None = None,
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
                "http_port": 0 if http else None,
                "max_message_mb": max_message_mb,
                "drain_delay": 0,
                **(server or {}),
            }
        )
        self._security = Security.from_settings(security or SecuritySettings())
        self._manager = manager
        self.server: Service

    @property
    def address(self) -> str:
        host = self._server_settings.host
        return f"{'127.0.0.1' if host == 'localhost' else host}:{self.server.grpc.port}"

    @property
    def http_url(self) -> str:
        """http://127.0.0.1:PORT (https://localhost:PORT, the name the tests' certificates
        carry, when it serves TLS), with no slash at the end."""
        assert self.server.http is not None, "start the ServerThread with http=True"
        if self._security.tls:
            return f"https://localhost:{self.server.http.port}"
        return f"http://127.0.0.1:{self.server.http.port}"

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

        async def build() -> Service:
            engine = Engine(
                self._models,
                self._engine_settings,
                access=self._security.access,
                priority_ceiling=self._security.priority_ceiling,
            )
            models = self._manager(engine) if self._manager is not None else None
            return Service(engine, self._server_settings, self._security, models=models)

        self.server = self.run(build())
        self._models = ()  # the engine's now: a retired version is freed as in a server
        self.run(self.server.start())
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self.engine.draining:
            self.run(self.server.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


class ServeProcess:
    """`python -m recognizer serve` on a free port; its log is collected as it runs.

    Without a drain delay unless given (`--drain-delay`), so that SIGTERM stops it at once.
    """

    def __init__(
        self, *args: str, env: dict[str, str] | None = None, program: Sequence[str] = ()
    ) -> None:
        command = [*(program or [sys.executable, "-m", "recognizer", "serve"]), "--port", "0"]
        self.process = subprocess.Popen(
            [*command, *args],
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "RECOGNIZER_DRAIN_DELAY": "0", **(env or {})},
        )
        self.log: list[str] = []
        self._port: int | None = None
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()

    def _read_log(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.log.append(line)
            if match := SERVING.search(line):
                self._port = int(match.group(1))
                self._ready.set()
        self._ready.set()

    @property
    def address(self) -> str:
        assert self._ready.wait(120) and self._port, "".join(self.log)
        return f"127.0.0.1:{self._port}"

    def stop(self) -> int:
        """SIGTERM the server and wait for it; returns its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.wait()

    def wait(self) -> int:
        try:
            status = self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError("the server did not exit:\n" + "".join(self.log[-40:])) from None
        self._reader.join(timeout=10)
        assert self.process.stderr is not None
        self.process.stderr.close()
        return status
