"""Who is calling: a bearer token, or a verified client certificate, names a tenant.

Transport-neutral: the gRPC interceptor passes the `authorization` metadata and the
client certificate's subject CN; an HTTP server would pass its Authorization header and
the same CN. A token, when one is sent, decides; without one, the certificate may
name the tenant (with `certificate_tenants`, --tenant-from-cert).

Usage:

    authenticator = Authenticator(TokensFile(Path("tokens.txt")))
    tenant = authenticator.authenticate("Bearer q9Xc1kF0b7WvN2yH4tLm8a")  # or raises
    authenticator.may_use(tenant.name, "wanwu")
"""

from __future__ import annotations

from recognizer.errors import UnauthenticatedError, quoted
from recognizer.security.tokens import Tenant, TokensFile

SCHEME = "Bearer"


class Authenticator:
    """Turns what a caller presents into its tenant, or refuses it (UnauthenticatedError)."""

    def __init__(self, tokens: TokensFile, *, certificate_tenants: bool = False) -> None:
        self.tokens = tokens
        self.certificate_tenants = certificate_tenants

    def authenticate(
        self, authorization: str | None, certificate_name: str | None = None
    ) -> Tenant:
        """The tenant an `Authorization` value (`Bearer TOKEN`) names or, without one, the
        tenant a verified client certificate's subject CN names."""
        tokens = self.tokens.current()
        if authorization is not None:
            tenant = tokens.tenant_for(bearer_token(authorization))
            if tenant is None:
                raise UnauthenticatedError(
                    "the token is not valid: it is wrong, or it was revoked",
                    reason="TOKEN_INVALID",
                )
            return tenant
        if self.certificate_tenants and certificate_name is not None:
            tenant = tokens.tenants.get(certificate_name)
            if tenant is None:
                raise UnauthenticatedError(
                    f"the client certificate's subject CN {quoted(certificate_name)} is not a"
                    " tenant of the tokens file",
                    reason="CERTIFICATE_UNKNOWN",
                )
            return tenant
        raise UnauthenticatedError(
            f"this server needs credentials: send the header authorization: {SCHEME} TOKEN"
            + (", or a client certificate naming a tenant" if self.certificate_tenants else ""),
            reason="CREDENTIALS_MISSING",
        )

    def may_use(self, tenant: str, model: str) -> bool:
        """Whether the tokens file, as it says now, lets the tenant use the model."""
        known = self.tokens.current().tenants.get(tenant)
        return known is not None and known.may_use(model)


def bearer_token(authorization: str) -> str:
    """The token of an `Authorization: Bearer TOKEN` value (the scheme in any case)."""
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != SCHEME.lower() or not token:
        raise UnauthenticatedError(
            f"the authorization header must be {SCHEME} TOKEN", reason="TOKEN_INVALID"
        )
    return token
