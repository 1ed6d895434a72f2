"""The composition root: the HTTP server is built only when asked for, and costs nothing else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent

# Serve the tiny model with gRPC alone, then with HTTP too; after each, name the HTTP
# modules loaded so far (a fresh process, so that no other test has loaded them).
PROGRAM = """
import asyncio, json, sys
from fakes import colour_model
from recognizer.app import Service
from recognizer.config.schema import EngineSettings, ServerSettings
from recognizer.engine.engine import Engine

async def serve(http_port):
    engine = Engine([colour_model()], EngineSettings())
    service = Service(engine, ServerSettings(port=0, http_port=http_port))
    await service.start()
    await service.stop()

def http_modules():
    roots = ("uvicorn", "starlette", "websockets", "multipart", "recognizer.http")
    return sorted(name for name in sys.modules if name.startswith(roots))

asyncio.run(serve(None))
off = http_modules()
asyncio.run(serve(0))
print(json.dumps({"off": off, "on": http_modules()}))
"""


def test_with_http_off_nothing_of_it_is_loaded() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent / "src"), str(TESTS)])},
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert loaded["off"] == []
    assert {"uvicorn", "starlette", "recognizer.http.server"} <= set(loaded["on"])
