"""Errors over HTTP: JSON bodies in Google's HTTP error format, with the HTTP status that
service/status.py pairs with each error class.

A body reads `{"error": {"code": 429, "message": ..., "status": "RESOURCE_EXHAUSTED",
"details": [...]}}`: `status` is the canonical code gRPC would send, and `details` are
the same google.rpc messages as gRPC's (an ErrorInfo with the same `reason` always) in
the proto's JSON mapping. A full queue adds `Retry-After`; a caller without valid
credentials (401) gets `WWW-Authenticate: Bearer`, as RFC 6750 asks. The request's span,
when traced, takes the reason as its `error.type`.

Failures of HTTP itself (no such route, a body over --max-message-mb, a content type
that is not an image, form or JSON, a page of another site, a request head too large or
too slow) have no engine error; they get reasons of their own.
"""

from __future__ import annotations

import http
import logging
import math

from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from recognizer import tracing
from recognizer.errors import (
    OverloadedError,
    UnauthenticatedError,
)
from recognizer.http.jsonmap import to_dict
from recognizer.service.status import DOMAIN, code_for, http_status_for, to_status

logger = logging.getLogger(__name__)

# HTTP's own failures: the HTTP code, the canonical code and the ErrorInfo reason.
HTTP_FAILURES: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "INVALID_REQUEST"),
    403: ("PERMISSION_DENIED", "ORIGIN_NOT_ALLOWED"),
    404: ("NOT_FOUND", "ROUTE_NOT_FOUND"),
    405: ("UNIMPLEMENTED", "METHOD_NOT_ALLOWED"),
    408: ("DEADLINE_EXCEEDED", "HEADER_TIMEOUT"),
    413: ("RESOURCE_EXHAUSTED", "MESSAGE_TOO_LARGE"),
    414: ("RESOURCE_EXHAUSTED", "URL_TOO_LONG"),
    415: ("INVALID_ARGUMENT", "UNSUPPORTED_MEDIA_TYPE"),
    431: ("RESOURCE_EXHAUSTED", "HEADERS_TOO_LARGE"),
}


def error_response(error: BaseException) -> JSONResponse:
    """The response for an error raised while serving a request (unexpected ones are 500)."""
    tracing.failed(error)
    status = to_status(error)
    headers = {}
    if isinstance(error, OverloadedError):
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after_s)))
    if isinstance(error, UnauthenticatedError):
        headers["WWW-Authenticate"] = _challenge(error)
    return _json(http_status_for(error), code_for(error).name, status, headers)


async def http_exception(request: Request, error: Exception) -> Response:
    """Starlette's HTTPException (unknown route, wrong method, body too large) as JSON."""
    assert isinstance(error, HTTPException)
    return failure(error.status_code, _message(request, error), dict(error.headers or {}))


def failure(code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """A failure of HTTP itself, by its HTTP code: the body names its reason."""
    canonical, reason = HTTP_FAILURES.get(code, ("UNKNOWN", "HTTP_ERROR"))
    if (span := tracing.current()) is not None:
        span.fail(reason, message)
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN))
    status = status_pb2.Status(message=message, details=[info])
    return _json(code, canonical, status, headers or {})


async def internal_error(request: Request, error: Exception) -> Response:
    """A bug outside the classify path: logged here, a generic 500 on the wire."""
    logger.exception("%s %s failed", request.method, request.url.path, exc_info=error)
    return error_response(error)


def _challenge(error: UnauthenticatedError) -> str:
    """RFC 6750's challenge: invalid_token when a token was sent and refused."""
    if error.reason == "TOKEN_INVALID":
        return 'Bearer realm="recognizer", error="invalid_token"'
    return 'Bearer realm="recognizer"'


def _message(request: Request, error: HTTPException) -> str:
    if error.detail != http.HTTPStatus(error.status_code).phrase:
        return str(error.detail)  # said by the code that raised it
    match error.status_code:
        case 404:
            return f"no such path: {request.url.path}; see /openapi.json"
        case 405:
            return f"{request.method} is not allowed on {request.url.path}"
        case 413:
            return "the request body is over --max-message-mb"
    return str(error.detail)


def _json(
    code: int, canonical: str, status: status_pb2.Status, headers: dict[str, str]
) -> JSONResponse:
    body = {
        "code": code,
        "message": status.message,
        "status": canonical,
        "details": [to_dict(detail, defaults=False) for detail in status.details],
    }
    return JSONResponse({"error": body}, status_code=code, headers=headers)
