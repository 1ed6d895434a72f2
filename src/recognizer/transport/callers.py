"""Who is calling: the one key that fair shares and rate limits count a caller by."""

from __future__ import annotations

from urllib.parse import unquote

import grpc

from recognizer.security.addresses import canonical_host


def caller(context: grpc.aio.ServicerContext[object, object], tenant: str = "") -> str:
    """The authenticated tenant, when there is one; else the peer's address without its port,
    so that every connection from one host counts as one caller."""
    return tenant or peer_host(context.peer())


def peer_host(peer: str) -> str:
    """The address in a gRPC peer string without its port: "ipv4:10.0.0.7:5100" and
    "ipv6:%5B::ffff:10.0.0.7%5D:5100" are both "10.0.0.7"; other kinds (unix:) are kept."""
    kind, _, address = unquote(peer).partition(":")
    if kind not in ("ipv4", "ipv6"):
        return unquote(peer)
    return canonical_host(address.rpartition(":")[0])
