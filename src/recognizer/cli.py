"""The `recognizer` command: `serve` the models; `classify`, `stream` or `bench` against a server.

`serve` settings come from flags, the environment and a TOML file (serve_config.py).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

import grpc
import uvloop

from recognizer.bench.command import MAX_TOP_K, bounded
from recognizer.bench.command import add_parser as add_bench_parser
from recognizer.client import Client, error_status
from recognizer.client.clients import DEFAULT_TARGET
from recognizer.errors import StartupError
from recognizer.serve_config import ENV_PREFIX, add_serve_arguments, serve_config
from recognizer.stream_command import add_stream_parser
from recognizer.terminal import pad


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the chosen command; returns the exit status."""
    args = build_parser().parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.command
    return command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recognizer", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve the models over gRPC")
    serve.set_defaults(command=run_serve)
    add_serve_arguments(serve)

    classify = commands.add_parser("classify", help="classify image files with a running server")
    classify.set_defaults(command=run_classify)
    classify.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    _add_server_flag(classify)
    classify.add_argument(
        "--top-k",
        type=bounded(int, 0, MAX_TOP_K),
        default=5,
        help="labels per image (default: 5)",
    )
    classify.add_argument("--language", default="zh", help="label language: zh or en")
    classify.add_argument("--model", default="", help="model name (default: the server's)")
    classify.add_argument("--min-score", type=float, default=0.0, help="drop labels below this")

    _add_server_flag(add_stream_parser(commands))
    add_bench_parser(commands)
    return parser


def _add_server_flag(parser: argparse.ArgumentParser) -> None:
    env = ENV_PREFIX + "SERVER"
    parser.add_argument(
        "--server",
        default=os.environ.get(env, DEFAULT_TARGET),
        help=f"server address, HOST:PORT (default: {DEFAULT_TARGET}; env {env})",
    )


def run_serve(args: argparse.Namespace) -> int:
    try:
        config = serve_config(args, os.environ)
        _configure_logging(config.log_level)
        # Imported here so that only `serve` pays for importing torch.
        from recognizer.app import serve

        # uvloop: the event loop costs about a quarter less CPU per request (BENCHMARKS.md).
        uvloop.run(serve(config))
    except (StartupError, ValueError, RuntimeError) as error:
        _configure_logging("info")  # no-op once configured
        logging.getLogger("recognizer").error("cannot start: %s", error)
        return 1
    return 0


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def run_classify(args: argparse.Namespace) -> int:
    failed = 0
    with Client(args.server) as client:
        for path in args.images:
            try:
                response = client.classify(
                    path,
                    top_k=args.top_k,
                    language=args.language,
                    model=args.model,
                    min_score=args.min_score,
                )
            except OSError as error:
                print(f"{path}: cannot read: {error.strerror}", file=sys.stderr)
                failed += 1
                continue
            except grpc.RpcError as error:
                status = error_status(error)
                message = status.message if status else error.details()
                print(f"{path}: {error.code().name}: {message}", file=sys.stderr)
                failed += 1
                continue
            timing = response.timing
            total_ms = (timing.queue_us + timing.preprocess_us + timing.inference_us) / 1000
            print(f"{path}  ({response.model}, {total_ms:.1f} ms on the server)")
            print(f"  {'#':>2}  {'class':>5}  {pad('label', 28)}  score")
            for rank, label in enumerate(response.labels, start=1):
                print(
                    f"  {rank:>2}  {label.class_id:>5}  {pad(label.label, 28)}  {label.score:.4f}"
                )
    return 1 if failed else 0
