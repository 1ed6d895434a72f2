"""Pages of other sites refused over real HTTP: the server's own page and the allowed
origins pass, programs that send no Origin pass, everything else gets 403."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from fakes import colour_model, solid_png
from support import ServerThread

PNG = {"Content-Type": "image/png"}
RED = solid_png((200, 0, 0))


@pytest.fixture(scope="module")
def running() -> Iterator[ServerThread]:
    allowed = {"http_allowed_origins": ("https://app.example.com",)}
    with ServerThread([colour_model()], http=True, server=allowed) as server:
        yield server


def classify(server: ServerThread, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(
        server.http_url + "/v1/classify", content=RED, headers=PNG | headers, timeout=30
    )


def test_the_servers_own_page_allowed_origins_and_programs_pass(running: ServerThread) -> None:
    assert classify(running, {"Origin": running.http_url}).status_code == 200
    localhost = running.http_url.replace("127.0.0.1", "localhost")
    assert classify(running, {"Origin": localhost, "Host": localhost[7:]}).status_code == 200
    assert classify(running, {"Origin": "https://APP.example.com:443"}).status_code == 200
    assert classify(running, {}).status_code == 200  # curl, a program: no Origin


@pytest.mark.parametrize(
    "page",
    [
        "https://evil.example",
        "http://127.0.0.1:1",  # this host, another port: another origin
        "null",  # a sandboxed frame, a file
        "https://app.example.com.evil.example",
    ],
)
def test_another_sites_page_gets_403(running: ServerThread, page: str) -> None:
    response = classify(running, {"Origin": page})
    assert response.status_code == 403
    error = response.json()["error"]
    assert (error["status"], error["details"][0]["reason"]) == (
        "PERMISSION_DENIED",
        "ORIGIN_NOT_ALLOWED",
    )
    assert "--http-allowed-origins" in error["message"]
    assert httpx.get(running.http_url + "/v1/models", headers={"Origin": page}).status_code == 403
