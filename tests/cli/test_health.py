"""`recognizer health` against a real server: the exit status a container health check reads."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from fakes import colour_model
from support import ServerThread


def health(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recognizer", "health", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def running() -> Iterator[ServerThread]:
    with ServerThread([colour_model("colours")]) as server:
        yield server


def test_a_serving_server_and_model_exit_zero(running: ServerThread) -> None:
    for service in ("", "colours", "recognizer.v1.Recognizer"):
        result = health("--server", running.address, "--service", service)
        assert (result.returncode, result.stdout) == (0, "SERVING\n"), result.stderr


def test_an_unknown_service_exits_one_with_the_code(running: ServerThread) -> None:
    result = health("--server", running.address, "--service", "no-such-model")
    assert result.returncode == 1
    assert "NOT_FOUND" in result.stderr


def test_a_server_that_is_not_there_exits_one() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, never listening: connections are refused
        result = health("--server", f"127.0.0.1:{port}", "--timeout", "5")
    assert result.returncode == 1
    assert "UNAVAILABLE" in result.stderr
