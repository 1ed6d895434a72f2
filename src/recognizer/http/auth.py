"""Who is calling over HTTP: gRPC's Authenticator, on every route the route table guards.

A request sends `Authorization: Bearer TOKEN`. A WebSocket handshake may send it too, but
browsers cannot set headers on one, so it may offer the token as a subprotocol instead,
as Kubernetes does (`base64url.bearer.authorization.k8s.io.<token>`):

    Sec-WebSocket-Protocol: recognizer.v1, base64url.bearer.recognizer.v1.<base64url(TOKEN)>

The server selects `recognizer.v1` and never echoes the token. Unlike a query parameter,
a header stays out of access logs, proxies' logs and the browser's history. Under mTLS
with --tenant-from-cert, the verified client certificate's CN can name the tenant instead
(read from the ASGI TLS extension, tls.py), as on gRPC.

A caller refused gets 401 with `WWW-Authenticate: Bearer` and the ErrorInfo reason before
any endpoint runs (a WebSocket at its handshake, with the same answer); one accepted runs
with its tenant in the scope, which the endpoints hand to the engine as gRPC's servicer
does. A WebSocket stream is held open under its credentials: when the tokens file, re-read,
no longer accepts them, the stream is ended (ending.py) with UNAUTHENTICATED.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from cryptography import x509
from cryptography.x509.oid import NameOID
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from recognizer.errors import UnauthenticatedError
from recognizer.http.ending import end
from recognizer.http.errors import error_response
from recognizer.security.addresses import canonical_host
from recognizer.security.auth import SCHEME, Authenticator

TENANT = "recognizer.tenant"  # the scope key of the caller's tenant
STREAM_PROTOCOL = "recognizer.v1"  # the WebSocket subprotocol the server selects
TOKEN_PROTOCOL = "base64url.bearer.recognizer.v1."  # + the token, base64url without padding


def tenant_of(connection: HTTPConnection) -> str:
    """The tenant of the request being served; "" with auth off."""
    tenant: str = connection.scope.get(TENANT, "")
    return tenant


def caller_of(connection: HTTPConnection) -> str:
    """Who fair shares and rate limits count: the tenant, else the client's host, as the
    gRPC servicer counts its callers (transport/callers.py)."""
    client = connection.client
    return tenant_of(connection) or canonical_host(client.host if client else "")


class Authentication:
    """Route middleware: the request's tenant, or a 401 answer."""

    def __init__(
        self,
        app: ASGIApp,
        authenticator: Authenticator,
        on_refusal: Callable[[str], object] = lambda reason: None,
    ) -> None:
        self._app = app
        self._authenticator = authenticator
        self._on_refusal = on_refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        connection = HTTPConnection(scope)
        certificates = self._authenticator.certificate_tenants
        try:
            authorization = _authorization(connection)
            name = _certificate_name(scope) if certificates else None
            tenant = self._authenticator.authenticate(authorization, name)
        except UnauthenticatedError as error:
            self._on_refusal(error.reason)
            await error_response(error)(scope, receive, send)  # a WebSocket: denied, not opened
            return
        scope[TENANT] = tenant.name
        if scope["type"] != "websocket":
            await self._app(scope, receive, send)
            return
        with self._authenticator.hold(tenant.name, authorization, name, lambda e: end(scope, e)):
            await self._app(scope, receive, send)


def _authorization(connection: HTTPConnection) -> str | None:
    """The one `Bearer TOKEN` the caller sent: its Authorization header or, on a WebSocket,
    its token subprotocol."""
    sent = connection.headers.getlist("authorization")
    if connection.scope["type"] == "websocket":
        offered = connection.scope.get("subprotocols", ())
        sent += [f"{SCHEME} {_decoded(p)}" for p in offered if p.startswith(TOKEN_PROTOCOL)]
    if len(sent) > 1:
        raise UnauthenticatedError("send one token, not several", reason="TOKEN_INVALID")
    return sent[0] if sent else None


def _decoded(protocol: str) -> str:
    encoded = protocol.removeprefix(TOKEN_PROTOCOL)
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise UnauthenticatedError(
            f"the {TOKEN_PROTOCOL}* subprotocol must end with the token in base64url",
            reason="TOKEN_INVALID",
        ) from None


def _certificate_name(scope: Scope) -> str | None:
    """The subject CN of the client certificate the handshake verified (mTLS only)."""
    tls = (scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain")
    if not chain:
        return None
    leaf = x509.load_pem_x509_certificate(chain[0].encode("ascii"))
    names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(names[0].value) if names else None
