"""The argparse types and flags that `serve`, `classify`, `stream` and `bench` share."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import TypeVar

from recognizer.client.channel import Credentials, channel_credentials
from recognizer.client.clients import DEFAULT_TARGET
from recognizer.config.sources import env

Number = TypeVar("Number", int, float)
MAX_TOP_K = 1_000_000  # beyond any model's class count


def bounded(kind: Callable[[str], Number], low: Number, high: Number) -> Callable[[str], Number]:
    """A number in [low, high]."""

    def parse(text: str) -> Number:
        value = kind(text)
        if not low <= value <= high:  # also refuses NaN
            raise argparse.ArgumentTypeError(f"{text} is not between {low} and {high}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def positive(kind: Callable[[str], Number]) -> Callable[[str], Number]:
    """A number above zero."""

    def parse(text: str) -> Number:
        value = kind(text)
        if not value > 0:  # also refuses NaN
            raise argparse.ArgumentTypeError(f"must be above zero: {text}")
        return value

    parse.__name__ = kind.__name__
    return parse


def add_server_argument(parser: argparse.ArgumentParser, *, from_env: bool = True) -> None:
    """--server, by default from RECOGNIZER_SERVER (bench reads it from the flag only), and
    how to connect to it: TLS, a client certificate, a token (read `credentials(args)`)."""
    if from_env:
        parser.add_argument(
            "--server",
            default=os.environ.get(env("server"), DEFAULT_TARGET),
            help=f"server address, HOST:PORT (default: {DEFAULT_TARGET}; env {env('server')})",
        )
    else:
        parser.add_argument(
            "--server", default=DEFAULT_TARGET, help=f"HOST:PORT (default: {DEFAULT_TARGET})"
        )
    connection = parser.add_argument_group(
        "connection", "TLS and credentials; each flag can also be set by its variable"
    )
    connection.add_argument(
        "--tls",
        action="store_true",
        default=os.environ.get(env("tls"), "").lower() in ("1", "true", "yes", "on"),
        help="connect with TLS, trusting the system's CAs (implied by --ca, --cert and"
        f" --server-name; env {env('tls')}=1)",
    )
    for name, metavar, text in (
        ("ca", "FILE", "PEM CA bundle to check the server's certificate against"),
        ("cert", "FILE", "PEM client certificate, for a server that requires one (mTLS)"),
        ("key", "FILE", "the PEM private key of --cert"),
        (
            "server-name",
            "NAME",
            "the name the server's certificate must carry, when it is not the address dialled",
        ),
        (
            "token",
            "TOKEN",
            "bearer token sent with each call; the variable keeps it out of the process list",
        ),
    ):
        variable = env(name.replace("-", "_"))
        connection.add_argument(
            f"--{name}",
            metavar=metavar,
            default=os.environ.get(variable) or None,
            help=f"{text} (env {variable})",
        )


def credentials(args: argparse.Namespace) -> Credentials:
    """The connection flags as client Credentials, checked now: OSError for a file that
    cannot be read, ValueError for a certificate without its key or a token that would
    cross the network in plaintext."""
    connection = Credentials(
        tls=args.tls,
        ca=args.ca,
        cert=args.cert,
        key=args.key,
        server_name=args.server_name,
        token=args.token,
    )
    channel_credentials(args.server, connection)
    return connection
