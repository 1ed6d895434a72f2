"""Map engine errors to google.rpc.Status: one canonical code per error class, with details.

Details follow Google's API error model: every status carries an ErrorInfo with a
stable reason; bad fields add BadRequest, unknown or forbidden models ResourceInfo, and
a full queue RetryInfo saying when to come back. Unexpected failures become INTERNAL with
a generic message: internals stay in the server log, not on the wire.

gRPC's own retry policy cannot read RetryInfo, so a call ended with one also carries the
same delay as `grpc-retry-pushback-ms` (gRFC A6), which gRPC's retries do honour: a
client whose retry policy covers RESOURCE_EXHAUSTED (ours do) comes back when told to.
"""

from __future__ import annotations

import math

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from recognizer.errors import (
    DeadlineExceededError,
    InvalidRequestError,
    ModelNotFoundError,
    ModelUnavailableError,
    OverloadedError,
    PermissionDeniedError,
    RecognizerError,
    ShuttingDownError,
    UnauthenticatedError,
)

DOMAIN = "recognizer"

_CODES: dict[type[RecognizerError], grpc.StatusCode] = {
    UnauthenticatedError: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDeniedError: grpc.StatusCode.PERMISSION_DENIED,
    InvalidRequestError: grpc.StatusCode.INVALID_ARGUMENT,
    ModelNotFoundError: grpc.StatusCode.NOT_FOUND,
    OverloadedError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    DeadlineExceededError: grpc.StatusCode.DEADLINE_EXCEEDED,
    ModelUnavailableError: grpc.StatusCode.UNAVAILABLE,
    ShuttingDownError: grpc.StatusCode.UNAVAILABLE,
}
PUSHBACK = "grpc-retry-pushback-ms"


def code_for(error: BaseException) -> grpc.StatusCode:
    """The canonical code for an error: by its nearest mapped class, else INTERNAL."""
    for cls in type(error).__mro__:
        if cls in _CODES:
            return _CODES[cls]
    return grpc.StatusCode.INTERNAL


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


async def abort(
    context: grpc.aio.ServicerContext[object, object],
    error: BaseException,
    metadata: tuple[tuple[str, str], ...] = (),
) -> None:
    """End the call with the error's status; the details travel in grpc-status-details-bin."""
    status = rpc_status.to_status(to_status(error))
    if isinstance(error, OverloadedError):
        metadata = (*metadata, (PUSHBACK, str(math.ceil(error.retry_after_s * 1000))))
    await context.abort(status.code, status.details, (*metadata, *status.trailing_metadata))


def _pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed
