"""TLS and mTLS through real handshakes: the Python clients, certificates the tests make, and
a certificate rotated on disk while the server runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import grpc
import pytest

from certificates import HOSTS, Authority, Pki
from fakes import colour_model, solid_png
from recognizer.client import AsyncClient, Client, Credentials
from recognizer.config.schema import SecuritySettings
from support import ServerThread

RED = solid_png((200, 0, 0))


def tls(pki: Pki, **more: object) -> SecuritySettings:
    return SecuritySettings(tls_cert=pki.server[0], tls_key=pki.server[1], **more)  # type: ignore[arg-type]


def refused(address: str, credentials: Credentials | None) -> grpc.StatusCode:
    """The code a call gets when the handshake fails (or succeeds: OK)."""
    with Client(address, credentials=credentials, timeout=10) as client:
        try:
            client.classify(RED)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


async def test_tls_works_end_to_end_through_both_clients(pki: Pki) -> None:
    with ServerThread([colour_model()], security=tls(pki)) as running:
        trusted = Credentials(ca=pki.ca)
        with Client(running.address, credentials=trusted) as client:
            assert client.classify(RED, language="en").labels[0].label == "red"
            assert client.health() == "SERVING"
        async with AsyncClient(running.address, credentials=trusted) as aclient:
            assert (await aclient.classify(RED, language="en")).labels[0].label == "red"
        assert refused(running.address, None) == grpc.StatusCode.UNAVAILABLE  # plaintext
        other = Credentials(ca=pki.other_ca)
        assert refused(running.address, other) == grpc.StatusCode.UNAVAILABLE  # untrusted


def test_a_certificate_for_another_name_needs_the_server_name(pki: Pki, tmp_path: Path) -> None:
    cert, key = pki.authority.issue("internal", hosts=("recognizer.internal",)).write(
        tmp_path, "internal"
    )
    with ServerThread(
        [colour_model()], security=SecuritySettings(tls_cert=cert, tls_key=key)
    ) as running:
        assert refused(running.address, Credentials(ca=pki.ca)) == grpc.StatusCode.UNAVAILABLE
        named = Credentials(ca=pki.ca, server_name="recognizer.internal")
        assert refused(running.address, named) == grpc.StatusCode.OK


def test_mtls_refuses_clients_without_a_certificate_from_its_ca(pki: Pki) -> None:
    with ServerThread([colour_model()], security=tls(pki, tls_client_ca=pki.ca)) as running:
        client = Credentials(ca=pki.ca, cert=pki.client[0], key=pki.client[1])
        assert refused(running.address, client) == grpc.StatusCode.OK
        assert refused(running.address, Credentials(ca=pki.ca)) == grpc.StatusCode.UNAVAILABLE
        stranger = Credentials(ca=pki.ca, cert=pki.stranger[0], key=pki.stranger[1])
        assert refused(running.address, stranger) == grpc.StatusCode.UNAVAILABLE
        expired = Credentials(ca=pki.ca, cert=pki.expired[0], key=pki.expired[1])
        assert refused(running.address, expired) == grpc.StatusCode.UNAVAILABLE


def test_a_rotated_certificate_reaches_new_connections_and_spares_open_ones(
    pki: Pki, tmp_path: Path
) -> None:
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    shutil.copy(pki.server[0], cert)
    shutil.copy(pki.server[1], key)
    with (
        ServerThread(
            [colour_model()], security=SecuritySettings(tls_cert=cert, tls_key=key)
        ) as running,
        Client(running.address, credentials=Credentials(ca=pki.ca)) as before,
    ):
        assert before.classify(RED).labels  # its connection is open

        authority = Authority("the next CA")
        rotated = authority.issue("recognizer", hosts=HOSTS)
        key.write_bytes(rotated.key_pem)
        cert.write_bytes(rotated.pem)
        next_ca = authority.write(tmp_path / "next-ca.pem")

        assert refused(running.address, Credentials(ca=next_ca)) == grpc.StatusCode.OK
        old_ca = Credentials(ca=pki.ca)
        assert refused(running.address, old_ca) == grpc.StatusCode.UNAVAILABLE
        assert before.classify(RED).labels  # still on the connection it made before


def test_a_certificate_without_its_key_is_refused_by_the_client() -> None:
    with pytest.raises(ValueError, match="a client certificate needs its key"):
        Credentials(cert="client.pem")
