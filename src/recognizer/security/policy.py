"""What a server enforces, read once from SecuritySettings and shared by every transport.

The gRPC server (transport/) and any other front end take the same Security: the same
Authenticator (so the tokens file is read once), the same certificate files, the same
rules on what stays open, and the engine the same model access.

Usage:

    security = Security.from_settings(config.security)   # reads the files: fails fast
    engine = Engine(
        models, config.engine, access=security.access, priority_ceiling=security.priority_ceiling
    )
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from recognizer.config.schema import SecuritySettings
from recognizer.engine.types import Priority
from recognizer.security.auth import Authenticator
from recognizer.security.certificates import CertificateFiles
from recognizer.security.tokens import TokensFile


@dataclass(frozen=True, kw_only=True)
class Security:
    """TLS (the certificate files, read), auth (an Authenticator), and what is open without
    credentials. The defaults are a plaintext server with auth off."""

    certificates: CertificateFiles | None = None
    authenticator: Authenticator | None = None
    public_health: bool = True
    public_reflection: bool = False

    @classmethod
    def from_settings(cls, settings: SecuritySettings) -> Security:
        """Read the certificates and the tokens file now: a problem stops start-up."""
        certificates = authenticator = None
        if settings.tls_cert is not None and settings.tls_key is not None:
            certificates = CertificateFiles(
                settings.tls_cert, settings.tls_key, client_ca=settings.tls_client_ca
            )
            certificates.load()
        if settings.tokens_file is not None:
            authenticator = Authenticator(
                TokensFile(settings.tokens_file), certificate_tenants=settings.tenant_from_cert
            )
        return cls(
            certificates=certificates,
            authenticator=authenticator,
            public_health=settings.public_health,
            public_reflection=settings.public_reflection,
        )

    @property
    def tls(self) -> bool:
        return self.certificates is not None

    @property
    def mutual_tls(self) -> bool:
        return self.certificates is not None and self.certificates.client_ca is not None

    @property
    def access(self) -> Callable[[str, str], bool] | None:
        """The engine's model access: (tenant, model) -> allowed; None with auth off."""
        return None if self.authenticator is None else self.authenticator.may_use

    @property
    def priority_ceiling(self) -> Callable[[str], Priority] | None:
        """The engine's priority ceiling: tenant -> its highest class; None with auth off."""
        return None if self.authenticator is None else self.authenticator.priority_ceiling
