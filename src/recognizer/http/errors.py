"""Errors over HTTP: one table of codes, and JSON bodies in Google's HTTP error format.

A body reads `{"error": {"code": 429, "message": ..., "status": "RESOURCE_EXHAUSTED",
"details": [...]}}`: `status` is the canonical code gRPC would send, and `details` are
the same google.rpc messages as gRPC's (an ErrorInfo with the same `reason` always) in
the proto's JSON mapping. A full queue adds `Retry-After`.

Failures of HTTP itself (no such route, a body over --max-message-mb, a content type
that is not an image, form or JSON) have no engine error; they get reasons of their own.
"""

from __future__ import annotations

import logging
import math

from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from recognizer.errors import (
    DeadlineExceededError,
    InvalidRequestError,
    ModelNotFoundError,
    ModelUnavailableError,
    OverloadedError,
    RecognizerError,
    ShuttingDownError,
)
from recognizer.http.jsonmap import to_dict
from recognizer.transport.status import DOMAIN, code_for, to_status

logger = logging.getLogger(__name__)

HTTP_CODES: dict[type[RecognizerError], int] = {
    InvalidRequestError: 400,
    ModelNotFoundError: 404,
    OverloadedError: 429,
    ModelUnavailableError: 503,
    ShuttingDownError: 503,
    DeadlineExceededError: 504,
}

# HTTP's own failures: the HTTP code, the canonical code and the ErrorInfo reason.
HTTP_FAILURES: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "INVALID_REQUEST"),
    404: ("NOT_FOUND", "ROUTE_NOT_FOUND"),
    405: ("UNIMPLEMENTED", "METHOD_NOT_ALLOWED"),
    413: ("RESOURCE_EXHAUSTED", "MESSAGE_TOO_LARGE"),
    415: ("INVALID_ARGUMENT", "UNSUPPORTED_MEDIA_TYPE"),
}


def http_code(error: BaseException) -> int:
    """The HTTP code for an error: by its nearest mapped class, else 500."""
    for cls in type(error).__mro__:
        if cls in HTTP_CODES:
            return HTTP_CODES[cls]
    return 500


def error_response(error: BaseException) -> JSONResponse:
    """The response for an error raised while serving a request (unexpected ones are 500)."""
    status = to_status(error)
    headers = {}
    if isinstance(error, OverloadedError):
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after_s)))
    return _json(http_code(error), code_for(error).name, status, headers)


async def http_exception(request: Request, error: Exception) -> Response:
    """Starlette's HTTPException (unknown route, wrong method, body too large) as JSON."""
    assert isinstance(error, HTTPException)
    canonical, reason = HTTP_FAILURES.get(error.status_code, ("UNKNOWN", "HTTP_ERROR"))
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN))
    status = status_pb2.Status(message=_message(request, error), details=[info])
    return _json(error.status_code, canonical, status, dict(error.headers or {}))


async def internal_error(request: Request, error: Exception) -> Response:
    """A bug outside the classify path: logged here, a generic 500 on the wire."""
    logger.exception("%s %s failed", request.method, request.url.path, exc_info=error)
    return error_response(error)


def _message(request: Request, error: HTTPException) -> str:
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
