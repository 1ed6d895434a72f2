"""The OpenAPI document: valid, covering every route, and true to what the API answers."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from jsonschema import ValidationError
from openapi_schema_validator import OAS30Validator, validate
from openapi_spec_validator import validate as validate_spec
from starlette.routing import Route, WebSocketRoute

from recognizer.http import openapi
from recognizer.http.app import create_app
from support import ServerThread

PAGE_ROUTES = {"/", "/assets/{name}", "/docs", "/docs/{name}", "/openapi.json"}


@pytest.fixture(scope="module")
def document(default_server: ServerThread) -> dict[str, Any]:
    served: dict[str, Any] = httpx.get(default_server.http_url + "/openapi.json", timeout=30).json()
    return served


@pytest.fixture
def http(default_server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=default_server.http_url, timeout=60) as client:
        yield client


def strictly(document: dict[str, Any], name: str) -> dict[str, Any]:
    """The schema of `name`, refusing properties it does not declare (so the test can fail)."""
    components = copy.deepcopy(document["components"])
    for schema in components["schemas"].values():
        if "properties" in schema and not schema.get("additionalProperties"):
            schema["additionalProperties"] = False
    return {"components": components, "$ref": f"#/components/schemas/{name}"}


def test_the_document_is_valid_openapi(document: dict[str, Any]) -> None:
    validate_spec(document)
    assert document == openapi.document(document["info"]["version"])


def test_every_api_route_is_documented(default_server: ServerThread) -> None:
    service = default_server.server
    app = create_app(service.engine, service.settings, service.metrics, models=service.models)
    routes = {route.path for route in app.routes if isinstance(route, Route | WebSocketRoute)}
    documented = set(openapi.document("0")["paths"])
    assert routes - PAGE_ROUTES == documented


def test_answers_match_their_schemas(
    document: dict[str, Any], http: httpx.Client, photos: dict[str, bytes]
) -> None:
    answer = http.post(
        "/v1/classify?top_k=3", content=photos["cat"], headers={"Content-Type": "image/png"}
    ).json()
    validate(answer, strictly(document, "ClassifyResponse"), cls=OAS30Validator)
    models = http.get("/v1/models").json()
    validate(models, strictly(document, "ListModelsResponse"), cls=OAS30Validator)
    error = http.post("/v1/classify?model=x", content=b"", headers={"Content-Type": "image/png"})
    validate(error.json(), strictly(document, "Error"), cls=OAS30Validator)


def test_a_schema_refuses_what_the_api_does_not_answer(document: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="class_id"):
        bad = {"labels": [{"class_id": "seven", "label": "x", "score": 0.5}]}
        validate(bad, strictly(document, "ClassifyResponse"), cls=OAS30Validator)
    with pytest.raises(ValidationError, match="confidence"):
        validate({"confidence": 1}, strictly(document, "ClassifyResponse"), cls=OAS30Validator)


def test_with_auth_on_the_guarded_paths_ask_for_a_bearer_token() -> None:
    guarded = ["/v1/classify", "/v1/classify/stream", "/v1/models"]
    document = openapi.document("0", guarded=guarded)
    validate_spec(document)
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    classify = document["paths"]["/v1/classify"]["post"]
    assert classify["security"] == [{"bearer": []}] and "401" in classify["responses"]
    assert "security" not in document["paths"]["/healthz"]["get"]
    assert "securitySchemes" not in openapi.document("0")["components"]
