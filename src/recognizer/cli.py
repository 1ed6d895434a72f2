"""The `recognizer` command: `serve` the models; `classify`, `stream` or `bench` against a server.

Every `serve` flag can also be set by an environment variable, named after the flag:
--max-batch-size is RECOGNIZER_MAX_BATCH_SIZE. Flags win over the environment.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc

from recognizer.bench.command import add_parser as add_bench_parser
from recognizer.client import Client, error_status
from recognizer.client.clients import DEFAULT_TARGET
from recognizer.config import Config, MiB, ServerSettings
from recognizer.engine.settings import BACKEND_KINDS, EngineSettings
from recognizer.errors import StartupError
from recognizer.stream_command import add_stream_parser
from recognizer.terminal import pad

T = TypeVar("T")
ENV_PREFIX = "RECOGNIZER_"
LOG_LEVELS = ("debug", "info", "warning", "error")


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
    defaults, engine = ServerSettings(), EngineSettings()
    _flag(serve, "--host", str, defaults.host, "address to listen on (0.0.0.0: every interface)")
    _flag(serve, "--port", int, defaults.port, "port to listen on (0: any free port)")
    serve.add_argument(
        "--model",
        action="append",
        default=None,
        help="model to serve, repeatable; the first is the default (default: the built-in"
        f" efficientnet-lite0; env {ENV_PREFIX}MODEL, comma-separated)",
    )
    _flag(serve, "--device", str, engine.device, "auto, cpu, cuda or cuda:N")
    _flag(
        serve,
        "--backend",
        str,
        engine.backend,
        "auto (onnxruntime on the CPU, torch on CUDA), torch or onnxruntime",
        choices=BACKEND_KINDS,
    )
    _flag(
        serve,
        "--max-batch-size",
        _or_auto(int),
        engine.max_batch_size,
        "largest batch formed; auto measures the best at start-up",
    )
    _flag(
        serve,
        "--max-batch-delay-ms",
        _or_auto(float),
        engine.max_batch_delay_ms,
        "longest wait for a batch to fill; auto is 0 on the CPU, 2 on CUDA",
    )
    _flag(
        serve,
        "--inference-threads",
        _or_auto(int),
        engine.inference_threads,
        "inference workers per model; auto is one per core on the CPU, one on CUDA",
    )
    _flag(
        serve,
        "--preprocess-threads",
        int,
        engine.preprocess_threads,
        "threads decoding and resizing images",
    )
    _flag(
        serve,
        "--max-queued-requests",
        int,
        engine.max_queued_requests,
        "requests a model accepts before refusing with RESOURCE_EXHAUSTED",
    )
    _flag(
        serve,
        "--max-message-mb",
        float,
        defaults.max_message_bytes / MiB,
        "largest request or response, in MiB",
    )
    _flag(serve, "--max-image-pixels", int, engine.max_image_pixels, "largest image, in pixels")
    _flag(
        serve,
        "--cache-entries",
        int,
        engine.cache_entries,
        "results cached by image content and model; 0 turns the cache off",
    )
    _flag(serve, "--cache-mb", float, engine.cache_bytes / MiB, "largest size of the result cache")
    _flag(
        serve,
        "--metrics-port",
        int,
        None,
        "serve Prometheus metrics on this port (0: any free port); off when unset",
    )
    _flag(
        serve,
        "--grace-period",
        float,
        defaults.grace_period_s,
        "seconds in-flight calls get to finish on SIGTERM",
    )
    _flag(serve, "--log-level", str, "info", "logging level", choices=LOG_LEVELS)

    classify = commands.add_parser("classify", help="classify image files with a running server")
    classify.set_defaults(command=run_classify)
    classify.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    _flag(classify, "--server", str, DEFAULT_TARGET, "server address, HOST:PORT")
    classify.add_argument("--top-k", type=int, default=5, help="labels per image (default: 5)")
    classify.add_argument("--language", default="zh", help="label language: zh or en")
    classify.add_argument("--model", default="", help="model name (default: the server's)")
    classify.add_argument("--min-score", type=float, default=0.0, help="drop labels below this")

    stream = add_stream_parser(commands)
    _flag(stream, "--server", str, DEFAULT_TARGET, "server address, HOST:PORT")
    add_bench_parser(commands)
    return parser


def run_serve(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # Imported here so that only `serve` pays for importing torch.
    from recognizer.app import serve
    from recognizer.models.loading import DEFAULT_MODEL

    models = args.model or _env_list("MODEL") or [DEFAULT_MODEL]
    try:
        config = Config(
            models=tuple(models),
            server=ServerSettings(
                host=args.host,
                port=args.port,
                max_message_bytes=int(args.max_message_mb * MiB),
                grace_period_s=args.grace_period,
                metrics_port=args.metrics_port,
            ),
            engine=EngineSettings(
                device=args.device,
                backend=args.backend,
                max_batch_size=args.max_batch_size,
                max_batch_delay_ms=args.max_batch_delay_ms,
                inference_threads=args.inference_threads,
                preprocess_threads=args.preprocess_threads,
                max_queued_requests=args.max_queued_requests,
                max_image_pixels=args.max_image_pixels,
                cache_entries=args.cache_entries,
                cache_bytes=int(args.cache_mb * MiB),
            ),
            log_level=args.log_level,
        )
        asyncio.run(serve(config))
    except (StartupError, ValueError, RuntimeError) as error:
        logging.getLogger("recognizer").error("cannot start: %s", error)
        return 1
    return 0


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


def _flag(
    parser: argparse.ArgumentParser,
    flag: str,
    kind: Callable[[str], Any],
    default: Any,
    help: str,
    **kwargs: Any,
) -> None:
    """Add a flag whose default comes from RECOGNIZER_<FLAG> when that is set."""
    env = ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()
    value = kind(os.environ[env]) if env in os.environ else default
    shown = "auto" if value is None else value
    parser.add_argument(
        flag, type=kind, default=value, help=f"{help} (default: {shown}; env {env})", **kwargs
    )


def _or_auto(kind: Callable[[str], T]) -> Callable[[str], T | None]:
    """A flag type that also takes "auto", meaning None: let the server choose."""

    def parse(text: str) -> T | None:
        return None if text == "auto" else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its error messages
    return parse


def _env_list(name: str) -> list[str]:
    return [item for item in os.environ.get(ENV_PREFIX + name, "").split(",") if item]
