"""The argparse types and flags that `serve`, `classify`, `stream` and `bench` share."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import TypeVar

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
    """--server, by default from RECOGNIZER_SERVER (bench reads it from the flag only)."""
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
