"""How the examples connect, as a backend service would: TLS, a client certificate, a token.

Plain grpc, nothing of recognizer's own, so that it can be copied into a service:

    --ca ca.pem                          TLS, the server's certificate checked against ca.pem
    --tls                                TLS, checked against the system's CAs
    --cert client.pem --key client.key   a client certificate, for a server that asks (mTLS)
    --server-name NAME                   the name on the server's certificate, when it is
                                         not the address dialled
    --token TOKEN                        authorization: Bearer TOKEN on every call

Each flag can also be set by its variable (RECOGNIZER_CA, RECOGNIZER_TOKEN, ...).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import grpc

MAX_MESSAGE_BYTES = 32 << 20  # photos are larger than gRPC's 4 MiB default


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", default=os.environ.get("RECOGNIZER_SERVER", "127.0.0.1:50051"))
    parser.add_argument(
        "--tls", action="store_true", default=bool(os.environ.get("RECOGNIZER_TLS"))
    )
    for name in ("ca", "cert", "key", "server-name", "token"):
        variable = "RECOGNIZER_" + name.upper().replace("-", "_")
        parser.add_argument(f"--{name}", default=os.environ.get(variable), help=f"env {variable}")


def open_channel(args: argparse.Namespace) -> grpc.Channel:
    options: list[tuple[str, int | str]] = [("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
    if args.server_name:
        options.append(("grpc.ssl_target_name_override", args.server_name))
    if args.tls or args.ca or args.cert or args.server_name:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=read(args.ca),
            private_key=read(args.key),
            certificate_chain=read(args.cert),
        )
    elif args.token:
        # gRPC sends a token only over TLS, or in plaintext to a server on this machine.
        credentials = grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
    else:
        return grpc.insecure_channel(args.server, options=options)
    if args.token:
        token = grpc.access_token_call_credentials(args.token)
        credentials = grpc.composite_channel_credentials(credentials, token)
    return grpc.secure_channel(args.server, credentials, options=options)


def read(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None
