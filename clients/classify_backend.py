"""A backend service calling Classify through the generated stubs, with retries done right.

    python clients/classify_backend.py photo.jpg [--server 127.0.0.1:50051]
        [--ca ca.pem] [--token TOKEN]     (TLS and a token: connection.py)

Shows the three things a production caller does: set a deadline, read the structured
error details, and back off by the server's RetryInfo when it is overloaded.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TypeVar

import connection
import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from recognizer.v1 import recognizer_pb2, recognizer_pb2_grpc

M = TypeVar("M", bound=Message)


def unpacked(error: grpc.RpcError, kind: type[M]) -> list[M]:
    """The details of type `kind` in the google.rpc.Status a failed call carries."""
    status = rpc_status.from_call(error)
    found = []
    for detail in status.details if status else ():
        if detail.Is(kind.DESCRIPTOR):
            message = kind()
            detail.Unpack(message)
            found.append(message)
    return found


def retry_delay(error: grpc.RpcError) -> float | None:
    """The delay the server asked for in a google.rpc.RetryInfo detail, if any."""
    for info in unpacked(error, error_details_pb2.RetryInfo):
        return info.retry_delay.seconds + info.retry_delay.nanos / 1e9
    return None


def describe(error: grpc.RpcError) -> str:
    """The code and message, then what the details tell a program: the reason, bad fields."""
    parts = [f"{error.code().name}: {error.details()}"]
    parts += [f"reason {info.reason}" for info in unpacked(error, error_details_pb2.ErrorInfo)]
    parts += [
        f"field {violation.field}: {violation.description}"
        for bad in unpacked(error, error_details_pb2.BadRequest)
        for violation in bad.field_violations
    ]
    return "; ".join(parts)


def classify(
    stub: recognizer_pb2_grpc.RecognizerStub, image: bytes, attempts: int = 3
) -> recognizer_pb2.ClassifyResponse:
    request = recognizer_pb2.ClassifyRequest(image=image, top_k=3, language="en")
    for attempt in range(1, attempts + 1):
        try:
            response: recognizer_pb2.ClassifyResponse = stub.Classify(request, timeout=10)
            return response
        except grpc.RpcError as error:
            delay = retry_delay(error)
            if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED or delay is None:
                raise
            if attempt == attempts:
                raise
            time.sleep(delay)
    raise AssertionError("unreachable")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", type=Path)
    connection.add_arguments(parser)  # --server, --ca, --cert, --key, --server-name, --token
    args = parser.parse_args()
    with connection.open_channel(args) as channel:
        stub = recognizer_pb2_grpc.RecognizerStub(channel)
        try:
            response = classify(stub, args.image.read_bytes())
        except grpc.RpcError as error:
            print(describe(error), file=sys.stderr)
            return 1
    for label in response.labels:
        print(f"{label.score:6.3f}  {label.label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
