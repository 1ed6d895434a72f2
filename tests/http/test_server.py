"""uvicorn on the service's loop: it binds like gRPC does and leaves the signals alone."""

from __future__ import annotations

import asyncio
import signal
import socket
from collections.abc import AsyncIterator

import httpx
import pytest

from fakes import colour_model
from recognizer.config.schema import EngineSettings, ServerSettings
from recognizer.engine.engine import Engine
from recognizer.errors import StartupError
from recognizer.http.server import HttpServer
from recognizer.service.metrics import ServerMetrics


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    engine = Engine([colour_model()], EngineSettings())
    await engine.start()
    yield engine
    await engine.close()


async def test_a_busy_port_is_a_startup_error(engine: Engine) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = HttpServer(engine, ServerSettings(http_port=port), ServerMetrics(engine))
        with pytest.raises(StartupError, match=f"cannot listen for HTTP on 127.0.0.1:{port}"):
            await server.start()


async def test_it_serves_on_this_loop_and_leaves_the_signal_handlers_alone(engine: Engine) -> None:
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    server = HttpServer(engine, ServerSettings(http_port=0), ServerMetrics(engine))
    await server.start()
    try:
        assert {signum: signal.getsignal(signum) for signum in before} == before
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            assert (await client.get("/v1/models")).json()["models"][0]["name"] == "colours"
    finally:
        await server.stop(1.0)
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{server.port}/healthz")
    serving = [t for t in asyncio.all_tasks() if "Server.serve" in t.get_coro().__qualname__]  # type: ignore[union-attr]
    assert not serving
