"""The curl examples of the README and docs/security.md, run as written (only the port
changed) against real servers: plaintext, then over TLS with a token and over mTLS."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from certificates import Pki
from doc_blocks import commands
from recognizer.config.schema import SecuritySettings
from recognizer.engine.backends.torch_backend import TorchBackend
from recognizer.engine.engine import ServedModel
from recognizer.models.spec import LoadedModel
from support import ESPRESSO, PHOTOS, ServerThread

TOKEN = "q9Xc1kF0b7WvN2yH4tLm8a"

COMMANDS = commands("README.md", "curl")
OVER_TLS = commands("docs/security.md", "TLS and tokens", 2)
OVER_MTLS = commands("docs/security.md", "mTLS", 1)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Path:
    """A folder holding photo.jpg, a cup of espresso, and the files the secure commands
    name: ca.pem, and shop.pem with shop.key (a client certificate)."""
    folder = tmp_path_factory.mktemp("curl")
    buffer = io.BytesIO()
    Image.open(PHOTOS["coffee"]).convert("RGB").save(buffer, "JPEG", quality=90)
    (folder / "photo.jpg").write_bytes(buffer.getvalue())
    shutil.copy(pki.ca, folder / "ca.pem")
    shutil.copy(pki.client[0], folder / "shop.pem")
    shutil.copy(pki.client[1], folder / "shop.key")
    (folder / "tokens.txt").write_text(f"shop:{TOKEN}\n", encoding="utf-8")
    return folder


def secured(folder: Path, pki: Pki, loaded: LoadedModel, **more: Any) -> ServerThread:
    """The default model behind TLS and the tokens file, as docs/security.md's serve line sets
    it up."""
    security = SecuritySettings(
        tls_cert=pki.server[0], tls_key=pki.server[1], tokens_file=folder / "tokens.txt", **more
    )
    model = ServedModel(loaded.spec, TorchBackend(loaded, device=torch.device("cpu")))
    return ServerThread([model], security=security, http=True)


@pytest.fixture(scope="module")
def over_tls(folder: Path, pki: Pki, default_loaded: LoadedModel) -> Iterator[ServerThread]:
    with secured(folder, pki, default_loaded) as running:
        yield running


@pytest.fixture(scope="module")
def over_mtls(folder: Path, pki: Pki, default_loaded: LoadedModel) -> Iterator[ServerThread]:
    with secured(folder, pki, default_loaded, tls_client_ca=pki.ca) as running:
        yield running


def test_the_readme_has_curl_examples_for_each_way_to_send_an_image() -> None:
    assert len(COMMANDS) >= 5
    assert any("--data-binary @photo.jpg" in c for c in COMMANDS)
    assert any("-F image=@photo.jpg" in c for c in COMMANDS)
    assert any("application/json" in c for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_readme_curl_example_works_as_written(
    default_server: ServerThread, folder: Path, command: str
) -> None:
    port = default_server.http_url.rpartition(":")[2]
    check(command, run(command.replace("localhost:8080", f"127.0.0.1:{port}"), folder))


def test_the_readme_shows_curl_over_tls_with_a_token_and_over_mtls() -> None:
    assert all("--cacert ca.pem" in c and "https://localhost:8080/" in c for c in OVER_TLS)
    assert any('-H "Authorization: Bearer $TOKEN"' in c for c in OVER_TLS)
    assert all("--cert shop.pem --key shop.key" in c for c in OVER_MTLS)


@pytest.mark.parametrize("command", OVER_TLS)
def test_a_readme_curl_example_over_tls_with_a_token_works_as_written(
    over_tls: ServerThread, folder: Path, command: str
) -> None:
    check(command, run(command.replace("localhost:8080", over_tls.http_url[8:]), folder))


@pytest.mark.parametrize("command", OVER_MTLS)
def test_a_readme_curl_example_over_mtls_works_as_written(
    over_mtls: ServerThread, folder: Path, command: str
) -> None:
    check(command, run(command.replace("localhost:8080", over_mtls.http_url[8:]), folder))


def test_without_the_token_or_the_client_certificate_curl_is_refused(
    over_tls: ServerThread, over_mtls: ServerThread, folder: Path
) -> None:
    models = next(c for c in OVER_TLS if "/v1/models" in c)
    anonymous = models.replace(' -H "Authorization: Bearer $TOKEN"', "") + " -w ' %{http_code}'"
    refused = run_raw(anonymous.replace("localhost:8080", over_tls.http_url[8:]), folder)
    assert refused.returncode == 0 and refused.stdout.endswith(" 401")
    assert "CREDENTIALS_MISSING" in refused.stdout
    without_cert = OVER_MTLS[0].replace(" --cert shop.pem --key shop.key", "")
    assert run_raw(
        without_cert.replace("localhost:8080", over_mtls.http_url[8:]), folder
    ).returncode


def run_raw(command: str, folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=folder,
        env={**os.environ, "TOKEN": TOKEN},
    )


def run(command: str, folder: Path) -> dict[str, Any]:
    """Run a command; its output, as JSON."""
    result = run_raw(command, folder)
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def check(command: str, answer: dict[str, Any]) -> None:
    """The answer a command's path should get."""
    path = re.search(r"localhost:8080(/[\w/]+)", command)
    assert path
    match path.group(1):
        case "/v1/classify":
            top_k = int(m.group(1)) if (m := re.search(r"top_k\W+(\d+)", command)) else 5
            assert len(answer["labels"]) == top_k
            assert answer["labels"][0]["class_id"] == ESPRESSO
            english = re.search(r"language\W+en", command)
            assert answer["labels"][0]["label"] == ("espresso" if english else "浓缩咖啡")
        case "/v1/models":
            assert answer["models"][0]["name"] == "efficientnet-lite0"
        case "/readyz" | "/healthz":
            assert answer["status"] == "SERVING"
        case other:
            pytest.fail(f"no check for {other}")
