"""Engine errors ending gRPC calls: the status of service/status.py, with its details in
grpc-status-details-bin.

gRPC's own retry policy cannot read RetryInfo, so a call ended with one also carries the
same delay as `grpc-retry-pushback-ms` (gRFC A6), which gRPC's retries do honour: a
client whose retry policy covers RESOURCE_EXHAUSTED (ours do) comes back when told to.
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
    metadata: tuple[tuple[str, str], ...] = (),
) -> None:
    """End the call with the error's status; the details travel in grpc-status-details-bin."""
    status = rpc_status.to_status(to_status(error))
    if isinstance(error, OverloadedError):
        metadata = (*metadata, (PUSHBACK, str(math.ceil(error.retry_after_s * 1000))))
    await context.abort(status.code, status.details, (*metadata, *status.trailing_metadata))
