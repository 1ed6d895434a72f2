"""Tokens and tenants over HTTP and the WebSocket, against a real server with TLS: who may
call, which models, what stays open, and what one tenant can learn of another."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from certificates import Pki
from fakes import colour_model, solid_png
from recognizer.config.schema import SecuritySettings
from support import ServerThread

SHOP = "q9Xc1kF0b7WvN2yH4tLm8a"
VISION = "Zt8MvA3pQ6rJ1uE5sKx0bw"
LATE = "L4t3c0m3rT0k3nAbCdEfGh"
TOKENS = f"shop:{SHOP}\nvision:{VISION}  blues\n"
RED, BLUE = solid_png((200, 0, 0)), solid_png((0, 0, 200))
PNG = {"Content-Type": "image/png"}
END = json.dumps({"end": True})


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text(TOKENS, encoding="utf-8")
    return path


@pytest.fixture
def running(pki: Pki, tokens_file: Path) -> Iterator[ServerThread]:
    """TLS and tokens, two models (the first the default), the cache on, HTTP on."""
    security = SecuritySettings(
        tls_cert=pki.server[0], tls_key=pki.server[1], tokens_file=tokens_file
    )
    models = [colour_model("colours"), colour_model("blues")]
    with ServerThread(models, security=security, cache_entries=16, http=True) as server:
        yield server


def client(server: ServerThread, pki: Pki, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=server.http_url, verify=pki.context(), headers=headers, timeout=30)


def refusal(response: httpx.Response, code: int, reason: str) -> dict[str, Any]:
    """The error body of a refusal, checked: HTTP code, ErrorInfo reason."""
    assert response.status_code == code, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["details"][0]["reason"] == reason
    return error


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Poll: the tokens file is looked at once a second, and this machine is busy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def ws_url(server: ServerThread, query: str = "") -> str:
    return server.http_url.replace("https://", "wss://") + "/v1/classify/stream?" + query


def bearer_protocol(token: str) -> str:
    """The subprotocol a browser offers its token in."""
    encoded = base64.urlsafe_b64encode(token.encode()).decode().rstrip("=")
    return f"base64url.bearer.recognizer.v1.{encoded}"


def open_stream(
    server: ServerThread, pki: Pki, query: str = "", **options: Any
) -> ClientConnection:
    return connect(ws_url(server, query), ssl=pki.context(), open_timeout=30, **options)


def refused_handshake(server: ServerThread, pki: Pki, **options: Any) -> tuple[int, Any]:
    """The HTTP code and the JSON body of a WebSocket handshake the server refuses."""
    with pytest.raises(InvalidStatus) as refused:
        open_stream(server, pki, **options).close()
    response = refused.value.response
    return response.status_code, json.loads(response.body or b"{}")


def stream_answers(websocket: ClientConnection, frames: list[bytes]) -> list[dict[str, Any]]:
    for frame in frames:
        websocket.send(frame)
    websocket.send(END)
    answers = []
    while "frames" not in (message := json.loads(websocket.recv(timeout=60))):
        answers.append(message)
    return answers


# Tokens over HTTP


def test_a_missing_wrong_or_revoked_token_is_401_with_a_bearer_challenge(
    running: ServerThread, pki: Pki, tokens_file: Path
) -> None:
    with client(running, pki) as anonymous:
        response = anonymous.post("/v1/classify", content=RED, headers=PNG)
        error = refusal(response, 401, "CREDENTIALS_MISSING")
        assert error["status"] == "UNAUTHENTICATED"
        assert "authorization: Bearer TOKEN" in error["message"]
        assert response.headers["www-authenticate"] == 'Bearer realm="recognizer"'
        refusal(anonymous.get("/v1/models"), 401, "CREDENTIALS_MISSING")
        basic = anonymous.get("/v1/models", headers={"Authorization": "Basic c2hvcDp4"})
        refusal(basic, 401, "TOKEN_INVALID")
        twice = anonymous.get("/v1/models", headers=[("Authorization", f"Bearer {SHOP}")] * 2)
        assert "one token, not several" in refusal(twice, 401, "TOKEN_INVALID")["message"]
    with client(running, pki, "q9Xc1kF0b7WvN2yH4tLm8b") as wrong:
        response = wrong.post("/v1/classify", content=RED, headers=PNG)
        refusal(response, 401, "TOKEN_INVALID")
        assert response.headers["www-authenticate"] == (
            'Bearer realm="recognizer", error="invalid_token"'
        )
    with client(running, pki, SHOP) as shop:
        answer = shop.post("/v1/classify?language=en", content=RED, headers=PNG)
        assert answer.json()["labels"][0]["label"] == "red"
        tokens_file.write_text(f"vision:{VISION}  blues\n", encoding="utf-8")  # revoked
        assert eventually(lambda: shop.get("/v1/models").status_code == 401)
        refusal(shop.post("/v1/classify", content=RED, headers=PNG), 401, "TOKEN_INVALID")


def test_a_token_added_to_the_file_works_without_a_restart(
    running: ServerThread, pki: Pki, tokens_file: Path
) -> None:
    with client(running, pki, LATE) as late:
        refusal(late.get("/v1/models"), 401, "TOKEN_INVALID")
        with tokens_file.open("a", encoding="utf-8") as file:
            file.write(f"newcomer:{LATE}\n")
        assert eventually(lambda: late.get("/v1/models").status_code == 200)


def test_a_tenant_off_its_model_list_is_403_and_sees_only_its_models(
    running: ServerThread, pki: Pki
) -> None:
    with client(running, pki, VISION) as vision:
        for query in ("?model=colours", ""):  # no model: the default, colours
            response = vision.post(f"/v1/classify{query}", content=RED, headers=PNG)
            error = refusal(response, 403, "MODEL_NOT_ALLOWED")
            assert error["status"] == "PERMISSION_DENIED"
            assert (
                "tenant 'vision' may not use model 'colours'; it may use: blues"
                in (error["message"])
            )
            resource = next(d for d in error["details"] if "resource_type" in d)
            assert (resource["resource_type"], resource["resource_name"]) == ("model", "colours")
        blue = vision.post("/v1/classify?model=blues", content=BLUE, headers=PNG)
        assert blue.json()["labels"][0]["class_id"] == 2
        assert [m["name"] for m in vision.get("/v1/models").json()["models"]] == ["blues"]
        missing = vision.post("/v1/classify?model=nothing", content=RED, headers=PNG)
        assert refusal(missing, 404, "MODEL_NOT_FOUND")["message"].endswith("served models: blues")
    with client(running, pki, SHOP) as shop:
        assert [m["name"] for m in shop.get("/v1/models").json()["models"]] == [
            "colours",
            "blues",
        ]


def test_tenants_do_not_see_each_others_cache_hits(running: ServerThread, pki: Pki) -> None:
    image = solid_png((0, 0, 190))

    def cache_hit(http: httpx.Client) -> bool:
        response = http.post("/v1/classify?model=blues", content=image, headers=PNG)
        hit: bool = response.json()["timing"]["cache_hit"]
        return hit

    with client(running, pki, SHOP) as shop, client(running, pki, VISION) as vision:
        assert [cache_hit(shop), cache_hit(shop)] == [False, True]
        assert [cache_hit(vision), cache_hit(vision)] == [False, True]


# What stays open


def test_the_page_its_assets_and_the_api_document_need_no_token(
    running: ServerThread, pki: Pki
) -> None:
    with client(running, pki) as anonymous:
        for path in ("/", "/assets/main.js", "/docs", "/docs/swagger-ui.css", "/openapi.json"):
            assert anonymous.get(path).status_code == 200, path
        document = anonymous.get("/openapi.json").json()
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    guarded = {
        path for path, item in document["paths"].items() for op in item.values() if "security" in op
    }
    assert guarded == {
        "/v1/classify",
        "/v1/classify/stream",
        "/v1/models",
        "/v1/models/{name}:load",  # the admin calls: a token, then the admin right
        "/v1/models/{name}:unload",
        "/v1/config:reload",
        "/v2",  # the v2 protocol's health and readiness stay open; all else is guarded
        "/v2/models/{name}",
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}",
        "/v2/models/{name}/versions/{version}/infer",
    }


def test_health_is_open_by_default_and_closed_on_request(pki: Pki, tokens_file: Path) -> None:
    base = SecuritySettings(tls_cert=pki.server[0], tls_key=pki.server[1], tokens_file=tokens_file)
    with (
        ServerThread([colour_model()], security=base, http=True) as running,
        client(running, pki) as anonymous,
    ):
        assert anonymous.get("/healthz").json() == {"status": "SERVING"}
        assert anonymous.get("/readyz").json()["status"] == "SERVING"
    closed = base.model_copy(update={"public_health": False})
    with ServerThread([colour_model()], security=closed, http=True) as running:
        with client(running, pki) as anonymous:
            refusal(anonymous.get("/healthz"), 401, "CREDENTIALS_MISSING")
            refusal(anonymous.get("/readyz"), 401, "CREDENTIALS_MISSING")
        with client(running, pki, SHOP) as shop:
            assert shop.get("/readyz").json()["status"] == "SERVING"


def test_metrics_on_a_loopback_http_port_need_no_token_and_count_tenants(
    running: ServerThread, pki: Pki
) -> None:
    with client(running, pki, SHOP) as shop, client(running, pki, VISION) as vision:
        shop.post("/v1/classify", content=RED, headers=PNG)
        vision.post("/v1/classify?model=blues", content=BLUE, headers=PNG)
        vision.post("/v1/classify", content=RED, headers=PNG)
    with client(running, pki) as anonymous:
        anonymous.post("/v1/classify", content=RED, headers=PNG)
        text = anonymous.get("/metrics").text
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    requests, http = "recognizer_requests_total", ("transport", "http")
    assert samples[(requests, (("code", "OK"), ("model", "colours"), ("tenant", "shop"), http))]
    assert samples[(requests, (("code", "OK"), ("model", "blues"), ("tenant", "vision"), http))]
    denied = (("code", "PERMISSION_DENIED"), ("model", "colours"), ("tenant", "vision"), http)
    assert samples[(requests, denied)] == 1
    assert samples[("recognizer_unauthenticated_total", (("reason", "CREDENTIALS_MISSING"),))]


def test_metrics_stay_off_an_http_port_other_machines_reach(tokens_file: Path) -> None:
    security = SecuritySettings(tokens_file=tokens_file)
    with (
        ServerThread(
            [colour_model()], security=security, http=True, server={"host": "0.0.0.0"}
        ) as running,
        httpx.Client(base_url=running.http_url, timeout=30) as http,
    ):
        error = refusal(http.get("/metrics"), 404, "ROUTE_NOT_FOUND")
        assert "scrape --metrics-port" in error["message"]
        refusal(
            http.get("/metrics", headers={"Authorization": f"Bearer {SHOP}"}),
            404,
            "ROUTE_NOT_FOUND",
        )


# The WebSocket


def test_a_websocket_takes_its_token_as_a_subprotocol_or_a_header(
    running: ServerThread, pki: Pki
) -> None:
    offered = ["recognizer.v1", bearer_protocol(VISION)]
    with open_stream(running, pki, "model=blues", subprotocols=offered) as websocket:
        assert websocket.subprotocol == "recognizer.v1"  # the token is not echoed
        answers = stream_answers(websocket, [BLUE, RED])
    assert [a["labels"][0]["class_id"] for a in answers] == [2, 0]
    with open_stream(
        running, pki, "model=colours", additional_headers={"Authorization": f"Bearer {VISION}"}
    ) as websocket:
        (answer,) = stream_answers(websocket, [RED])
    assert answer["error"]["details"][0]["reason"] == "MODEL_NOT_ALLOWED"  # that frame only


def test_a_revoked_token_closes_its_open_websocket(
    running: ServerThread, pki: Pki, tokens_file: Path
) -> None:
    offered = ["recognizer.v1", bearer_protocol(VISION)]
    with open_stream(running, pki, "model=blues", subprotocols=offered) as websocket:
        websocket.send(BLUE)
        assert json.loads(websocket.recv(timeout=60))["labels"][0]["class_id"] == 2
        tokens_file.write_text(f"shop:{SHOP}\n", encoding="utf-8")  # vision revoked
        summary = json.loads(websocket.recv(timeout=30))
        with pytest.raises(ConnectionClosed):
            websocket.recv(timeout=10)
    assert summary["status"]["details"][0]["reason"] == "TOKEN_INVALID"
    assert summary["frames"]["answered"] == 1
    assert (websocket.close_code, websocket.close_reason) == (1008, "TOKEN_INVALID")


def test_a_websocket_without_a_valid_token_is_refused_at_its_handshake(
    running: ServerThread, pki: Pki
) -> None:
    code, body = refused_handshake(running, pki)
    assert (code, body["error"]["details"][0]["reason"]) == (401, "CREDENTIALS_MISSING")
    wrong = ["recognizer.v1", bearer_protocol("q9Xc1kF0b7WvN2yH4tLm8b")]
    code, body = refused_handshake(running, pki, subprotocols=wrong)
    assert (code, body["error"]["details"][0]["reason"]) == (401, "TOKEN_INVALID")
    garbled = ["recognizer.v1", "base64url.bearer.recognizer.v1.!!"]
    code, body = refused_handshake(running, pki, subprotocols=garbled)
    assert (code, body["error"]["details"][0]["reason"]) == (401, "TOKEN_INVALID")


def test_a_websocket_from_another_sites_page_is_refused_even_with_a_token(
    running: ServerThread, pki: Pki
) -> None:
    offered = ["recognizer.v1", bearer_protocol(SHOP)]
    code, body = refused_handshake(
        running, pki, subprotocols=offered, origin="https://evil.example"
    )
    assert (code, body["error"]["details"][0]["reason"]) == (403, "ORIGIN_NOT_ALLOWED")
    own = running.http_url  # the page's own origin: https://localhost:PORT
    with open_stream(running, pki, subprotocols=offered, origin=own) as websocket:
        (answer,) = stream_answers(websocket, [RED])
    assert answer["labels"][0]["class_id"] == 0


def test_a_client_certificate_names_its_tenant(pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "tokens").write_text(f"shop:{SHOP}\nacme:  blues\n", encoding="utf-8")
    security = SecuritySettings(
        tls_cert=pki.server[0],
        tls_key=pki.server[1],
        tls_client_ca=pki.ca,
        tokens_file=tmp_path / "tokens",
        tenant_from_cert=True,
    )
    models = [colour_model("colours"), colour_model("blues")]
    with ServerThread(models, security=security, http=True) as running:
        acme = pki.context(client=pki.client)  # CN acme
        with httpx.Client(base_url=running.http_url, verify=acme, timeout=30) as http:
            assert [m["name"] for m in http.get("/v1/models").json()["models"]] == ["blues"]
            blue = http.post("/v1/classify?model=blues", content=BLUE, headers=PNG)
            assert blue.json()["labels"][0]["class_id"] == 2
            refusal(http.post("/v1/classify", content=RED, headers=PNG), 403, "MODEL_NOT_ALLOWED")
            shop = {"Authorization": f"Bearer {SHOP}"}  # a token, when sent, decides
            assert http.post("/v1/classify", content=RED, headers=PNG | shop).status_code == 200
        with connect(ws_url(running, "model=blues"), ssl=acme, open_timeout=30) as websocket:
            (answer,) = stream_answers(websocket, [BLUE])
        assert answer["labels"][0]["class_id"] == 2
        nobody = pki.context(client=pki.authority.issue("nobody").write(tmp_path, "nobody"))
        with httpx.Client(base_url=running.http_url, verify=nobody, timeout=30) as http:
            refusal(http.get("/v1/models"), 401, "CERTIFICATE_UNKNOWN")
