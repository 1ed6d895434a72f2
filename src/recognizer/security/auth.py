"""Who is calling: a bearer token, or a verified client certificate, names a tenant.

Transport-neutral: the gRPC interceptor passes the `authorization` metadata and the
client certificate's subject CN; an HTTP server would pass its Authorization header and
the same CN. A token, when one is sent, decides; without one, the certificate may
name the tenant (with `certificate_tenants`, --tenant-from-cert).

A call that lasts (a stream) is held while it runs: when the tokens file, re-read, no
longer names its tenant (its token revoked, its certificate's tenant removed),
`check_held` ends it, so a revoked token keeps nothing open.

Usage:

    authenticator = Authenticator(TokensFile(Path("tokens.txt")))
    tenant = authenticator.authenticate("Bearer q9Xc1kF0b7WvN2yH4tLm8a")  # or raises
    authenticator.may_use(tenant.name, "wanwu")
    with authenticator.hold(tenant.name, "Bearer q9Xc1kF0b7WvN2yH4tLm8a", None, end=stop):
        ...                                   # check_held(), once a second, may call `end`
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from recognizer.engine.types import Priority
from recognizer.errors import UnauthenticatedError, quoted
from recognizer.security.tokens import Tenant, Tokens, TokensFile

SCHEME = "Bearer"


class Authenticator:
    """Turns what a caller presents into its tenant, or refuses it (UnauthenticatedError)."""

    def __init__(self, tokens: TokensFile, *, certificate_tenants: bool = False) -> None:
        self.tokens = tokens
        self.certificate_tenants = certificate_tenants
        self._held: dict[_Held, None] = {}
        self._checked: Tokens | None = None

    def authenticate(
        self, authorization: str | None, certificate_name: str | None = None
    ) -> Tenant:
        """The tenant an `Authorization` value (`Bearer TOKEN`) names or, without one, the
        tenant a verified client certificate's subject CN names."""
        return self._authenticate(self.tokens.current(), authorization, certificate_name)

    @contextmanager
    def hold(
        self,
        tenant: str,
        authorization: str | None,
        certificate_name: str | None,
        end: Callable[[UnauthenticatedError], object],
    ) -> Iterator[None]:
        """During the block, a call that these credentials authenticated as `tenant` is open:
        `end` is called, once, with the refusal if a new reading of the tokens file refuses
        them or names another tenant by them (check_held)."""
        held = _Held(authorization, certificate_name, tenant, end)
        self._held[held] = None
        try:
            yield
        finally:
            self._held.pop(held, None)

    def check_held(self) -> None:
        """Once the tokens file reads differently, authenticate every held call again and end
        those it now refuses. Costs a stat of the file (at most once a second) otherwise."""
        tokens = self.tokens.current()
        if tokens is self._checked:
            return
        self._checked = tokens
        for held in list(self._held):
            try:
                tenant = self._authenticate(tokens, held.authorization, held.certificate_name)
                if tenant.name != held.tenant:
                    raise UnauthenticatedError(
                        "the credentials now name another tenant", reason="TOKEN_INVALID"
                    )
            except UnauthenticatedError as error:
                del self._held[held]
                held.end(error)

    def _authenticate(
        self, tokens: Tokens, authorization: str | None, certificate_name: str | None
    ) -> Tenant:
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

    def may_administer(self, tenant: str) -> bool:
        """Whether the tokens file, as it says now, gives the tenant the admin right."""
        known = self.tokens.current().tenants.get(tenant)
        return known is not None and known.admin

    def priority_ceiling(self, tenant: str) -> Priority:
        """The highest class the tokens file, as it says now, lets the tenant's requests take
        (LOW for a tenant it no longer names: its calls are being ended)."""
        known = self.tokens.current().tenants.get(tenant)
        return Priority.LOW if known is None else known.priority


@dataclass(eq=False, frozen=True)
class _Held:
    """A call open under these credentials, as its tenant, and how to end it."""

    authorization: str | None
    certificate_name: str | None
    tenant: str
    end: Callable[[UnauthenticatedError], object]


def bearer_token(authorization: str) -> str:
    """The token of an `Authorization: Bearer TOKEN` value (the scheme in any case)."""
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != SCHEME.lower() or not token:
        raise UnauthenticatedError(
            f"the authorization header must be {SCHEME} TOKEN", reason="TOKEN_INVALID"
        )
    return token
