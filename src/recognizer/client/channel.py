"""How a client reaches the server: plaintext or TLS, its own certificate, and a token.

Every client the package ships (Client, AsyncClient, `recognizer classify`, `stream`,
`bench`) opens its channel here, from one Credentials value:

    Credentials()                                   plaintext (a server on this machine)
    Credentials(tls=True)                           TLS, the server checked against the
                                                    system's CAs
    Credentials(ca="ca.pem")                        TLS, checked against this CA bundle
    Credentials(ca=..., cert="client.pem", key="client.key")    mTLS
    Credentials(ca=..., server_name="recognizer.internal")      a certificate issued to
                                                    another name than the address dialled
    Credentials(ca=..., token="...")                authorization: Bearer TOKEN on each call

gRPC sends a token only over TLS, or in plaintext to this machine (local credentials):
a token in plaintext across a network would be read by anyone on the path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from recognizer.security.addresses import is_loopback

PathLike = str | os.PathLike[str]
ChannelOptions = Sequence[tuple[str, Any]]


@dataclass(frozen=True, kw_only=True)
class Credentials:
    """What a client trusts (`ca`, else the system's CAs with `tls`), what it presents
    (`cert` and `key`, a `token`), and the name the server's certificate must carry."""

    tls: bool = False
    ca: PathLike | None = None
    cert: PathLike | None = None
    key: PathLike | None = None
    server_name: str | None = None
    token: str | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("a client certificate needs its key: give both cert and key")

    @property
    def secure(self) -> bool:
        """TLS: asked for, or implied by a CA, a client certificate or a server name."""
        return self.tls or any(
            value is not None for value in (self.ca, self.cert, self.server_name)
        )


def open_channel(
    target: str, credentials: Credentials | None = None, *, options: ChannelOptions = ()
) -> grpc.Channel:
    """A blocking channel to `target` with these credentials."""
    credentials = credentials or Credentials()
    transport = channel_credentials(target, credentials)
    options = [*options, *_name_override(credentials)]
    if transport is None:
        return grpc.insecure_channel(target, options=options)
    return grpc.secure_channel(target, transport, options=options)


def open_aio_channel(
    target: str, credentials: Credentials | None = None, *, options: ChannelOptions = ()
) -> grpc.aio.Channel:
    """An asyncio channel to `target` with these credentials."""
    credentials = credentials or Credentials()
    transport = channel_credentials(target, credentials)
    options = [*options, *_name_override(credentials)]
    if transport is None:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(target, transport, options=options)


def channel_credentials(target: str, credentials: Credentials) -> grpc.ChannelCredentials | None:
    """The channel's gRPC credentials; None for plaintext without a token.

    Raises OSError when a file cannot be read, ValueError for a token that would travel
    in plaintext across a network.
    """
    transport: grpc.ChannelCredentials
    if credentials.secure:
        transport = grpc.ssl_channel_credentials(
            root_certificates=_read(credentials.ca),
            private_key=_read(credentials.key),
            certificate_chain=_read(credentials.cert),
        )
    elif credentials.token is not None:
        if target.startswith("unix:"):
            transport = grpc.local_channel_credentials(grpc.LocalConnectionType.UDS)
        elif is_loopback(_host(target)):
            transport = grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
        else:
            raise ValueError(
                f"a token goes only over TLS, or in plaintext to this machine; {target} is"
                " neither: give the server's CA (--ca FILE), or --tls for a certificate the"
                " system trusts"
            )
    else:
        return None
    if credentials.token is None:
        return transport
    return grpc.composite_channel_credentials(
        transport, grpc.access_token_call_credentials(credentials.token)
    )


def _read(path: PathLike | None) -> bytes | None:
    return None if path is None else Path(path).expanduser().read_bytes()


def _name_override(credentials: Credentials) -> list[tuple[str, Any]]:
    if credentials.server_name is None:
        return []
    return [("grpc.ssl_target_name_override", credentials.server_name)]


def _host(target: str) -> str:
    """The host of a target: HOST:PORT, [IPv6]:PORT, or a dns:/// or ipv4: URI of one."""
    address = target.rpartition("/")[2] if "://" in target else target
    address = address.removeprefix("ipv4:").removeprefix("ipv6:")
    if address.startswith("["):
        return address[1 : address.find("]")]
    return address.rpartition(":")[0] if address.count(":") == 1 else address
