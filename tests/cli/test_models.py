"""`recognizer serve` changing its models as a process: on SIGHUP, with --watch, and through
`recognizer models`, run as real processes against a config file."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import grpc

from fakes import solid_png
from onnx_files import colour_onnx
from recognizer.client import Client
from support import ServeProcess, wait_until

RED = solid_png((250, 10, 10))
SWAPPED = (1, 2, 0)  # a red image is "blue"


def answer(address: str, model: str = "") -> tuple[int, str]:
    with Client(address) as client:
        response = client.classify(RED, language="en", model=model)
    return response.model_version, response.labels[0].label


def config_file(tmp_path: Path, *models: tuple[str, Path]) -> Path:
    path = tmp_path / "recognizer.toml"
    path.write_text(
        "".join(f'[[models]]\nname = "{name}"\npath = "{file}"\n\n' for name, file in models)
    )
    return path


def models(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recognizer", "models", *args, "--server", address],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_sighup_reloads_the_config_and_the_models_command_changes_them(tmp_path: Path) -> None:
    colours = colour_onnx(tmp_path / "colours")
    config = config_file(tmp_path, ("colours", colours))
    server = ServeProcess("--config", str(config), "--admin")
    stop = threading.Event()
    failures: list[grpc.RpcError] = []

    def steady_load() -> None:  # the default model, all along
        with Client(server.address) as client:
            while not stop.is_set():
                try:
                    client.classify(RED)
                except grpc.RpcError as error:
                    failures.append(error)

    load = threading.Thread(target=steady_load)
    try:
        address = server.address
        assert answer(address) == (1, "red")
        load.start()
        colour_onnx(tmp_path / "colours", order=SWAPPED)
        server.process.send_signal(signal.SIGHUP)
        wait_until(lambda: answer(address) == (2, "blue"), timeout=60)

        extra = colour_onnx(tmp_path / "extra")
        config_file(tmp_path, ("colours", colours), ("extra", extra))
        reloaded = models(address, "reload")
        assert reloaded.returncode == 0, reloaded.stderr
        assert reloaded.stdout.split("\t")[:3] == ["extra", "1", "loaded\n"]
        assert answer(address, "extra") == (1, "red")
        listed = models(address, "list")
        assert [line.split("\t")[:3] for line in listed.stdout.splitlines()] == [
            ["colours", "2", "ready"],
            ["extra", "1", "ready"],
        ]
        unloaded = models(address, "unload", "extra")
        assert unloaded.returncode == 0, unloaded.stderr
        refused = models(address, "unload", "colours")
        assert refused.returncode == 1
        assert "FAILED_PRECONDITION" in refused.stderr and "default model" in refused.stderr
        stop.set()
        load.join(timeout=30)
        assert failures == []
    finally:
        stop.set()
        assert server.stop() == 0
    assert "reload: colours version 2 reloaded" in "".join(server.log)


def test_watch_reloads_a_model_whose_file_changes(tmp_path: Path) -> None:
    colours = colour_onnx(tmp_path / "colours")
    server = ServeProcess("--config", str(config_file(tmp_path, ("colours", colours))), "--watch")
    try:
        assert answer(server.address) == (1, "red")
        colour_onnx(tmp_path / "colours", order=SWAPPED)
        wait_until(lambda: answer(server.address) == (2, "blue"), timeout=60)
        # Without --admin and with auth off, nobody may call the admin service.
        refused = models(server.address, "reload")
        assert refused.returncode == 1 and "PERMISSION_DENIED" in refused.stderr
    finally:
        assert server.stop() == 0
