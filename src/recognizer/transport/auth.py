"""Who is calling over gRPC: the `authorization` metadata and, under mTLS, the verified client
certificate's subject CN, as the Authenticator reads them; and the tenant of the call being
served, which the servicer hands to the engine.

Every method but the public ones (health with --public-health, reflection with
--public-reflection) needs credentials that name a tenant; the door (door.py) asks here
before it reads a call's request. A public call that names a tenant anyway is served as that
tenant (health then answers for that tenant's models); one whose credentials fail is served
as nobody, not refused.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc

from recognizer.errors import UnauthenticatedError
from recognizer.security.auth import Authenticator

Context = grpc.aio.ServicerContext[Any, Any]

HEALTH_METHODS = "/grpc.health.v1.Health/"
V2_HEALTH_METHODS = tuple(
    f"/inference.GRPCInferenceService/{name}"
    for name in ("ServerLive", "ServerReady", "ModelReady")
)
REFLECTION_METHODS = (
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)

_tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="")


def current_tenant() -> str:
    """The tenant of the call being served; "" with auth off, or for a public call that
    named none."""
    return _tenant.get()


@contextmanager
def serving(tenant: str) -> Iterator[None]:
    """Serve the block as `tenant` (current_tenant)."""
    token = _tenant.set(tenant)
    try:
        yield
    finally:
        _tenant.reset(token)


@dataclass(frozen=True, slots=True)
class Identity:
    """The tenant a call's credentials name ("" for none), and the credentials themselves."""

    tenant: str = ""
    authorization: str | None = None
    certificate_name: str | None = None


def identify(authenticator: Authenticator, context: Context, *, required: bool) -> Identity:
    """The call's identity; UnauthenticatedError if `required` and its credentials name no
    tenant."""
    try:
        authorization = _authorization(context)
        name = _certificate_name(context) if authenticator.certificate_tenants else None
        tenant = authenticator.authenticate(authorization, name)
    except UnauthenticatedError:
        if required:
            raise
        return Identity()
    return Identity(tenant.name, authorization, name)


def _authorization(context: Context) -> str | None:
    values = [value for key, value in context.invocation_metadata() or () if key == "authorization"]
    if len(values) > 1:
        raise UnauthenticatedError(
            "send one authorization header, not several", reason="TOKEN_INVALID"
        )
    return str(values[0]) if values else None


def _certificate_name(context: Context) -> str | None:
    """The subject CN of the client certificate grpc verified (mTLS only)."""
    names = list(context.auth_context().get("x509_common_name", ()))
    return names[0].decode("utf-8", "replace") if names else None
