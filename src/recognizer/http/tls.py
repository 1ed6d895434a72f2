"""TLS on the HTTP port: the gRPC port's certificate files, followed as they rotate, each
connection's TLS tied to the reading of the files it was accepted under, and the client
certificate put where the application can read it.

uvicorn (and the event loop under it) takes one ssl.SSLContext for the listener, and asks
it for each new connection's TLS object (`wrap_bio`) before the handshake. Ours answers from
a context built from the files' newest good reading: new connections get the new
certificate and client CA, open ones keep theirs, nothing restarts, as on gRPC. Each
reading's context has its own session cache and issues no session tickets, so no TLS
session can be resumed past the reading that authorised it: a client whose certificate the
rotated CA no longer signs must make a full handshake, and is refused. The same hook keeps
the port's connections, handshaking ones included, within --max-connections: one over it
is closed before its handshake.

uvicorn does not yet put the client certificate in the ASGI scope, so protocol.py adds the
ASGI TLS extension (scope["extensions"]["tls"], with `client_cert_chain` and
`client_cert_name`), from `tls_extension` here.

Usage:

    context = ListeningContext(certificates, connections)   # uvicorn's ssl context
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import tempfile
import weakref
from pathlib import Path
from typing import Any

from cryptography import x509

from recognizer.security.certificates import CertificateFiles, ServerIdentity

logger = logging.getLogger(__name__)

TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}  # as the ASGI TLS extension writes them


class Connections:
    """The connections a port holds now, against its cap."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.open = 0

    @property
    def full(self) -> bool:
        return self.open >= self.cap


class ListeningContext(ssl.SSLContext):
    """The listener's context: each connection's TLS comes from the newest good reading of
    the certificate files, or the connection is refused when the port holds its cap."""

    _certificates: CertificateFiles
    _connections: Connections
    _served: ServerIdentity
    _context: ssl.SSLContext

    def __new__(cls, certificates: CertificateFiles, connections: Connections) -> ListeningContext:
        return super().__new__(cls, ssl.PROTOCOL_TLS_SERVER)

    def __init__(self, certificates: CertificateFiles, connections: Connections) -> None:
        self._certificates = certificates
        self._connections = connections
        self._served = certificates.current()
        self._context = server_context(self._served)

    def wrap_bio(  # type: ignore[override]  # the event loop's call, keywords and all
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        """Called on the event loop for each accepted connection, before its handshake; costs
        a stat of each file when nothing changed. A connection over the cap is given a TLS
        object whose input has already ended: its handshake fails at once, and the event
        loop closes it as it closes any failed handshake (quietly)."""
        tls = self.current().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        if self._connections.full:
            incoming.write_eof()
            return tls
        self._connections.open += 1
        weakref.finalize(tls, _closed, self._connections)  # the loop drops it with the connection
        return tls

    def current(self) -> ssl.SSLContext:
        """The context of the files' newest good reading."""
        try:
            identity = self._certificates.current()
            if identity is not self._served:
                self._served = identity  # tried once: a failure is logged once
                self._context = server_context(identity)
        except Exception:  # raised into the handshake, it would only refuse the client
            logger.exception("cannot use the TLS certificate files' new reading for HTTP")
        return self._context


def _closed(connections: Connections) -> None:
    connections.open -= 1


def server_context(identity: ServerIdentity) -> ssl.SSLContext:
    """A server context for one reading of the files: TLS 1.2 or newer, no session tickets,
    and client certificates required and verified against the client CA when there is one
    (mTLS)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_TICKET  # TLS 1.2's tickets
    context.num_tickets = 0  # TLS 1.3's
    # ssl loads a certificate and key only from files: a private folder, gone at once.
    with tempfile.TemporaryDirectory(prefix="recognizer-tls-") as folder:
        chain, key = Path(folder, "chain.pem"), Path(folder, "key.pem")
        _write_private(chain, identity.certificate_chain)
        _write_private(key, identity.private_key)
        context.load_cert_chain(chain, key)
    if identity.client_ca is not None:
        context.load_verify_locations(cadata=identity.client_ca.decode("ascii"))
        context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["http/1.1"])
    return context


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)


def tls_extension(transport: asyncio.BaseTransport) -> dict[str, Any] | None:
    """The ASGI TLS extension for a connection: its TLS version and, under mTLS, the client's
    verified certificate (the leaf only: Python 3.11 cannot read the rest of the chain);
    None for a plaintext connection."""
    connection: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
    if connection is None:
        return None
    leaf = connection.getpeercert(binary_form=True)
    name = x509.load_der_x509_certificate(leaf).subject.rfc4514_string() if leaf else None
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(leaf)] if leaf else [],
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": TLS_VERSIONS.get(connection.version() or ""),
        "cipher_suite": None,
    }
