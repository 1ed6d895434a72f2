"""NVIDIA's perf_analyzer against recognizer and against the Triton peer, in one run.

    python benchmarks/perf_analyzer.py [--out bench-results/] [--quick] [--concurrency 1 4 16]

Starts `python -m recognizer serve` with its default settings (and any --serve-arg) on a
free loopback port and, when --triton-python names a Python with PyTriton (default:
.venv-triton/bin/python in the checkout), the Triton peer serving the same graph
(triton_peer.py; BENCHMARKS.md says how to make its venv). Then, round by round, runs
perf_analyzer (`make install` puts it in .venv/bin; benchmarks/install_perf_analyzer.sh)
against each over Triton's gRPC protocol (--service-kind=triton), unary and with
--streaming, at each concurrency, sending the benchmark image set (benchmarks/images.py)
as one encoded image a request, from an --input-data file. It prints one table of
throughput and client-side p50 and p99 latency per server, mode and concurrency, the
best of the rounds, and writes every figure to perf_analyzer.json in --out. --quick
measures briefly, for a smoke test; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import shutil
import struct
import subprocess
import sys
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from compare import (
    PYTHON,
    SERVICE_READY,
    add_triton_arguments,
    machine,
    started,
    started_triton,
)

HERE = Path(__file__).resolve().parent
RECOGNIZER_MODEL, RECOGNIZER_INPUT = "efficientnet-lite0", "IMAGE"
TRITON_MODEL, TRITON_INPUT = "efficientnet_lite0", "image"
MODES = {"unary": [], "streaming": ["--streaming"]}


@dataclass(frozen=True)
class Plan:
    """How long each measurement runs; --quick shortens everything."""

    concurrencies: tuple[int, ...] = (1, 4, 16)
    window_ms: int = 5000
    max_trials: int = 10
    stability_percent: int = 10
    rounds: int = 2


QUICK = Plan(concurrencies=(2,), window_ms=1000, max_trials=3, stability_percent=100, rounds=1)


def perf_analyzer() -> str:
    """The perf_analyzer `make install` puts beside this Python."""
    found = shutil.which(
        "perf_analyzer", path=os.pathsep.join([os.path.dirname(sys.executable), os.defpath])
    )
    if found is None:
        sys.exit("no perf_analyzer beside this Python: run `make install`")
    return found


def input_data(images: list[Path], tensor: str, path: Path) -> Path:
    """perf_analyzer's --input-data file: each image a step, as a BYTES element in base64
    (a 4-byte length before its bytes, as the file format wants for BYTES)."""
    steps = []
    for image in images:
        data = image.read_bytes()
        element = base64.b64encode(struct.pack("<I", len(data)) + data).decode()
        steps.append({tensor: {"content": {"b64": element}, "shape": [1]}})
    path.write_text(json.dumps({"data": steps}))
    return path


def measure(
    address: str, model: str, data: Path, mode: str, concurrency: int, plan: Plan, out: Path
) -> dict[str, Any]:
    """One perf_analyzer run: throughput (inferences a second) and latencies (ms)."""
    report = out / f"{model}-{mode}-{concurrency}.csv"
    command = [
        perf_analyzer(),
        "-m",
        model,
        "-u",
        address,
        "-i",
        "grpc",
        "--service-kind=triton",
        "--input-data",
        str(data),
        "--concurrency-range",
        str(concurrency),
        "--measurement-interval",
        str(plan.window_ms),
        "--max-trials",
        str(plan.max_trials),
        "--stability-percentage",
        str(plan.stability_percent),
        "-f",
        str(report),
        *MODES[mode],
    ]
    print(" ".join(command), file=sys.stderr)
    subprocess.run(command, check=True, stdout=sys.stderr, timeout=1800)
    with report.open(newline="") as file:
        row = next(csv.DictReader(file))
    return {
        "concurrency": concurrency,
        "throughput": float(row["Inferences/Second"]),
        "p50_ms": int(row["p50 latency"]) / 1000,
        "p99_ms": int(row["p99 latency"]) / 1000,
    }


def best(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per server, mode and concurrency, the round with the most throughput."""
    table: dict[str, Any] = {}
    for measured in rounds:
        for server, modes in measured.items():
            for mode, runs in modes.items():
                for run in runs:
                    key = (server, mode, run["concurrency"])
                    kept = table.get(str(key))
                    if kept is None or run["throughput"] > kept["throughput"]:
                        table[str(key)] = {"server": server, "mode": mode, **run}
    return dict(sorted(table.items()))


