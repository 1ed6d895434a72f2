"""grpcurl, a real user with no proto files at hand, against a real server via reflection;
the README's grpcurl commands run as written (only the port changed)."""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from certificates import Pki
from doc_blocks import command_block
from fakes import colour_model, solid_png
from recognizer.config.schema import SecuritySettings
from support import ESPRESSO, ServerThread, dev_tool, run_script


def grpcurl(server: ServerThread, *args: str, data: str | None = None) -> str:
    command = [
        dev_tool("grpcurl"),
        "-plaintext",
        *(["-d", "@"] if data else []),
        server.address,
        *args,
    ]
    result = subprocess.run(command, input=data, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_list_shows_the_services(default_server: ServerThread) -> None:
    services = grpcurl(default_server, "list").split()
    assert {"recognizer.v1.Recognizer", "grpc.health.v1.Health"} <= set(services)


def test_describe_shows_the_contract(default_server: ServerThread) -> None:
    service = grpcurl(default_server, "describe", "recognizer.v1.Recognizer")
    assert "rpc ClassifyStream ( stream .recognizer.v1.ClassifyRequest )" in service
    request = grpcurl(default_server, "describe", "recognizer.v1.ClassifyRequest")
    assert "bytes image = 1;" in request and "string language = 6;" in request


def test_classify_with_a_base64_image(
    default_server: ServerThread, photos: dict[str, bytes]
) -> None:
    body = json.dumps(
        {"image": base64.b64encode(photos["coffee"]).decode(), "top_k": 2, "language": "en"}
    )
    response = json.loads(grpcurl(default_server, "recognizer.v1.Recognizer/Classify", data=body))
    assert response["labels"][0]["class_id"] == ESPRESSO
    assert response["labels"][0]["label"] == "espresso"
    assert response["model"] == "efficientnet-lite0"


def test_health_check(default_server: ServerThread) -> None:
    body = json.dumps({"service": "efficientnet-lite0"})
    response = json.loads(grpcurl(default_server, "grpc.health.v1.Health/Check", data=body))
    assert response == {"status": "SERVING"}


def test_the_readme_commands_work(
    default_server: ServerThread, photos: dict[str, bytes], tmp_path: Path
) -> None:
    (tmp_path / "photo.jpg").write_bytes(photos["coffee"])
    block = command_block("README.md", "grpcurl")
    assert block.count("grpcurl -plaintext") == 5
    output = run_script(block.replace("localhost:50051", default_server.address), tmp_path)
    assert "recognizer.v1.Recognizer" in output.split()
    assert "message ClassifyRequest {" in output
    answers, decoder = [], json.JSONDecoder()
    at = output.index("\n{")  # the answers, after what list and describe print
    while at < len(output.rstrip()):
        answer, at = decoder.raw_decode(output, at + 1)
        answers.append(answer)
    classified, listed, health = answers
    assert classified["labels"][0]["class_id"] == ESPRESSO and len(classified["labels"]) == 3
    assert listed["models"][0]["name"] == "efficientnet-lite0"
    assert health == {"status": "SERVING"}


# Over TLS, with tokens (docs/security.md shows these commands; tests/test_running_securely.py
# runs them as written).

TOKEN = "q9Xc1kF0b7WvN2yH4tLm8a"


def secure_grpcurl(
    server: ServerThread, pki: Pki, *args: str, token: bool = True, mutual: bool = False
) -> subprocess.CompletedProcess[str]:
    command = [
        dev_tool("grpcurl"),
        "-cacert",
        str(pki.ca),
        *(["-cert", str(pki.client[0]), "-key", str(pki.client[1])] if mutual else []),
        *(["-H", f"authorization: Bearer {TOKEN}"] if token else []),
        "-servername",
        "localhost",
        *args[:-1],
        server.address,
        args[-1],
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


def secure_server(pki: Pki, tmp_path: Path, **security: object) -> ServerThread:
    (tmp_path / "tokens").write_text(f"shop:{TOKEN}\n", encoding="utf-8")
    settings = SecuritySettings(
        tls_cert=pki.server[0],
        tls_key=pki.server[1],
        tls_client_ca=pki.ca,
        tokens_file=tmp_path / "tokens",
        **security,  # type: ignore[arg-type]
    )
    return ServerThread([colour_model()], security=settings)


@pytest.fixture
def secured(pki: Pki, tmp_path: Path) -> Iterator[ServerThread]:
    with secure_server(pki, tmp_path) as running:
        yield running


def test_grpcurl_over_mtls_with_a_token(secured: ServerThread, pki: Pki) -> None:
    listed = secure_grpcurl(secured, pki, "list", mutual=True)
    assert listed.returncode == 0, listed.stderr
    assert "recognizer.v1.Recognizer" in listed.stdout.split()
    image = base64.b64encode(solid_png((0, 200, 0))).decode()
    body = json.dumps({"image": image, "language": "en"})
    classified = secure_grpcurl(
        secured, pki, "-d", body, "recognizer.v1.Recognizer/Classify", mutual=True
    )
    assert classified.returncode == 0, classified.stderr
    assert json.loads(classified.stdout)["labels"][0]["label"] == "green"


def test_without_a_token_even_reflection_is_closed(secured: ServerThread, pki: Pki) -> None:
    listed = secure_grpcurl(secured, pki, "list", token=False, mutual=True)
    assert listed.returncode != 0 and "Unauthenticated" in listed.stderr


def test_with_public_reflection_grpcurl_checks_health_without_a_token(
    pki: Pki, tmp_path: Path
) -> None:
    with secure_server(pki, tmp_path, public_reflection=True) as running:
        health = secure_grpcurl(
            running, pki, "grpc.health.v1.Health/Check", token=False, mutual=True
        )
        assert health.returncode == 0, health.stderr
        assert json.loads(health.stdout) == {"status": "SERVING"}
        models = secure_grpcurl(
            running, pki, "recognizer.v1.Recognizer/ListModels", token=False, mutual=True
        )
    assert models.returncode != 0
    assert "Code: Unauthenticated" in models.stderr and "CREDENTIALS_MISSING" in models.stderr


def test_grpcurl_without_a_client_certificate_is_refused(secured: ServerThread, pki: Pki) -> None:
    listed = secure_grpcurl(secured, pki, "list")
    assert listed.returncode != 0
    assert "Failed to dial target host" in listed.stderr or "handshake" in listed.stderr


def test_reflection_can_be_turned_off(pki: Pki) -> None:
    with ServerThread([colour_model()], server={"reflection": False}) as running:
        listed = subprocess.run(
            [dev_tool("grpcurl"), "-plaintext", running.address, "list"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert listed.returncode != 0
    assert "does not support the reflection API" in listed.stderr
