"""The HTTP port's limits against raw sockets on a real server: URL and header sizes, the time
a request's head may take, idle keep-alive connections, and the connection cap."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect

from fakes import colour_model, solid_png
from support import ServerThread

RED = solid_png((200, 0, 0))


@contextmanager
def serving(**server: Any) -> Iterator[ServerThread]:
    with ServerThread([colour_model()], http=True, server=server) as running:
        yield running


def dial(running: ServerThread) -> socket.socket:
    assert running.server.http is not None
    return socket.create_connection(("127.0.0.1", running.server.http.port), timeout=30)


def answer(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of the one response the server sends before it closes."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    assert b"connection: close" in head.lower()
    return status, json.loads(body)


def healthz(sock: socket.socket) -> int:
    """GET /healthz on a kept-alive connection: its status, the response read whole."""
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split(b" ", 2)[1])


def reason(body: dict[str, Any]) -> str:
    return str(body["error"]["details"][0]["reason"])


def closed_within(sock: socket.socket, seconds: float) -> bool:
    """Whether the server closes the connection, sending nothing, within `seconds`."""
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_a_url_over_the_limit_gets_414() -> None:
    with serving(http_max_url_kb=1) as running, closing(dial(running)) as sock:
        sock.sendall(b"GET /v1/models?model=" + b"a" * 2000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        status, body = answer(sock)
        assert status == 414 and reason(body) == "URL_TOO_LONG"
        assert body["error"]["status"] == "RESOURCE_EXHAUSTED"
        with httpx.Client(base_url=running.http_url, timeout=30) as http:
            assert http.get("/v1/models?model=" + "a" * 900).status_code == 200


def test_headers_over_the_limit_get_431_whether_they_come_at_once_or_in_pieces() -> None:
    with serving(http_max_header_kb=4) as running:
        with closing(dial(running)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 5000 + b"\r\n\r\n")
            status, body = answer(sock)
            assert status == 431 and reason(body) == "HEADERS_TOO_LARGE"
        with closing(dial(running)) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            sent = 0
            with pytest.raises(OSError):  # the server closes the connection
                for _ in range(2000):
                    sock.sendall(b"X-Many: " + b"m" * 56 + b"\r\n")
                    sent += 66
                    time.sleep(0.001)
            assert sent < 1 << 20
        with httpx.Client(base_url=running.http_url, timeout=30) as http:
            assert http.get("/healthz", headers={"X-Fine": "f" * 3000}).status_code == 200


def test_a_header_of_tens_of_megabytes_is_cut_off_at_the_limit() -> None:
    """One header that never ends, as fast as the client can send it: the server answers 431
    and closes once the limit (64 KiB) has come, so the rest is never parsed."""
    with serving() as running, closing(dial(running)) as sock:
        sock.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nX-Huge: ")
        piece, sent = b"h" * 65536, 0
        with pytest.raises(OSError):
            while sent < 81 << 20:
                sock.sendall(piece)
                sent += len(piece)
        assert sent < 81 << 20
        with httpx.Client(base_url=running.http_url, timeout=30) as http:
            answered = http.post("/v1/classify", content=RED, headers={"Content-Type": "image/png"})
            assert answered.status_code == 200


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout() -> None:
    with serving(header_timeout=0.5) as running, closing(dial(running)) as sock:
        started = time.monotonic()
        assert closed_within(sock, 30)
        assert time.monotonic() - started >= 0.4


def test_a_head_that_drips_in_is_answered_408_at_the_header_timeout() -> None:
    """Slowloris: a header line every 100 ms does not keep the connection open."""
    with serving(header_timeout=0.5) as running, closing(dial(running)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        stop = threading.Event()

        def drip() -> None:
            while not stop.wait(0.1):
                try:
                    sock.sendall(b"X-Drip: 1\r\n")
                except OSError:
                    return

        dripping = threading.Thread(target=drip)
        dripping.start()
        try:
            status, body = answer(sock)
        finally:
            stop.set()
            dripping.join()
        assert status == 408 and reason(body) == "HEADER_TIMEOUT"
        assert body["error"]["status"] == "DEADLINE_EXCEEDED"


def test_the_header_timeout_runs_for_each_request_not_for_the_connection() -> None:
    with serving(header_timeout=0.5) as running, closing(dial(running)) as sock:
        for _ in range(3):  # 3 requests, 0.3 s apart: longer than the timeout in all
            time.sleep(0.3)
            assert healthz(sock) == 200


def test_an_idle_keep_alive_connection_is_closed_after_max_connection_idle() -> None:
    with serving(max_connection_idle=1) as running, closing(dial(running)) as sock:
        assert healthz(sock) == 200
        assert closed_within(sock, 30)


def test_connections_over_max_connections_are_closed_at_once_and_the_rest_served() -> None:
    with serving(max_connections=3) as running:
        held = [dial(running) for _ in range(3)]
        time.sleep(0.2)  # the server has taken them
        with closing(dial(running)) as refused:
            assert closed_within(refused, 10)
        assert healthz(held[0]) == 200
        for sock in held:
            sock.close()
        time.sleep(0.5)  # the server has seen them close
        with httpx.Client(base_url=running.http_url, timeout=30) as http:
            assert http.get("/healthz").status_code == 200


def test_a_websocket_keeps_its_connection_counted_until_it_closes() -> None:
    with serving(max_connections=2) as running:
        url = running.http_url.replace("http://", "ws://") + "/v1/classify/stream"
        with connect(url, open_timeout=30) as websocket, closing(dial(running)) as other:
            websocket.send(RED)
            assert json.loads(websocket.recv(timeout=30))["labels"][0]["class_id"] == 0
            with closing(dial(running)) as refused:
                assert closed_within(refused, 10)
            assert healthz(other) == 200
        time.sleep(0.5)
        with httpx.Client(base_url=running.http_url, timeout=30) as http:
            assert http.get("/healthz").status_code == 200
