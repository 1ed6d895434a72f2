"""The Starlette application: every HTTP route of the service, in one table."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recognizer.config.schema import ServerSettings
from recognizer.engine.engine import Engine
from recognizer.http import errors, openapi
from recognizer.http.api import Api
from recognizer.http.page import Page
from recognizer.http.stream import StreamEndpoint
from recognizer.transport.metrics import ServerMetrics


def create_app(engine: Engine, settings: ServerSettings, metrics: ServerMetrics) -> Starlette:
    """The HTTP face of one engine; bodies over --max-message-mb are refused with 413.

    (Starlette's own max_body_size answers 413 in plain text; ours answers in JSON.)
    """
    api = Api(engine, metrics)
    page = Page()
    document = openapi.document(_version())

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(document)

    routes = [
        Route("/", page.index),
        Route("/assets/{name}", page.asset),
        Route("/docs", page.docs),
        Route("/docs/{name}", page.docs_asset),
        Route("/openapi.json", openapi_json),
        Route("/v1/classify", api.classify, methods=["POST"]),
        WebSocketRoute("/v1/classify/stream", StreamEndpoint(engine, metrics).serve),
        Route("/v1/models", api.list_models),
        Route("/healthz", api.healthz),
        Route("/readyz", api.readyz),
        Route("/metrics", api.metrics),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(BodyLimit, max_bytes=settings.max_message_bytes)],
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


def _version() -> str:
    try:
        return version("recognizer")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "0"
