"""Engine errors ending gRPC calls: the status of service/status.py, with its details in
grpc-status-details-bin.

gRPC's own retry policy cannot read RetryInfo, so a call ended with one also carries the
same delay as `grpc-retry-pushback-ms` (gRFC A6), which gRPC's retries do honour: a
client whose retry policy covers RESOURCE_EXHAUSTED (ours do) comes back when told to.

grpc keeps the exception `context.abort()` raises on the call's state, and its traceback
holds the frames it passed through: abort is called where those frames hold no request,
with an error whose own tracebacks are dropped, or each refused request (its whole
message) would stay in memory until the garbage collector's next full pass.
"""

from __future__ import annotations

import math

import grpc
from grpc_status import rpc_status

from recognizer.errors import OverloadedError
from recognizer.service.status import to_status

PUSHBACK = "grpc-retry-pushback-ms"


async def abort(
    context: grpc.aio.ServicerContext[object, object],
    error: BaseException,
) -> None:
    """End the call with the error's status, kept beside the trailing metadata already set;
    the details travel in grpc-status-details-bin. An abort is sent trailers-only, which a
    client's retry policy may retry; a status merely set after the handler returns is not."""
    status = rpc_status.to_status(to_status(error))
    metadata = (*context.trailing_metadata(), *status.trailing_metadata)
    if isinstance(error, OverloadedError):
        metadata = (*metadata, (PUSHBACK, str(math.ceil(error.retry_after_s * 1000))))
    await context.abort(status.code, status.details, metadata)
