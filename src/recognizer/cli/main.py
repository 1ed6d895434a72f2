"""The `recognizer` command: `serve` models; `classify`, `stream`, `bench`, `health` or
manage the `models` of a server."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from recognizer.cli import bench, classify, health, models, serve, stream


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the chosen command; returns the exit status."""
    args = build_parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.command
    return command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recognizer", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    serve.add_parser(commands)
    classify.add_parser(commands)
    stream.add_parser(commands)
    bench.add_parser(commands)
    health.add_parser(commands)
    models.add_parser(commands)
    return parser
