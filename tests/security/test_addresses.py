"""Which listening addresses other machines can reach."""

from __future__ import annotations

import pytest

from recognizer.security.addresses import canonical_host, is_loopback


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost"])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "[::]", "10.0.0.7", "recognizer.internal", ""])
def test_addresses_others_can_reach(host: str) -> None:
    assert not is_loopback(host)


@pytest.mark.parametrize(
    ("host", "spelt"),
    [
        ("10.0.0.7", "10.0.0.7"),
        ("::ffff:10.0.0.7", "10.0.0.7"),
        ("[::1]", "::1"),
        ("2001:DB8::0001", "2001:db8::1"),
        ("", ""),
        ("unix:/run/socket", "unix:/run/socket"),
    ],
)
def test_a_host_is_spelt_one_way(host: str, spelt: str) -> None:
    assert canonical_host(host) == spelt
