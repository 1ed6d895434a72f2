"""Client credentials: what makes a channel TLS, and where a token may go in plaintext."""

from __future__ import annotations

import pytest

from certificates import Pki
from recognizer.client.channel import Credentials, channel_credentials


def test_a_ca_a_certificate_or_a_server_name_means_tls(pki: Pki) -> None:
    assert not Credentials().secure and not Credentials(token="t" * 16).secure
    assert Credentials(tls=True).secure and Credentials(ca=pki.ca).secure
    assert Credentials(server_name="recognizer.internal").secure
    assert Credentials(cert=pki.client[0], key=pki.client[1]).secure
    assert channel_credentials("127.0.0.1:1", Credentials()) is None  # plaintext


@pytest.mark.parametrize(
    "target",
    ["127.0.0.1:50051", "localhost:50051", "[::1]:50051", "dns:///localhost:50051", "unix:/run/r"],
)
def test_a_token_may_go_in_plaintext_to_this_machine(target: str) -> None:
    assert channel_credentials(target, Credentials(token="t" * 16)) is not None


@pytest.mark.parametrize(
    "target", ["10.0.0.7:50051", "recognizer.internal:50051", "dns:///recognizer:443", "[::]:1"]
)
def test_a_token_never_crosses_the_network_in_plaintext(target: str) -> None:
    with pytest.raises(ValueError, match="a token goes only over TLS, or in plaintext to this"):
        channel_credentials(target, Credentials(token="t" * 16))


def test_files_are_read_when_the_channel_is_made(pki: Pki) -> None:
    with pytest.raises(FileNotFoundError):
        channel_credentials("localhost:1", Credentials(ca=pki.ca.with_name("none.pem")))
