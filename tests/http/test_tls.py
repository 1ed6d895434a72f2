"""TLS and mTLS on the HTTP port through real handshakes: httpx, curl and a WebSocket client,
the gRPC port's certificate files, and a certificate rotated on disk while the server runs."""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

from certificates import HOSTS, Authority, Pki
from fakes import colour_model, solid_png
from recognizer.client import Client, Credentials
from recognizer.config.schema import SecuritySettings
from support import ServerThread

RED = solid_png((200, 0, 0))
PNG = {"Content-Type": "image/png"}


def tls(pki: Pki, **more: object) -> SecuritySettings:
    return SecuritySettings(tls_cert=pki.server[0], tls_key=pki.server[1], **more)  # type: ignore[arg-type]


def handshake(url: str, context: ssl.SSLContext) -> bool:
    """Whether a new connection with this client context gets an answer."""
    try:
        with httpx.Client(verify=context, timeout=30) as http:
            return http.get(url + "/healthz").status_code == 200
    except httpx.TransportError:
        return False


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "30", *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def mutual(pki: Pki) -> Iterator[ServerThread]:
    with ServerThread([colour_model()], security=tls(pki, tls_client_ca=pki.ca), http=True) as s:
        yield s


def test_https_works_through_httpx_and_curl_beside_grpc(pki: Pki) -> None:
    with ServerThread([colour_model()], security=tls(pki), http=True) as running:
        url = running.http_url
        assert url.startswith("https://localhost:")
        with httpx.Client(base_url=url, verify=pki.context(), timeout=30) as http:
            answer = http.post("/v1/classify?language=en", content=RED, headers=PNG)
            assert answer.json()["labels"][0]["label"] == "red"
        with Client(running.address, credentials=Credentials(ca=pki.ca)) as client:
            assert client.classify(RED).labels  # gRPC: the same files, its own port
        over_curl = curl("--cacert", str(pki.ca), url + "/readyz")
        assert over_curl.returncode == 0, over_curl.stderr
        assert json.loads(over_curl.stdout)["status"] == "SERVING"

        assert not handshake(url, pki.context(ca=pki.other_ca))  # untrusted
        assert curl("--cacert", str(pki.other_ca), url + "/readyz").returncode != 0
        plaintext = url.replace("https://", "http://")
        with pytest.raises(httpx.TransportError), httpx.Client(timeout=30) as http:
            http.get(plaintext + "/healthz")


def test_mtls_refuses_clients_without_a_certificate_from_its_ca(
    mutual: ServerThread, pki: Pki
) -> None:
    url = mutual.http_url
    assert handshake(url, pki.context(client=pki.client))
    assert not handshake(url, pki.context())  # no certificate
    assert not handshake(url, pki.context(client=pki.stranger))  # another CA's
    assert not handshake(url, pki.context(client=pki.expired))
    ca, (cert, key) = str(pki.ca), map(str, pki.client)
    accepted = curl("--cacert", ca, "--cert", cert, "--key", key, url + "/v1/models")
    assert accepted.returncode == 0, accepted.stderr
    assert json.loads(accepted.stdout)["models"][0]["name"] == "colours"
    assert curl("--cacert", ca, url + "/v1/models").returncode != 0
    stranger = [str(path) for path in pki.stranger]
    assert curl("--cacert", ca, "--cert", stranger[0], "--key", stranger[1], url).returncode != 0


def test_mtls_covers_the_websocket(mutual: ServerThread, pki: Pki) -> None:
    url = mutual.http_url.replace("https://", "wss://") + "/v1/classify/stream"
    with connect(url, ssl=pki.context(client=pki.client), open_timeout=30) as websocket:
        websocket.send(RED)
        assert json.loads(websocket.recv(timeout=60))["labels"][0]["class_id"] == 0
    with pytest.raises((OSError, WebSocketException)):  # refused in the TLS handshake
        connect(url, ssl=pki.context(), open_timeout=30).close()


def test_a_rotated_certificate_reaches_new_connections_and_spares_open_ones(
    pki: Pki, tmp_path: Path
) -> None:
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    shutil.copy(pki.server[0], cert)
    shutil.copy(pki.server[1], key)
    security = SecuritySettings(tls_cert=cert, tls_key=key)
    with (
        ServerThread([colour_model()], security=security, http=True) as running,
        httpx.Client(base_url=running.http_url, verify=pki.context(), timeout=30) as before,
    ):
        assert before.post("/v1/classify", content=RED, headers=PNG).status_code == 200

        authority = Authority("the next CA")
        rotated = authority.issue("recognizer", hosts=HOSTS)
        key.write_bytes(rotated.key_pem)
        cert.write_bytes(rotated.pem)
        next_ca = authority.write(tmp_path / "next-ca.pem")

        assert handshake(running.http_url, pki.context(ca=next_ca))
        assert not handshake(running.http_url, pki.context())  # the old CA: a new connection
        assert curl("--cacert", str(next_ca), running.http_url + "/healthz").returncode == 0
        # still on the connection it made before (httpx keeps it alive)
        assert before.post("/v1/classify", content=RED, headers=PNG).status_code == 200
        with Client(running.address, credentials=Credentials(ca=next_ca)) as client:
            assert client.classify(RED).labels  # gRPC followed the same files


