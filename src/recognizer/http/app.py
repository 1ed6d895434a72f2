"""The Starlette application: every HTTP route of the service, in one table, which says
which routes need a token.

Open without one, whatever the settings: the page, its assets, the OpenAPI document and
the docs page (files of the package, no data; the page must load to ask for a token),
and /metrics, which answers only when --host is a loopback address (the metrics rules:
no token, and not beyond this machine; --metrics-port with --metrics-host is the way to
let them out). Health and readiness (/v2/health/* and /v2/models/*/ready too) are open
with --public-health. Everything else needs a token when auth is on.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recognizer.config.schema import ServerSettings
from recognizer.engine.engine import Engine
from recognizer.http import errors, openapi, v2
from recognizer.http.access import AccessLogged
from recognizer.http.admin import Admin
from recognizer.http.api import Api
from recognizer.http.auth import Authentication
from recognizer.http.calls import StreamPlace
from recognizer.http.origin import SameOrigin
from recognizer.http.page import Page
from recognizer.http.stream import StreamEndpoint
from recognizer.logs import AccessLog
from recognizer.security.addresses import is_loopback
from recognizer.security.policy import Security
from recognizer.service.calls import CallShares
from recognizer.service.metrics import ServerMetrics
from recognizer.service.models import ModelManager


def create_app(
    engine: Engine,
    settings: ServerSettings,
    metrics: ServerMetrics,
    security: Security | None = None,
    shares: CallShares | None = None,
    *,
    models: ModelManager | None = None,
) -> Starlette:
    """The HTTP face of one engine. Pages of other sites are refused (403); with auth on,
    guarded routes need a token (401); bodies over --max-message-mb are refused (413); a
    WebSocket stream takes its caller's place among the server's calls (`shares`, which
    gRPC's calls share), or is refused (429).

    (Starlette's own max_body_size answers 413 in plain text; ours answers in JSON.)
    """
    security = security or Security()
    shares = shares or CallShares(settings.max_concurrent_rpcs)
    stream = StreamEndpoint(
        engine,
        metrics,
        first_frame_timeout=settings.first_frame_timeout,
        idle_timeout=settings.stream_idle_timeout,
    )
    api = Api(engine, metrics)
    page = Page()
    token: list[Middleware] = []
    if security.authenticator is not None:
        token = [Middleware(Authentication, security.authenticator, metrics.refused)]
    health = [] if security.public_health else token

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(document)

    routes = [
        Route("/", page.index),
        Route("/assets/{name}", page.asset),
        Route("/docs", page.docs),
        Route("/docs/{name}", page.docs_asset),
        Route("/openapi.json", openapi_json),
        Route("/v1/classify", api.classify, methods=["POST"], middleware=token),
        WebSocketRoute(
            "/v1/classify/stream",
            stream.serve,
            middleware=[*token, Middleware(StreamPlace, shares)],
        ),
        Route("/v1/models", api.list_models, middleware=token),
        *(_admin_routes(Admin(models, security, metrics), token) if models is not None else ()),
        Route("/healthz", api.healthz, middleware=health),
        Route("/readyz", api.readyz, middleware=health),
        Route("/metrics", api.metrics if is_loopback(settings.host) else api.metrics_elsewhere),
        *v2.routes(engine, metrics, token=token, health=health),
    ]
    document = openapi.document(_version(), guarded=_guarded(routes))
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(
                AccessLogged,
                AccessLog(enabled=settings.access_log, sample=settings.access_log_sample),
            ),
            Middleware(SameOrigin, settings.http_allowed_origins),
            Middleware(BodyLimit, max_bytes=settings.max_message_bytes),
        ],
        exception_handlers={
            HTTPException: errors.http_exception,
            Exception: errors.internal_error,
        },
    )


class BodyLimit:
    """Refuse a request body over `max_bytes` with 413: at once when its Content-Length says
    so, else when the bytes read pass the limit (the endpoint's read raises)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self._app = app
        self._max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_bytes:
            response = await errors.http_exception(Request(scope), HTTPException(413))
            await response(scope, receive, send)
            return
        read = 0

        async def limited() -> Message:
            nonlocal read
            message = await receive()
            read += len(message.get("body", b""))
            if read > self._max_bytes:
                raise HTTPException(413)
            return message

        await self._app(scope, limited, send)


def _admin_routes(admin: Admin, token: list[Middleware]) -> list[BaseRoute]:
    """ModelAdminService's calls, as Google's custom methods (http/admin.py)."""
    return [
        Route("/v1/models/{name}:load", admin.load, methods=["POST"], middleware=token),
        Route("/v1/models/{name}:unload", admin.unload, methods=["POST"], middleware=token),
        Route("/v1/config:reload", admin.reload, methods=["POST"], middleware=token),
    ]


def _guarded(routes: list[BaseRoute]) -> list[str]:
    """The paths of the routes that need a token."""
    return [
        route.path
        for route in routes
        if isinstance(route, Route | WebSocketRoute) and isinstance(route.app, Authentication)
    ]


def _version() -> str:
    try:
        return version("recognizer")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "0"
