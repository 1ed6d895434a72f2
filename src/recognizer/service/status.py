"""Engine errors as every door answers them: one table pairing each error class with its
canonical code (gRPC's, and Triton's v2 over gRPC) and its HTTP status (our REST routes
and v2's), and the google.rpc.Status with details that all of them carry.

Details follow Google's API error model: every status carries an ErrorInfo with a
stable reason; bad fields add BadRequest, unknown or forbidden models ResourceInfo, and
a full queue RetryInfo saying when to come back. Unexpected failures become INTERNAL
(500) with a generic message: internals stay in the server log, not on the wire.
"""

from __future__ import annotations

import math

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

from recognizer.errors import (
    AdminRequiredError,
    DeadlineExceededError,
    InvalidRequestError,
    ModelChangeError,
    ModelNotFoundError,
    ModelUnavailableError,
    NotEnoughMemoryError,
    OverloadedError,
    PermissionDeniedError,
    RecognizerError,
    ShuttingDownError,
    UnauthenticatedError,
)

DOMAIN = "recognizer"

# Each error class: its canonical code (grpc.StatusCode is the enum of Google's canonical
# codes) and its HTTP status. A new error class needs its one line here.
CODES: dict[type[RecognizerError], tuple[grpc.StatusCode, int]] = {
    UnauthenticatedError: (grpc.StatusCode.UNAUTHENTICATED, 401),
    PermissionDeniedError: (grpc.StatusCode.PERMISSION_DENIED, 403),
    InvalidRequestError: (grpc.StatusCode.INVALID_ARGUMENT, 400),
    ModelNotFoundError: (grpc.StatusCode.NOT_FOUND, 404),
    OverloadedError: (grpc.StatusCode.RESOURCE_EXHAUSTED, 429),
    DeadlineExceededError: (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
    ModelUnavailableError: (grpc.StatusCode.UNAVAILABLE, 503),
    ShuttingDownError: (grpc.StatusCode.UNAVAILABLE, 503),
    AdminRequiredError: (grpc.StatusCode.PERMISSION_DENIED, 403),
    ModelChangeError: (grpc.StatusCode.FAILED_PRECONDITION, 400),
    NotEnoughMemoryError: (grpc.StatusCode.RESOURCE_EXHAUSTED, 507),
}
_UNEXPECTED = (grpc.StatusCode.INTERNAL, 500)


def _codes(error: BaseException) -> tuple[grpc.StatusCode, int]:
    """The codes of the error's nearest class in the table; INTERNAL and 500 if none."""
    for cls in type(error).__mro__:
        if cls in CODES:
            return CODES[cls]
    return _UNEXPECTED


def code_for(error: BaseException) -> grpc.StatusCode:
    """The canonical code for an error."""
    return _codes(error)[0]


def http_status_for(error: BaseException) -> int:
    """The HTTP status for an error."""
    return _codes(error)[1]


def to_status(error: BaseException) -> status_pb2.Status:
    """A google.rpc.Status for any exception raised while serving a request."""
    code = code_for(error)
    if not isinstance(error, RecognizerError):
        return status_pb2.Status(
            code=code.value[0],
            message="internal error while classifying; the server log has the details",
            details=[_pack(error_details_pb2.ErrorInfo(reason="INTERNAL", domain=DOMAIN))],
        )
    details = [_pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN))]
    if isinstance(error, InvalidRequestError):
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=error.field, description=error.message, reason=error.reason
        )
        details.append(_pack(error_details_pb2.BadRequest(field_violations=[violation])))
    elif isinstance(error, ModelNotFoundError):
        resource = error_details_pb2.ResourceInfo(
            resource_type="model",
            resource_name=error.name,
            description=f"served models: {', '.join(error.served)}",
        )
        details.append(_pack(resource))
    elif isinstance(error, PermissionDeniedError):
        resource = error_details_pb2.ResourceInfo(
            resource_type="model",
            resource_name=error.model,
            description=f"tenant {error.tenant!r} may not use this model",
        )
        details.append(_pack(resource))
    elif isinstance(error, OverloadedError):
        seconds = math.floor(error.retry_after_s)
        delay = duration_pb2.Duration(
            seconds=seconds, nanos=int((error.retry_after_s - seconds) * 1e9)
        )
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    return status_pb2.Status(code=code.value[0], message=error.message, details=details)


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed
