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


# Load a model on a cold cache, then on the warm one; say whether this process imported
# PyTorch, and what the log said.
COLD_START = """
import json, logging, sys
from recognizer.app import load_served_models
from recognizer.config.sources import load_config

logging.basicConfig(level="INFO", stream=sys.stderr)
config = load_config({"model": [sys.argv[1]], "model_cache_dir": sys.argv[2], "device": "cpu"}, {})
(served,) = load_served_models(config)
print(json.dumps({"torch": "torch" in sys.modules, "backend": served.backend.name}))
"""


def test_a_cold_cache_is_filled_by_a_child_so_the_server_never_imports_torch(
    tmp_path: Path,
) -> None:
    from model_files import timm_safetensors

    built = timm_safetensors(tmp_path / "convnext")
    model = f"name=small,path={built.path},architecture=timm/test_convnext,resize=183,crop=160"
    cache = tmp_path / "cache"

    def start() -> tuple[dict[str, object], str]:
        result = subprocess.run(
            [sys.executable, "-c", COLD_START, model, str(cache)],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=TESTS,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])},
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout), result.stderr

    cold, cold_log = start()
    assert "preparing small in a child process" in cold_log
    assert "prepared model cached in" in cold_log  # by the child
    assert cold == {"torch": False, "backend": "openvino"}
    warm, warm_log = start()
    assert "child process" not in warm_log
    assert warm == {"torch": False, "backend": "openvino"}