def test_a_half_written_rotation_keeps_the_last_good_certificate(pki: Pki, tmp_path: Path) -> None:
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    shutil.copy(pki.server[0], cert)
    shutil.copy(pki.server[1], key)
    security = SecuritySettings(tls_cert=cert, tls_key=key)
    with ServerThread([colour_model()], security=security, http=True) as running:
        key.write_bytes(Authority("the next CA").issue("recognizer", hosts=HOSTS).key_pem)
        assert handshake(running.http_url, pki.context())  # the new key alone: not used


def test_a_rotated_client_ca_decides_which_clients_new_connections_accept(
    pki: Pki, tmp_path: Path
) -> None:
    client_ca = tmp_path / "client-ca.pem"
    shutil.copy(pki.ca, client_ca)
    with ServerThread(
        [colour_model()], security=tls(pki, tls_client_ca=client_ca), http=True
    ) as running:
        assert handshake(running.http_url, pki.context(client=pki.client))
        shutil.copy(pki.other_ca, client_ca)  # now the other CA's clients, only
        assert handshake(running.http_url, pki.context(client=pki.stranger))
        assert not handshake(running.http_url, pki.context(client=pki.client))


def https_get(
    port: int, context: ssl.SSLContext, session: ssl.SSLSession | None = None
) -> ssl.SSLSocket:
    """A TLS connection (resuming `session` if given) that has sent GET /healthz and read its
    answer, after which a TLS 1.3 server has sent any session tickets it sends."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        tls = context.wrap_socket(raw, server_hostname="localhost", session=session)
    except OSError:
        raw.close()
        raise
    tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
    data = b""
    while chunk := tls.recv(65536):
        data += chunk
    assert data.startswith(b"HTTP/1.1 200")
    return tls


def test_no_tls_session_outlives_the_client_ca_that_authorised_it(pki: Pki, tmp_path: Path) -> None:
    """A client keeps the session of a full handshake and offers it again: within one reading
    of the files a TLS 1.2 session resumes (TLS 1.3 gets no tickets at all); once the client
    CA is rotated, the session is refused and the client, whose certificate the new CA did
    not sign, with it."""
    client_ca = tmp_path / "client-ca.pem"
    shutil.copy(pki.ca, client_ca)
    with ServerThread(
        [colour_model()], security=tls(pki, tls_client_ca=client_ca), http=True
    ) as running:
        assert running.server.http is not None
        port = running.server.http.port
        tls12 = pki.context(client=pki.client)
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        tls13 = pki.context(client=pki.client)
        tls13.minimum_version = ssl.TLSVersion.TLSv1_3

        with https_get(port, tls12) as first:
            session = first.session
            assert session is not None and not first.session_reused
        with https_get(port, tls12, session) as again:
            assert again.session_reused  # resumption works, within one reading

        with https_get(port, tls13) as modern:
            assert modern.session is None or not modern.session.has_ticket
            kept = modern.session
        with https_get(port, tls13, kept) as again:
            assert not again.session_reused

        shutil.copy(pki.other_ca, client_ca)  # the rotation: this client is revoked
        with pytest.raises((ssl.SSLError, OSError)):
            https_get(port, tls12, session).close()
        with https_get(port, pki.context(client=pki.stranger)) as stranger:
            assert stranger.version() is not None  # the new CA's clients get in


def test_tls_connections_count_from_before_their_handshake(pki: Pki) -> None:
    """Sockets that never start TLS hold the port's places until --header-timeout ends them."""
    settings = {"max_connections": 2, "header_timeout": 1.0}
    with ServerThread([colour_model()], security=tls(pki), http=True, server=settings) as running:
        assert running.server.http is not None
        port = running.server.http.port
        idle = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(2)]
        time.sleep(0.2)
        assert not handshake(running.http_url, pki.context())  # the third: refused
        for sock in idle:
            sock.settimeout(30)
            assert sock.recv(1) == b""  # closed by the handshake timeout
            sock.close()
        assert handshake(running.http_url, pki.context())
