"""grpcurl, a real user with no proto files at hand, against a real server via reflection."""

from __future__ import annotations

import base64
import json
import subprocess

from support import ESPRESSO, ServerThread, dev_tool


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
