"""`recognizer health`: ask a server's gRPC health service, for container health checks.

Exit status 0 when the server (or the named service or model) is SERVING, 1 when it
answers anything else or cannot be reached in time. Docker's HEALTHCHECK and scripts read
the status; Kubernetes asks the health service itself (native gRPC probes).
"""

from __future__ import annotations

import argparse
import sys

import grpc

from recognizer.cli.arguments import add_server_argument, positive
from recognizer.client import Client

SERVING = "SERVING"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("health", help="check a server's health (exit 0 when SERVING)")
    parser.set_defaults(command=run)
    add_server_argument(parser)
    parser.add_argument(
        "--service",
        default="",
        help="the service or model to ask about (default: the whole server)",
    )
    parser.add_argument(
        "--timeout",
        type=positive(float),
        default=5.0,
        help="seconds to wait for the answer (default: 5)",
    )


def run(args: argparse.Namespace) -> int:
    with Client(args.server, timeout=args.timeout) as client:
        try:
            status = client.health(args.service)
        except grpc.RpcError as error:
            print(f"{args.server}: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    print(status)
    return 0 if status == SERVING else 1
