"""TLS on the HTTP port: the gRPC port's certificate files, followed as they rotate, and the
client certificate put where the application can read it.

uvicorn takes one ssl.SSLContext at start-up. Ours starts as the files' first reading and
has an SNI callback, which OpenSSL calls early in every handshake (whether the client sent
a server name or not): when CertificateFiles.current() has a newer reading, the callback
builds a context from it and hands the connection to that one. So new connections get the
new certificate (and client CA), open ones keep theirs, and nothing restarts, as on gRPC.

uvicorn does not yet put the client certificate in the ASGI scope, so the protocol classes
here add the ASGI TLS extension (scope["extensions"]["tls"], with `client_cert_chain` and
`client_cert_name`) to every request and WebSocket of a TLS connection.

Usage:

    context = RotatingContext(certificates).context   # uvicorn's ssl_context_factory
    uvicorn.Config(app, http=HttpProtocol, ws=WebSocketProtocol, ...)
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from recognizer.security.certificates import CertificateFiles, ServerIdentity

logger = logging.getLogger(__name__)

App = Callable[[Any, Any, Any], Awaitable[None]]  # an ASGI application, as uvicorn types it
TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}  # as the ASGI TLS extension writes them


class RotatingContext:
    """The listening context, which passes each handshake to the newest good reading of the
    certificate files."""

    def __init__(self, certificates: CertificateFiles) -> None:
        self._certificates = certificates
        self._served = certificates.current()
        self.context = server_context(self._served)
        self.context.sni_callback = self._choose
        self._newest = self.context

    def _choose(self, connection: ssl.SSLObject, server_name: str | None, _: object) -> None:
        """OpenSSL's servername callback: runs on the event loop, once per handshake, and costs
        a stat of each file when nothing changed."""
        try:
            identity = self._certificates.current()
            if identity is not self._served:
                self._served = identity  # tried once: a failure is logged once
                self._newest = server_context(identity)
        except Exception:  # raised into the handshake, it would only refuse the client
            logger.exception("cannot use the TLS certificate files' new reading for HTTP")
        if self._newest is not self.context:
            connection.context = self._newest


def server_context(identity: ServerIdentity) -> ssl.SSLContext:
    """A server context for one reading of the files: TLS 1.2 or newer, and client
    certificates required and verified against the client CA when there is one (mTLS)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
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


def tls_extension(transport: asyncio.BaseTransport) -> dict[str, Any]:
    """The ASGI TLS extension for a connection: its TLS version and, under mTLS, the client's
    verified certificate (the leaf only: Python 3.11 cannot read the rest of the chain)."""
    connection: ssl.SSLObject | None = transport.get_extra_info("ssl_object")
    leaf = connection.getpeercert(binary_form=True) if connection is not None else None
    name = x509.load_der_x509_certificate(leaf).subject.rfc4514_string() if leaf else None
    version = connection.version() if connection is not None else None
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(leaf)] if leaf else [],
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": TLS_VERSIONS.get(version or ""),
        "cipher_suite": None,
    }


def _with_tls(app: App, transport: asyncio.BaseTransport) -> App:
    """`app`, its every scope given the connection's TLS extension."""
    tls = tls_extension(transport)

    async def with_tls(scope: Any, receive: Any, send: Any) -> None:
        scope["extensions"] = {**(scope.get("extensions") or {}), "tls": tls}
        await app(scope, receive, send)

    return with_tls


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, adding the TLS extension."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.app = _with_tls(self.app, transport)


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol (what an HTTP connection upgrades to), adding the
    TLS extension."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.app = _with_tls(self.app, transport)
