"""The web page, its assets and the API docs, read from installed packages.

Files are read with importlib.resources (so they are served from a wheel as from a
checkout), each once, when first asked for; only the names listed here are served.
The page's own files come from this package's static/; the docs page is Swagger UI,
from the swagger-ui-bundle package. Nothing is fetched from elsewhere, and the Content
Security Policy tells the browser so.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from collections.abc import Iterable
from importlib.resources.abc import Traversable

import swagger_ui_bundle
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:;"
    " object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
# Swagger UI sets inline styles and draws its icons from data: URLs.
DOCS_POLICY = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
    " object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
SWAGGER_FILES = ("swagger-ui-bundle.js", "swagger-ui.css")


class Files:
    """Named files of one folder, read once and answered with an ETag."""

    def __init__(self, folder: Traversable, names: Iterable[str], policy: str) -> None:
        self._folder = folder
        self._names = frozenset(names)
        self._policy = policy
        self._read: dict[str, tuple[bytes, str]] = {}

    def respond(self, request: Request, name: str) -> Response:
        if name not in self._names:
            raise HTTPException(404)
        if name not in self._read:
            body = self._folder.joinpath(name).read_bytes()
            self._read[name] = body, f'"{hashlib.blake2b(body, digest_size=12).hexdigest()}"'
        body, etag = self._read[name]
        headers = {
            "ETag": etag,
            "Cache-Control": "no-cache",  # small files: revalidate, and 304 when unchanged
            "Content-Security-Policy": self._policy,
            "X-Content-Type-Options": "nosniff",
        }
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        suffix = name[name.rfind(".") :]
        return Response(body, media_type=MEDIA_TYPES[suffix], headers=headers)


class Page:
    """GET /, /assets/{name}, /docs and /docs/{name}."""

    def __init__(self) -> None:
        static = importlib.resources.files("recognizer.http") / "static"
        names = [entry.name for entry in static.iterdir() if entry.is_file()]
        self._static = Files(static, names, PAGE_POLICY)
        self._swagger = Files(swagger_ui_bundle.swagger_ui_path, SWAGGER_FILES, DOCS_POLICY)

    async def index(self, request: Request) -> Response:
        return self._static.respond(request, "index.html")

    async def asset(self, request: Request) -> Response:
        return self._static.respond(request, request.path_params["name"])

    async def docs(self, request: Request) -> Response:
        response = self._static.respond(request, "docs.html")
        response.headers["Content-Security-Policy"] = DOCS_POLICY
        return response

    async def docs_asset(self, request: Request) -> Response:
        return self._swagger.respond(request, request.path_params["name"])
