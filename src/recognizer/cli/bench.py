"""The `recognizer bench` command line: parse the load, run it, report it."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import Any

import grpc

from recognizer.bench import BenchError
from recognizer.bench.loadgen import CONNECT_TIMEOUT_S, MAX_DURATION_S, MAX_REQUESTS, Load
from recognizer.bench.stats import render, summarize
from recognizer.bench.workload import Workload, find_images
from recognizer.cli.arguments import MAX_TOP_K, add_server_argument, bounded, credentials
from recognizer.client import Client, Credentials
from recognizer.client.clients import DEFAULT_TARGET
from recognizer.priorities import PRIORITY_NAMES

MAX_CONCURRENCY = 1024
MAX_STREAMS = 1024
MAX_RATE = 100_000.0
MAX_FPS = 1000.0
MAX_PROCESSES = 64
MAX_WARMUP_S = 600.0
MAX_TIMEOUT_S = 600.0
DEFAULT_CONCURRENCY = 16
DEFAULT_FPS = 30.0

DESCRIPTION = """\
Load a recognizer server and report throughput, latency percentiles, errors by status
code, batch sizes and cache hits. A closed loop (--concurrency) by default; an open
loop at a fixed rate (--rate) or camera-like streams (--streams) on request. With
--beside-concurrency, a closed loop of Classify callers runs beside that load (a batch job
beside a camera, say), reported on its own.
"""
EPILOG = f"""\
It sends only to --server (default {DEFAULT_TARGET}, this machine). Every run is bounded:
at most {MAX_DURATION_S:.0f} s of measurement and {MAX_REQUESTS:,} measured requests per
client process, and calls still in flight at the end get --timeout to finish.
"""


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `bench` on the `recognizer` command's subparsers."""
    parser = commands.add_parser(
        "bench",
        help="load a server and report throughput and latency",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    parser.set_defaults(command=run_bench)
    parser.add_argument(
        "--images",
        nargs="+",
        required=True,
        metavar="PATH",
        help="image files, or folders of them, sent round-robin",
    )
    add_server_argument(parser, from_env=False)
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument(
        "--concurrency",
        type=bounded(int, 1, MAX_CONCURRENCY),
        help=f"closed loop: callers, each waiting for its answer before sending again"
        f" (default: {DEFAULT_CONCURRENCY}; at most {MAX_CONCURRENCY})",
    )
    shape.add_argument(
        "--rate",
        type=bounded(float, 0.001, MAX_RATE),
        help="open loop: requests per second on a fixed schedule; latency counts from the"
        f" scheduled time (at most {MAX_RATE:.0f})",
    )
    shape.add_argument(
        "--streams",
        type=bounded(int, 1, MAX_STREAMS),
        help=f"ClassifyStream calls, each one camera (at most {MAX_STREAMS})",
    )
    parser.add_argument(
        "--fps",
        type=bounded(float, 0, MAX_FPS),
        help=f"with --streams: frames per second per stream; 0 sends as fast as answered"
        f" (default: {DEFAULT_FPS:.0f})",
    )
    parser.add_argument(
        "--policy",
        choices=("every", "latest"),
        help="with --streams: classify every frame, or only the latest when behind"
        " (default: every)",
    )
    parser.add_argument(
        "--raw",
        action="store_true",
        help="decode each image once here and send raw RGB8 frames instead of encoded bytes",
    )
    parser.add_argument(
        "--unique",
        action="store_true",
        help="make every request's image distinct, so no result cache can answer it",
    )
    length = parser.add_mutually_exclusive_group()
    length.add_argument(
        "--duration",
        type=bounded(float, 0.001, MAX_DURATION_S),
        default=10.0,
        help=f"seconds to measure, after the warm-up (default: 10; at most {MAX_DURATION_S:.0f})",
    )
    length.add_argument(
        "--requests",
        type=bounded(int, 1, MAX_REQUESTS),
        help=f"requests to measure, after the warm-up (at most {MAX_REQUESTS:,})",
    )
    parser.add_argument(
        "--warmup",
        type=bounded(float, 0, MAX_WARMUP_S),
        default=2.0,
        help=f"seconds of load before measuring, not counted (default: 2; at most"
        f" {MAX_WARMUP_S:.0f})",
    )
    parser.add_argument(
        "--processes",
        type=bounded(int, 1, MAX_PROCESSES),
        default=1,
        help="client processes sharing the load, so the client is not the bottleneck"
        f" (default: 1; at most {MAX_PROCESSES})",
    )
    priority = parser.add_argument_group("priority", "how soon the server runs each load's calls")
    priority.add_argument(
        "--priority",
        choices=list(PRIORITY_NAMES),
        help="the requests' priority class (default: the server's, high for streams and"
        " normal for Classify)",
    )
    priority.add_argument(
        "--beside-concurrency",
        type=bounded(int, 1, MAX_CONCURRENCY),
        help="also run this many Classify callers in a closed loop, in client processes of"
        " their own, with the same images, and report them apart",
    )
    priority.add_argument(
        "--beside-priority",
        choices=list(PRIORITY_NAMES),
        help="with --beside-concurrency: those callers' priority class",
    )
    parser.add_argument("--model", default="", help="model name (default: the server's)")
    parser.add_argument(
        "--top-k", type=bounded(int, 0, MAX_TOP_K), default=0, help="labels per answer"
    )
    parser.add_argument(
        "--timeout",
        type=bounded(float, 0.001, MAX_TIMEOUT_S),
        default=30.0,
        help="deadline of each request, in seconds (default: 30)",
    )
    parser.add_argument(
        "--json",
        metavar="FILE",
        help="also write the results as JSON to FILE; '-' writes them to stdout and the"
        " report to stderr",
    )


def run_bench(args: argparse.Namespace) -> int:
    """Run the load; exit status 0 when at least one request was classified (not skipped)."""
    if args.streams is None and (args.fps is not None or args.policy is not None):
        print("recognizer bench: --fps and --policy need --streams", file=sys.stderr)
        return 2
    if args.beside_concurrency is None and args.beside_priority is not None:
        print("recognizer bench: --beside-priority needs --beside-concurrency", file=sys.stderr)
        return 2
    if args.beside_concurrency is not None and args.requests is not None:
        print("recognizer bench: a load beside runs for a --duration", file=sys.stderr)
        return 2
    try:
        connection = credentials(args)
    except (OSError, ValueError) as error:
        print(f"recognizer bench: {error}", file=sys.stderr)
        return 2
    try:
        load = Load(
            target=args.server,
            credentials=connection,
            workload=Workload(
                images=find_images(args.images),
                raw=args.raw,
                unique=args.unique,
                model=args.model,
                top_k=args.top_k,
                priority=args.priority or "",
            ),
            concurrency=args.concurrency or DEFAULT_CONCURRENCY,
            rate=args.rate or 0.0,
            streams=args.streams or 0,
            fps=DEFAULT_FPS if args.fps is None else args.fps,
            policy=args.policy or "every",
            warmup_s=args.warmup,
            duration_s=args.duration,
            requests=args.requests,
            timeout_s=args.timeout,
        )
        load.split(args.processes)  # refuse an impossible split before connecting
        beside = beside_load(load, args.beside_concurrency, args.beside_priority)
        server = describe_server(load.target, load.workload.model, load.credentials)
        from recognizer.bench.processes import run_load, run_loads  # imports tqdm

        if beside is None:
            results, beside_results = run_load(load, processes=args.processes), None
        else:
            results, beside_results = run_loads([(load, args.processes), (beside, 1)])
    except BenchError as error:
        print(f"recognizer bench: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("recognizer bench: interrupted; nothing reported", file=sys.stderr)
        return 130
    summary = summarize(results, setup=describe_load(load, args.processes), server=server)
    report = render(summary)
    if beside is not None and beside_results is not None:
        summary["beside"] = summarize(beside_results, setup=describe_load(beside, 1), server=server)
        report += "\n\nbeside it:\n" + render(summary["beside"])
    if args.json == "-":
        print(report, file=sys.stderr)
        print(json.dumps(summary, indent=2, ensure_ascii=False))
    else:
        print(report)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as file:
                json.dump(summary, file, indent=2, ensure_ascii=False)
    requests = summary["requests"]
    return 0 if requests["ok"] - requests["skipped"] > 0 else 1


def beside_load(load: Load, concurrency: int | None, priority: str | None) -> Load | None:
    """The closed loop of Classify callers to run beside `load`, if asked for: the same
    server, images and length, its own priority."""
    if concurrency is None:
        return None
    workload = replace(load.workload, priority=priority or "")
    return replace(load, workload=workload, concurrency=concurrency, rate=0.0, streams=0)


def describe_load(load: Load, processes: int) -> dict[str, Any]:
    """The setup as the report and the JSON document state it."""
    workload = load.workload
    if load.kind == "stream":
        pace = f"{load.fps:g} fps each" if load.fps else "as fast as answered"
        shape = f"{load.streams} ClassifyStream calls, {pace}, policy {load.policy}"
    elif load.kind == "open":
        shape = f"Classify, open loop at {load.rate:g} requests/s"
    else:
        shape = f"Classify, closed loop, {load.concurrency} callers"
    images = f"{len(workload.images)} {'raw RGB8' if workload.raw else 'encoded'} images"
    return {
        "target": load.target,
        "load": f"{shape}; {images}" + (", each sent once" if workload.unique else ""),
        "rpc": "ClassifyStream" if load.kind == "stream" else "Classify",
        "loop": load.kind,
        "concurrency": load.concurrency if load.kind == "closed" else None,
        "rate": load.rate or None,
        "streams": load.streams or None,
        "fps": load.fps if load.kind == "stream" else None,
        "policy": load.policy if load.kind == "stream" else None,
        "images": list(workload.images),
        "raw": workload.raw,
        "unique": workload.unique,
        "model": workload.model,
        "top_k": workload.top_k,
        "priority": workload.priority or None,
        "warmup_s": load.warmup_s,
        "duration_s": None if load.requests else load.duration_s,
        "requests": load.requests,
        "timeout_s": load.timeout_s,
        "processes": processes,
    }


def describe_server(
    target: str, model: str, connection: Credentials | None = None
) -> dict[str, Any] | None:
    """What the server says it serves for `model`, or None when it does not serve it."""
    try:
        with Client(target, timeout=CONNECT_TIMEOUT_S, credentials=connection) as client:
            models = client.list_models().models
    except grpc.RpcError as error:
        reason = f"{error.code().name}: {error.details()}"
        raise BenchError(f"cannot reach {target}: {reason}") from error
    for info in models:
        if info.name == model or not model:
            return {
                "model": info.name,
                "architecture": info.architecture,
                "backend": info.backend,
                "device": info.device,
                "max_batch_size": info.max_batch_size,
            }
    return None
