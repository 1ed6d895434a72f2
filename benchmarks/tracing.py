"""What tracing costs: `recognizer serve` with it off, and on, side by side, in rounds.

    python benchmarks/tracing.py [--out bench-results/tracing.json] [--rounds 5]
        [--concurrency 16] [--duration 20] [--before DIR] [--quick]

Each round starts, loads (`recognizer bench`, closed loop, every image distinct so no
cache answers) and stops the server once in each configuration, back to back, every
other round in reverse order, since a shared machine's speed drifts between minutes:

- off: no OTEL_* variable, as a server runs by default;
- unsampled: tracing on, OTEL_TRACES_SAMPLER=always_off (each call checked, none traced);
- on: every call traced and exported over OTLP to a collector on loopback (this script's
  own, which counts the spans and keeps nothing);
- before (with --before DIR): off, in a checkout of the commit before tracing (DIR/src
  on PYTHONPATH, its generated stubs made), for the claim that off costs nothing.

It prints each configuration's median throughput and p50/p99 latency over the rounds,
and its ratio to off's (the median of the rounds' ratios), and writes every run's
document to --out. --quick is a smoke test: its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
from compare import HERE, PYTHON, SERVICE_READY, Plan, _median, _ratio, bench_service, started
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


class Sink(trace_service_pb2_grpc.TraceServiceServicer):
    """The OTLP collector's trace service, counting the spans it is sent."""

    def __init__(self) -> None:
        self.spans = 0
        self._lock = threading.Lock()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        count = sum(len(scope.spans) for rs in request.resource_spans for scope in rs.scope_spans)
        with self._lock:
            self.spans += count
        return trace_service_pb2.ExportTraceServiceResponse()


@contextmanager
def collector() -> Iterator[tuple[Sink, int]]:
    sink = Sink()
    server = grpc.server(futures.ThreadPoolExecutor(2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(sink, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield sink, port
    finally:
        server.stop(None)


def environments(port: int, before: Path | None) -> dict[str, dict[str, str]]:
    """Each configuration's variables, over this process's with no OTEL_* variable."""
    clean = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    clean["RECOGNIZER_DRAIN_DELAY"] = "0"  # SIGTERM stops it at once
    endpoint = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{port}"}
    configurations = {
        "off": clean,
        "unsampled": {**clean, **endpoint, "OTEL_TRACES_SAMPLER": "always_off"},
        "on": {**clean, **endpoint, "OTEL_TRACES_SAMPLER": "always_on"},
    }
    if before is not None:
        configurations["before"] = {**clean, "PYTHONPATH": str(before / "src")}
    return configurations


def run_round(
    configurations: dict[str, dict[str, str]], images: Path, plan: Plan, order: list[str]
) -> dict[str, Any]:
    results = {}
    for name in order:
        env = configurations[name]
        command = ["env", "-i", *(f"{key}={value}" for key, value in env.items())]
        command += [PYTHON, "-m", "recognizer", "serve", "--port", "0"]
        print(f"-- {name}", file=sys.stderr)
        with started(command, SERVICE_READY) as address:
            value = str(plan.round_concurrency)
            results[name] = bench_service(address, images, plan, 1, "--concurrency", value)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results/tracing.json"))
    parser.add_argument("--images", type=Path, help="image folder (default: benchmarks/images.py)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured a run")
    parser.add_argument("--before", type=Path, help="a checkout of the commit before tracing")
    parser.add_argument("--quick", action="store_true", help="a smoke test: every phase short")
    args = parser.parse_args()
    plan = Plan(rounds=args.rounds, round_concurrency=args.concurrency, duration_s=args.duration)
    if args.quick:
        plan = replace(plan, rounds=1, warmup_s=0.5, duration_s=1.0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    images = args.images or args.out.parent / "images"
    if not args.images:
        subprocess.run([PYTHON, str(HERE / "images.py"), str(images)], check=True)
    rounds = []
    with collector() as (sink, port):
        configurations = environments(port, args.before)
        for index in range(plan.rounds):
            order = list(configurations)
            rounds.append(run_round(configurations, images, plan, order[:: -1 if index % 2 else 1]))
        spans = sink.spans
    report = {name: summary(rounds, name) for name in configurations}
    args.out.write_text(json.dumps({"rounds": rounds, "summary": report, "spans": spans}))
    print(f"{'':10} {'images/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'/ off':>6}")
    for name, line in report.items():
        print(
            f"{name:10} {line['throughput_rps']:9.1f} {line['p50_ms']:8.1f}"
            f" {line['p99_ms']:8.1f} {line['over_off']:6.3f}"
        )
    print(f"spans exported to the collector: {spans}")


def summary(rounds: list[dict[str, Any]], name: str) -> dict[str, float]:
    """A configuration's medians over the rounds, and its throughput over off's."""
    runs = [r[name] for r in rounds]
    return {
        "throughput_rps": _median(run["throughput_rps"] for run in runs) or 0.0,
        "p50_ms": _median(run["latency_ms"]["p50"] for run in runs) or 0.0,
        "p99_ms": _median(run["latency_ms"]["p99"] for run in runs) or 0.0,
        "over_off": _median(
            _ratio(r[name]["throughput_rps"], r["off"]["throughput_rps"]) for r in rounds
        )
        or 0.0,
    }


if __name__ == "__main__":
    main()
