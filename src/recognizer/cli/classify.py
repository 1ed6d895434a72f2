"""`recognizer classify IMAGE...`: classify image files with a running server, one table each.

Exit status 1 if any image could not be read or classified.
"""

from __future__ import annotations

import argparse
import sys

import grpc

from recognizer.cli.arguments import MAX_TOP_K, add_server_argument, bounded, credentials
from recognizer.client import Client, error_status
from recognizer.terminal import pad


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("classify", help="classify image files with a running server")
    parser.set_defaults(command=run)
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    add_server_argument(parser)
    parser.add_argument(
        "--top-k", type=bounded(int, 0, MAX_TOP_K), default=5, help="labels per image (default: 5)"
    )
    parser.add_argument("--language", default="zh", help="label language: zh or en")
    parser.add_argument("--model", default="", help="model name (default: the server's)")
    parser.add_argument("--min-score", type=float, default=0.0, help="drop labels below this")


def run(args: argparse.Namespace) -> int:
    failed = 0
    try:
        connection = credentials(args)
    except (OSError, ValueError) as error:
        print(f"recognizer classify: {error}", file=sys.stderr)
        return 2
    with Client(args.server, credentials=connection) as client:
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
