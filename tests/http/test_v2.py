"""The KServe v2 REST routes with plain HTTP against real servers: health, metadata, and
inference with JSON tensors as the protocol has them, answering what recognizer.v1 does."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from fakes import colour_model, solid_png
from recognizer.client import Client
from recognizer.config.schema import SecuritySettings
from support import PHOTOS, ServerThread

MODEL = "efficientnet-lite0"
INFER = f"/v2/models/{MODEL}/infer"
TOKEN = "Zt8MvA3pQ6rJ1uE5sKx0bw"


@pytest.fixture(scope="module")
def http(default_server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=default_server.http_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def v1(default_server: ServerThread) -> Iterator[Client]:
    with Client(default_server.address, timeout=60) as client:
        yield client


def images_body(*images: bytes, **more: Any) -> dict[str, Any]:
    data = [base64.b64encode(image).decode() for image in images]
    tensor = {"name": "IMAGE", "datatype": "BYTES", "shape": [len(images), 1], "data": data}
    return {"inputs": [tensor], **more}


def classes(k: int) -> list[dict[str, Any]]:
    return [{"name": "PROBABILITIES", "parameters": {"classification": k}}]


def test_health_and_metadata(http: httpx.Client) -> None:
    assert http.get("/v2/health/live").json() == {"live": True}
    assert http.get("/v2/health/ready").json() == {"ready": True}
    assert http.get(f"/v2/models/{MODEL}/ready").status_code == 200
    assert http.get(f"/v2/models/{MODEL}/versions/1/ready").status_code == 200
    missing = http.get("/v2/models/nope/ready")
    assert missing.status_code == 404 and missing.json()["status"] == "NOT_FOUND"
    server = http.get("/v2").json()
    assert server["name"] == "recognizer" and "classification" in server["extensions"]
    metadata = http.get(f"/v2/models/{MODEL}").json()
    assert metadata["versions"] == ["1"]
    assert metadata["inputs"] == [
        {"name": "IMAGE", "datatype": "BYTES", "shape": [-1, 1]},
        {"name": "PIXELS", "datatype": "UINT8", "shape": [-1, -1, -1, 3]},
    ]
    (output,) = metadata["outputs"]
    assert output == {"name": "PROBABILITIES", "datatype": "FP32", "shape": [-1, 1000]}


def test_images_in_base64_get_recognizer_v1s_labels(http: httpx.Client, v1: Client) -> None:
    photos = [PHOTOS["cat"].read_bytes(), PHOTOS["coffee"].read_bytes()]
    body = images_body(*photos, id="r-1", outputs=classes(3), parameters={"language": "en"})
    answer = http.post(INFER, json=body)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["model_name"], body["model_version"], body["id"]) == (MODEL, "1", "r-1")
    (output,) = body["outputs"]
    assert output["name"] == "PROBABILITIES"
    assert (output["datatype"], output["shape"]) == ("BYTES", [2, 3])
    for index, photo in enumerate(photos):
        want = v1.classify(photo, top_k=3, language="en").labels
        got = [element.split(":", 2) for element in output["data"][3 * index : 3 * index + 3]]
        assert [(int(i), label) for _, i, label in got] == [(w.class_id, w.label) for w in want]
        assert [float(s) for s, _, _ in got] == pytest.approx([w.score for w in want], abs=1e-5)


def test_the_probabilities_by_default(http: httpx.Client, v1: Client) -> None:
    photo = PHOTOS["hopper"].read_bytes()
    (output,) = http.post(INFER, json=images_body(photo)).json()["outputs"]
    assert (output["datatype"], output["shape"]) == ("FP32", [1, 1000])
    scores = np.asarray(output["data"], dtype=np.float32)
    best = v1.classify(photo, top_k=1).labels[0]
    assert int(scores.argmax()) == best.class_id
    assert float(scores.max()) == pytest.approx(best.score, abs=1e-5)


def test_pixels_as_nested_json_numbers(http: httpx.Client, tmp_path: Path) -> None:
    with Image.open(PHOTOS["coffee"]) as opened:
        pixels = np.asarray(opened.convert("RGB").resize((64, 48)), dtype=np.uint8)
    tensor = {"name": "PIXELS", "datatype": "UINT8", "shape": [1, 48, 64, 3]}
    body = {"inputs": [{**tensor, "data": pixels[np.newaxis].tolist()}], "outputs": classes(1)}
    answer = http.post(INFER, json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["shape"] == [1, 1]


@pytest.mark.parametrize(
    ("body", "code", "reason"),
    [
        (images_body(b"not an image"), 400, "IMAGE_UNDECODABLE"),
        (
            {"inputs": [{"name": "IMAGE", "datatype": "BYTES", "shape": [1], "data": ["!"]}]},
            400,
            "INVALID_REQUEST",
        ),
        (images_body(solid_png((1, 2, 3)), outputs=[{"name": "LOGITS"}]), 400, "INVALID_REQUEST"),
        (images_body(solid_png((1, 2, 3)), parameters={"language": "fr"}), 400, "INVALID_REQUEST"),
        ({"inputs": "nothing"}, 400, "INVALID_REQUEST"),
    ],
    ids=["undecodable", "not-base64", "unknown-output", "unknown-language", "no-tensors"],
)
def test_errors_are_the_protocols_with_our_reason(
    http: httpx.Client, body: dict[str, Any], code: int, reason: str
) -> None:
    answer = http.post(INFER, json=body)
    assert answer.status_code == code
    error = answer.json()
    assert isinstance(error["error"], str) and error["status"] == "INVALID_ARGUMENT"
    assert error["details"][0]["reason"] == reason


def test_an_unknown_model_is_404(http: httpx.Client) -> None:
    answer = http.post("/v2/models/nope/infer", json=images_body(solid_png((1, 2, 3))))
    assert answer.status_code == 404
    assert answer.json()["details"][0]["reason"] == "MODEL_NOT_FOUND"


def test_with_auth_on_inference_needs_a_token_and_health_does_not(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"vision:{TOKEN}\n", encoding="utf-8")
    security = SecuritySettings(tokens_file=tokens)
    with (
        ServerThread([colour_model()], http=True, security=security) as server,
        httpx.Client(base_url=server.http_url, timeout=30) as http,
    ):
        assert http.get("/v2/health/ready").status_code == 200
        assert http.get("/v2/models/colours/ready").status_code == 200
        body = images_body(solid_png((0, 200, 0)), outputs=classes(1))
        assert http.post("/v2/models/colours/infer", json=body).status_code == 401
        assert http.get("/v2/models/colours").status_code == 401
        answer = http.post(
            "/v2/models/colours/infer", json=body, headers={"Authorization": f"Bearer {TOKEN}"}
        )
    assert answer.status_code == 200
    assert answer.json()["outputs"][0]["data"][0].endswith(":1:绿")
