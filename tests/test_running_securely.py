"""README's "Running it securely", run as written: its OpenSSL commands make the certificates,
its tokens file and `serve` flags configure a real server, and its grpcurl calls reach it."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from fakes import colour_model
from recognizer.cli.main import build_parser
from recognizer.config.sources import load_config
from support import PHOTOS, ServerThread, dev_tool

README = Path(__file__).parents[1] / "README.md"


def shell_block(heading: str) -> str:
    """The first ```sh block after a heading of README.md."""
    text = README.read_text(encoding="utf-8")
    begin = text.index("```sh\n", text.index(heading)) + len("```sh\n")
    return text[begin : text.index("```", begin)]


def bash(script: str, cwd: Path, **env: str) -> str:
    path = os.pathsep.join([os.path.dirname(dev_tool("grpcurl")), os.environ["PATH"]])
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": path, **env},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the README's commands need openssl")
def test_the_tls_and_token_setup_works_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bash(shell_block("### Certificates"), tmp_path)
    *prepare, serve = shell_block("### TLS and tokens").strip().splitlines()
    token = bash("\n".join([*prepare, 'echo "$TOKEN"']), tmp_path).strip()
    assert (tmp_path / "tokens.txt").read_text(encoding="utf-8") == f"shop:{token}\n"

    # The serve line's flags, read as `recognizer serve` reads them; on loopback, not 0.0.0.0.
    argv = shlex.split(serve.replace("--host 0.0.0.0", "--host 127.0.0.1"))
    assert argv[:2] == ["recognizer", "serve"]
    monkeypatch.chdir(tmp_path)  # its files are named relative to where it runs
    config = load_config(vars(build_parser().parse_args(argv[1:])), {})
    assert config.security.tls and config.security.auth
    shutil.copy(PHOTOS["hopper"], tmp_path / "photo.jpg")
    with ServerThread([colour_model()], security=config.security) as running:
        calls = shell_block("Every call now needs")
        port = running.server.grpc.port
        output = bash(calls.replace("localhost:50051", f"localhost:{port}"), tmp_path, TOKEN=token)
    listed, answer = output.split("{", 1)
    assert "recognizer.v1.Recognizer" in listed.split()
    assert json.loads("{" + answer)["labels"]
