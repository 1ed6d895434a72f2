"""The Starlette application: every HTTP route of the service, in one table."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute

from recognizer.config.schema import ServerSettings
from recognizer.engine.engine import Engine
from recognizer.http import errors, openapi
from recognizer.http.api import Api
from recognizer.http.page import Page
from recognizer.http.stream import StreamEndpoint
from recognizer.transport.metrics import ServerMetrics


def create_app(engine: Engine, settings: ServerSettings, metrics: ServerMetrics) -> Starlette:
    """The HTTP face of one engine; bodies over --max-message-mb are refused with 413."""
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
        exception_handlers={
            HTTPException: errors.http_exception,
            Exception: errors.internal_error,
        },
        max_body_size=settings.max_message_bytes,
    )


def _version() -> str:
    try:
        return version("recognizer")
    except PackageNotFoundError:  # run from a checkout that is not installed
        return "0"
