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
from recognizer.errors import AdminRequiredError
from recognizer.security.addresses import is_loopback
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
    admin_from_loopback: bool = False  # auth off: --admin

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
            admin_from_loopback=settings.admin and authenticator is None,
        )

    def check_admin(self, tenant: str, peer_host: str) -> None:
        """Raise AdminRequiredError unless the caller may load and unload models: with auth
        on, a tenant with admin=yes; with auth off, a caller on loopback under --admin."""
        if self.authenticator is not None:
            if not self.authenticator.may_administer(tenant):
                raise AdminRequiredError(
                    f"tenant {tenant!r} may not change the served models: the tokens file"
                    " gives that right with admin=yes"
                )
        elif not self.admin_from_loopback:
            raise AdminRequiredError(
                "model admin calls are off: with auth off, start the server with --admin to"
                " allow them from this machine, or turn auth on (--tokens-file) and give a"
                " tenant admin=yes"
            )
        elif not is_loopback(peer_host):
            raise AdminRequiredError(
                f"with auth off, model admin calls come from loopback only, not {peer_host}"
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
