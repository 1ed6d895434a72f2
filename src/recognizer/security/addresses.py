"""Which listening addresses only this machine can reach, and one spelling of a peer's host."""

from __future__ import annotations

import ipaddress

LOOPBACK_NAMES = ("localhost", "ip6-localhost")


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost; 0.0.0.0, a hostname or an interface's address are not."""
    host = host.strip().strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def canonical_host(host: str) -> str:
    """A peer's IP address spelt one way, an IPv4-mapped IPv6 address as IPv4, so that a
    host counts as one caller over gRPC and HTTP alike; anything else is kept."""
    host = host.strip("[]")
    try:
        parsed = ipaddress.ip_address(host)
    except ValueError:
        return host
    return str(parsed.ipv4_mapped or parsed) if parsed.version == 6 else str(parsed)
