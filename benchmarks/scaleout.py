"""Scale-out: `recognizer bench` through Envoy against one, two and three replicas.

    python benchmarks/images.py bench-images/
    python benchmarks/scaleout.py --images bench-images/ [--out bench-results/] [--quick]

For each count of replicas, that many `recognizer serve` processes start behind Envoy
with the shipped config (benchmarks/fleet.py), and `recognizer bench` loads Envoy in a
closed loop, every image distinct (--unique). Each replica is pinned to cores of its own
with taskset, and so are Envoy and the load generator, when the machine has cores for
all of them (replicas x --cores-per-replica + 2); otherwise nothing is pinned and the
report says that the replicas shared the cores, so the ratios show contention rather
than scale-out. The proxy's cost per request is measured two ways on one replica:
Envoy's own CPU time per request under load, and the median latency at concurrency 1
through Envoy less that of the replica called directly.

It prints a table and writes scaleout.json (every bench document, the pinning and the
machine) into --out. --quick shortens every run, for a smoke test; its numbers mean
nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet import Envoy, Replica, stop_all


@dataclass(frozen=True)
class Plan:
    """How long and how hard each bench runs."""

    duration_s: float
    warmup_s: float
    concurrency: int


FULL = Plan(duration_s=20.0, warmup_s=5.0, concurrency=16)
QUICK = Plan(duration_s=2.0, warmup_s=0.5, concurrency=4)


@dataclass(frozen=True)
class Pinning:
    """Which cores the load generator, Envoy and each replica run on (None: unpinned)."""

    load: list[int] | None
    envoy: list[int] | None
    replicas: list[list[int]] | None

    @classmethod
    def plan(cls, replicas: int, cores_per_replica: int) -> Pinning:
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < replicas * cores_per_replica + 2:
            return cls(None, None, None)
        per_replica = [
            cores[2 + n * cores_per_replica : 2 + (n + 1) * cores_per_replica]
            for n in range(replicas)
        ]
        return cls([cores[0]], [cores[1]], per_replica)

    def replica(self, index: int) -> list[int] | None:
        return None if self.replicas is None else self.replicas[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True, help="a folder of images")
    parser.add_argument("--replicas", type=int, default=3, help="up to this many (default: 3)")
    parser.add_argument("--cores-per-replica", type=int, default=1, help="default: 1")
    parser.add_argument("--model", default="efficientnet-lite0", help="the model to serve")
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--quick", action="store_true", help="a smoke test: short runs")
    args = parser.parse_args()
    plan = QUICK if args.quick else FULL
    pinning = Pinning.plan(args.replicas, args.cores_per_replica)
    serve_args = ["--model", args.model]
    serve_args += ["--inference-workers", str(args.cores_per_replica)]
    serve_args += ["--preprocess-threads", str(args.cores_per_replica)]
    results: dict[str, Any] = {
        "plan": plan.__dict__,
        "pinning": pinning.__dict__,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "runs": {},
    }
    with tempfile.TemporaryDirectory() as scratch, ExitStack() as stack:
        replicas: list[Replica] = []
        stack.callback(lambda: stop_all(replicas))
        for count in range(1, args.replicas + 1):
            replica = Replica(serve_args, cores=pinning.replica(count - 1))
            replicas.append(replica)
            replica.wait_serving()
            addresses = [r.address for r in replicas]
            workdir = Path(scratch) / f"envoy-{count}"
            workdir.mkdir()
            with Envoy(addresses, workdir, cores=pinning.envoy) as envoy:
                cpu_before = envoy.cpu_seconds()
                run = bench(envoy.address, args.images, plan, pinning.load)
                run["envoy_cpu_s"] = envoy.cpu_seconds() - cpu_before
                results["runs"][f"envoy x{count}"] = run
                if count == 1:
                    one_by_one = Plan(plan.duration_s, plan.warmup_s, concurrency=1)
                    results["runs"]["envoy x1 c1"] = bench(
                        envoy.address, args.images, one_by_one, pinning.load
                    )
                    results["runs"]["direct c1"] = bench(
                        addresses[0], args.images, one_by_one, pinning.load
                    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scaleout.json").write_text(json.dumps(results, indent=2) + "\n")
    print(report(results))


def bench(target: str, images: Path, plan: Plan, cores: list[int] | None) -> dict[str, Any]:
    """One `recognizer bench --json` run against `target`."""
    command = [sys.executable, "-m", "recognizer", "bench", "--server", target]
    command += ["--images", str(images), "--unique", "--json", "-"]
    command += ["--concurrency", str(plan.concurrency)]
    command += ["--duration", str(plan.duration_s), "--warmup", str(plan.warmup_s)]
    if cores is not None:
        command = ["taskset", "--cpu-list", ",".join(map(str, cores)), *command]
    started = time.monotonic()
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    run: dict[str, Any] = json.loads(output)
    run["wall_s"] = time.monotonic() - started
    return run


def report(results: dict[str, Any]) -> str:
    runs = results["runs"]
    counts = sorted(
        int(match[1]) for name in runs if (match := re.fullmatch(r"envoy x(\d+)", name))
    )
    base = runs["envoy x1"]["throughput_rps"]
    lines = [
        "replicas  throughput (img/s)  x one replica  p50 ms  p99 ms  errors  Envoy CPU per request"
    ]
    for count in counts:
        run = runs[f"envoy x{count}"]
        per_request = run["envoy_cpu_s"] / max(run["requests"]["answered"], 1) * 1e6
        lines.append(
            f"{count:>8}  {run['throughput_rps']:>18.1f}  {run['throughput_rps'] / base:>13.2f}"
            f"  {run['latency_ms']['p50']:>6.1f}  {run['latency_ms']['p99']:>6.1f}"
            f"  {run['requests']['errors']:>6}  {per_request:>8.0f} us"
        )
    direct = runs["direct c1"]["latency_ms"]["p50"]
    proxied = runs["envoy x1 c1"]["latency_ms"]["p50"]
    lines.append(
        f"one call at a time: p50 {direct:.2f} ms direct, {proxied:.2f} ms through Envoy"
        f" (+{proxied - direct:.2f} ms)"
    )
    if results["pinning"]["replicas"] is None:
        lines.append(
            f"not pinned: {len(os.sched_getaffinity(0))} cores are fewer than the replicas,"
            " Envoy and the load generator need, so they shared them: the ratios show"
            " contention, not scale-out"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