def report(results: dict[str, Any]) -> str:
    lines = [
        f"{'server':<12} {'mode':<10} {'conc':>5} {'infer/s':>9} {'p50 ms':>8} {'p99 ms':>8}",
    ]
    for run in results["best"].values():
        lines.append(
            f"{run['server']:<12} {run['mode']:<10} {run['concurrency']:>5}"
            f" {run['throughput']:>9.1f} {run['p50_ms']:>8.1f} {run['p99_ms']:>8.1f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="output folder")
    parser.add_argument(
        "--images", type=Path, help="folder of JPEGs (default: make the set in --out/images)"
    )
    parser.add_argument("--concurrency", type=int, nargs="+", help="default: 1 4 16")
    parser.add_argument("--rounds", type=int, help="rounds to take the best of (default: 2)")
    parser.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        metavar="FLAG",
        help="one more flag for recognizer serve, repeatable",
    )
    add_triton_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="a smoke test: every run short")
    args = parser.parse_args()
    plan = QUICK if args.quick else Plan()
    if args.concurrency:
        plan = Plan(**{**asdict(plan), "concurrencies": tuple(args.concurrency)})
    if args.rounds:
        plan = Plan(**{**asdict(plan), "rounds": args.rounds})
    args.out.mkdir(parents=True, exist_ok=True)
    folder = args.images or args.out / "images"
    if not args.images:
        make = [PYTHON, str(HERE / "images.py"), str(folder)]
        subprocess.run(make, check=True, stdout=sys.stderr)
    images = sorted(folder.glob("*.jpg"))
    ours = input_data(images, RECOGNIZER_INPUT, args.out / "recognizer-input.json")
    theirs = input_data(images, TRITON_INPUT, args.out / "triton-input.json")
    triton = args.triton_python if args.triton_python.exists() else None
    if triton is None:
        print(f"no Triton peer: {args.triton_python} does not exist", file=sys.stderr)

    command = [PYTHON, "-m", "recognizer", "serve", "--port", "0", *args.serve_arg]
    with started(command, SERVICE_READY) as address, ExitStack() as stack:
        servers = {"recognizer": (address, RECOGNIZER_MODEL, ours)}
        if triton is not None:
            url = stack.enter_context(started_triton(triton, args.out, args.triton_instances))
            host, port = url.removeprefix("http://").rsplit(":", 1)
            servers["triton"] = (f"{host}:{int(port) + 1}", TRITON_MODEL, theirs)  # gRPC
        rounds = []
        for index in range(plan.rounds):
            order = list(servers) if index % 2 == 0 else list(reversed(servers))
            rounds.append(
                {
                    server: {
                        mode: [
                            measure(*servers[server], mode, concurrency, plan, args.out)
                            for concurrency in plan.concurrencies
                        ]
                        for mode in MODES
                    }
                    for server in order
                }
            )

    results = {
        "machine": machine(),
        "plan": asdict(plan),
        "quick": args.quick,
        "serve_args": args.serve_arg,
        "rounds": rounds,
    }
    results["best"] = best(rounds)
    (args.out / "perf_analyzer.json").write_text(json.dumps(results, indent=2))
    print(report(results))
    print(f"\nwrote {args.out / 'perf_analyzer.json'}")


if __name__ == "__main__":
    main()
