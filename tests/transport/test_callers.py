"""Who is calling: the tenant when there is one, else the peer's host without its port."""

from __future__ import annotations

import pytest

from recognizer.transport.callers import caller, peer_host


@pytest.mark.parametrize(
    ("peer", "host"),
    [
        ("ipv4:10.0.0.7:5100", "10.0.0.7"),
        ("ipv6:[::1]:5100", "::1"),
        ("ipv6:%5B::1%5D:5100", "::1"),
        ("ipv6:%5B2001:db8::7%5D:443", "2001:db8::7"),
        ("ipv6:%5B::ffff:10.0.0.7%5D:5100", "10.0.0.7"),  # IPv4 through a dual-stack socket
        ("unix:/run/recognizer.sock", "unix:/run/recognizer.sock"),
        ("unix-abstract:recognizer", "unix-abstract:recognizer"),
    ],
)
def test_the_port_is_dropped_so_each_host_is_one_caller(peer: str, host: str) -> None:
    assert peer_host(peer) == host


class Context:
    def __init__(self, peer: str) -> None:
        self._peer = peer

    def peer(self) -> str:
        return self._peer


def test_an_authenticated_tenant_is_the_caller_wherever_it_connects_from() -> None:
    context = Context("ipv4:10.0.0.7:5100")
    assert caller(context, tenant="acme") == "acme"  # type: ignore[arg-type]
    assert caller(context) == "10.0.0.7"  # type: ignore[arg-type]
