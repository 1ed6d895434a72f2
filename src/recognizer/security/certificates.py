"""The server's TLS certificate, key and client CA, read from disk and re-read on change.

Each reading is checked before it is used: the files parse as PEM, the key is the
certificate's, and the certificate has not expired. At start-up a bad reading stops the
server; later, while a rotation is half written (the new certificate beside the old
key, say), the last good reading stays in use and the problem is logged once, so
handshakes never see a broken pair. Connections already open keep the certificate they
were made with.

Every user of the files (the gRPC server, an HTTP one) asks `current()` and compares what
it gets with what it serves: the files are re-read at most once per change, whoever asks.

Usage:

    files = CertificateFiles(Path("server.pem"), Path("server.key"), client_ca=None)
    identity = files.load()          # at start-up: raises StartupError
    identity = files.current()       # later: the newest good reading (the same object
                                     # until the files change)
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from recognizer.errors import StartupError

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServerIdentity:
    """One good reading of the files: PEM bytes, and what the log says about them."""

    certificate_chain: bytes
    private_key: bytes
    client_ca: bytes | None
    subject: str
    not_after: datetime.datetime


class CertificateFiles:
    """The certificate chain, key and (for mTLS) client CA bundle, as files on disk."""

    def __init__(self, certificate: Path, key: Path, *, client_ca: Path | None = None) -> None:
        self.certificate = certificate
        self.key = key
        self.client_ca = client_ca
        self._lock = threading.Lock()
        self._version: tuple[object, ...] | None = None
        self._failed: tuple[object, ...] | None = None
        self._identity: ServerIdentity | None = None

    @property
    def paths(self) -> tuple[Path, ...]:
        return (self.certificate, self.key, *((self.client_ca,) if self.client_ca else ()))

    def load(self) -> ServerIdentity:
        """Read the files now; a problem is a StartupError that names the file."""
        with self._lock:
            self._version = self._stat()
            self._identity = identity = self._read()
        _log_loaded(identity)
        return identity

    def current(self) -> ServerIdentity:
        """The newest good reading: the files are re-read if they changed since, and a
        reading that fails (a rotation half written) leaves the last good one, logged once.

        Safe from any thread (gRPC asks from its own on each new connection); costs a stat
        of each file when nothing changed.
        """
        with self._lock:
            if self._identity is None:
                raise RuntimeError("load() the certificate files first")
            version = self._stat()
            if version in (self._version, self._failed):
                return self._identity
            try:
                identity = self._read()
            except StartupError as error:
                self._failed = version
                logger.error("keeping the TLS certificate in use: %s", error)
                return self._identity
            self._version, self._identity = version, identity
        _log_loaded(identity)
        return identity

    def _stat(self) -> tuple[object, ...]:
        versions: list[object] = []
        for path in self.paths:
            try:
                stat = os.stat(path)
            except OSError:
                versions.append(None)
                continue
            versions.append((stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns))
        return tuple(versions)

    def _read(self) -> ServerIdentity:
        chain_pem = _read(self.certificate, "--tls-cert")
        key_pem = _read(self.key, "--tls-key")
        ca_pem = _read(self.client_ca, "--tls-client-ca") if self.client_ca else None
        chain = _certificates(chain_pem, self.certificate, "--tls-cert")
        if ca_pem is not None and self.client_ca is not None:
            _certificates(ca_pem, self.client_ca, "--tls-client-ca")
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as error:
            raise StartupError(
                f"--tls-key {self.key} is not an unencrypted PEM private key: {error}"
            ) from error
        leaf = chain[0]
        if _public(key.public_key()) != _public(leaf.public_key()):
            raise StartupError(
                f"--tls-key {self.key} is not the key of the certificate in {self.certificate}"
            )
        now = datetime.datetime.now(datetime.UTC)
        if leaf.not_valid_after_utc <= now:
            expired = f"{leaf.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
            raise StartupError(f"--tls-cert {self.certificate} expired on {expired}")
        if leaf.not_valid_before_utc > now:
            logger.warning(
                "%s is not valid until %s: clients will refuse it until then",
                self.certificate,
                leaf.not_valid_before_utc,
            )
        return ServerIdentity(
            certificate_chain=chain_pem,
            private_key=key_pem,
            client_ca=ca_pem,
            subject=leaf.subject.rfc4514_string(),
            not_after=leaf.not_valid_after_utc,
        )


def _read(path: Path, flag: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise StartupError(f"cannot read {flag} {path}: {error.strerror}") from error


def _certificates(pem: bytes, path: Path, flag: str) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(pem)
    except ValueError as error:
        raise StartupError(f"{flag} {path} holds no PEM certificate: {error}") from error
    return certificates


def _public(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _log_loaded(identity: ServerIdentity) -> None:
    logger.info(
        "TLS certificate %s, valid until %s UTC%s",
        identity.subject,
        f"{identity.not_after:%Y-%m-%d %H:%M}",
        ", client certificates required (mTLS)" if identity.client_ca else "",
    )
