"""docs/security.md, run as written: its OpenSSL commands make the certificates, its tokens
file and `serve` flags configure a real server, and its grpcurl calls, `recognizer` commands
and example client reach it, over TLS with a token and over mTLS (only the address changed)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from doc_blocks import ROOT, command_block
from fakes import colour_model
from recognizer.cli.main import build_parser
from recognizer.config.schema import SecuritySettings
from recognizer.config.sources import load_config
from support import PHOTOS, ServerThread, dev_tool, run_script
from videos import solid_video

PAGE = "docs/security.md"

pytestmark = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="the page's commands need openssl"
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the page's certificates are made, with the files its commands name besides."""
    folder = tmp_path_factory.mktemp("secure")
    run_script(command_block(PAGE, "Certificates"), folder)
    shutil.copy(PHOTOS["hopper"], folder / "photo.jpg")
    (folder / "bench-images").mkdir()
    for name in ("hopper", "coffee"):
        shutil.copy(PHOTOS[name], folder / "bench-images" / PHOTOS[name].name)
    solid_video(folder / "clip.mp4", [(200, 0, 0), (0, 200, 0)] * 5)
    (folder / "clients").symlink_to(ROOT / "clients")
    return folder


def test_the_tls_and_token_setup_works_as_written(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    *prepare, serve = command_block(PAGE, "TLS and tokens").strip().splitlines()
    token = run_script("\n".join([*prepare, 'echo "$TOKEN"']), folder).strip()
    assert (folder / "tokens.txt").read_text(encoding="utf-8") == f"shop:{token}\n"

    # The serve line's flags, read as `recognizer serve` reads them; on loopback, not 0.0.0.0.
    argv = shlex.split(serve.replace("--host 0.0.0.0", "--host 127.0.0.1"))
    assert argv[:2] == ["recognizer", "serve"]
    monkeypatch.chdir(folder)  # its files are named relative to where it runs
    config = load_config(vars(build_parser().parse_args(argv[1:])), {})
    assert config.security.tls and config.security.auth
    with ServerThread([colour_model()], security=config.security) as running:
        port = running.server.grpc.port
        calls = command_block(PAGE, "TLS and tokens", 1)
        output = run_script(
            calls.replace("localhost:50051", f"localhost:{port}"), folder, TOKEN=token
        )
        listed, answer = output.split("{", 1)
        assert "recognizer.v1.Recognizer" in listed.split()
        assert json.loads("{" + answer)["labels"]

        # recognizer classify, stream and bench, and the example client, by the variables.
        clients = command_block(PAGE, "TLS and tokens", 3)
        assert clients.count("recognizer.internal:50051") == 4
        output = run_script(
            clients.replace("recognizer.internal:50051", f"localhost:{port}"), folder, TOKEN=token
        )
    assert "photo.jpg  (colour" in output
    assert "status   OK" in output  # the stream's summary
    assert " OK, 0 errors" in output and "classifications/s" in output  # the bench's report


def test_mtls_works_as_written(folder: Path) -> None:
    token = "N3w0neF0rR0tat1onXyZ7qT"
    (folder / "mtls-tokens.txt").write_text(f"shop:{token}\n", encoding="utf-8")
    security = SecuritySettings(
        tls_cert=folder / "server.pem",
        tls_key=folder / "server.key",
        tls_client_ca=folder / "ca.pem",
        tokens_file=folder / "mtls-tokens.txt",
    )
    with ServerThread([colour_model()], security=security) as running:
        address = f"localhost:{running.server.grpc.port}"
        script = command_block(PAGE, "mTLS").replace("localhost:50051", address)
        assert "--cert shop.pem --key shop.key" in script
        # recognizer classify dials the default address: RECOGNIZER_SERVER says which.
        output = run_script(script, folder, TOKEN=token, RECOGNIZER_SERVER=address)
        # Without the client certificate the handshake is refused.
        anonymous = script.replace(" -cert shop.pem -key shop.key", "").splitlines()[0]
        refused = subprocess.run(
            ["bash", "-c", anonymous.replace("grpcurl", dev_tool("grpcurl"), 1)],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "TOKEN": token},
        )
    assert "recognizer.v1.Recognizer" in output.split()
    assert "photo.jpg  (colour" in output
    assert refused.returncode != 0
