"""A live camera beside a batch job: what priority classes keep of the camera's latency.

    python benchmarks/priority.py [--out bench-results/priority.json] [--rounds 3]
        [--fps 15] [--concurrency 16] [--duration 20] [--quick]

One `recognizer serve` on the default model; in each round, back to back (every other
round in reverse order, as a shared machine's speed drifts between minutes), with every
image distinct so that no cache answers:

- camera alone: one ClassifyStream at --fps, every frame classified (its frames are
  PRIORITY_HIGH, a stream's default);
- batch alone: --concurrency Classify callers in a closed loop, PRIORITY_LOW;
- camera beside batch: both at once (`recognizer bench --beside-concurrency`);
- one class: both at once with the camera's frames PRIORITY_LOW too, as without priority.

It prints each phase's camera latency (p50, p95, p99) and batch throughput over the
rounds' medians, and the ratios the claim rests on: the camera's latency beside the
batch over its latency alone (the bound is 1.5), and the batch's throughput beside the
camera over alone (it must still progress). Every run's document goes to --out. --quick
is a smoke test: its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compare import HERE, PYTHON, SERVICE_READY, _median, _ratio, run_json, started

BOUND = 1.5  # the camera's latency beside the batch, over alone, at most


@dataclass(frozen=True)
class Plan:
    rounds: int = 3
    fps: float = 15.0
    concurrency: int = 16
    warmup_s: float = 3.0
    duration_s: float = 20.0


def phases(plan: Plan) -> dict[str, list[str]]:
    """Each phase's `recognizer bench` arguments."""
    camera = ["--streams", "1", "--fps", f"{plan.fps:g}"]
    batch = ["--concurrency", str(plan.concurrency), "--priority", "low"]
    beside = ["--beside-concurrency", str(plan.concurrency), "--beside-priority", "low"]
    return {
        "camera alone": camera,
        "batch alone": batch,
        "camera beside batch": [*camera, *beside],
        "one class": [*camera, "--priority", "low", *beside],
    }


def bench(address: str, images: Path, plan: Plan, arguments: list[str]) -> dict[str, Any]:
    """One `recognizer bench` run's JSON document."""
    command = [PYTHON, "-m", "recognizer", "bench", "--server", address, "--unique"]
    return run_json(command, images, plan, arguments)


def camera_of(run: dict[str, Any]) -> dict[str, Any] | None:
    return run if run["setup"]["rpc"] == "ClassifyStream" else None


def batch_of(run: dict[str, Any]) -> dict[str, Any] | None:
    return run.get("beside") or (run if run["setup"]["rpc"] == "Classify" else None)


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Each phase's medians over the rounds, and the ratios of the claim (medians of the
    rounds' own ratios)."""
    report: dict[str, Any] = {}
    for name in rounds[0]:
        cameras = [c for r in rounds if (c := camera_of(r[name]))]
        batches = [b for r in rounds if (b := batch_of(r[name]))]
        line: dict[str, Any] = {}
        if cameras:
            for key in ("p50", "p95", "p99"):
                line[f"camera_{key}_ms"] = _median(c["latency_ms"][key] for c in cameras)
            line["camera_errors"] = sum(c["requests"]["errors"] for c in cameras)
        if batches:
            line["batch_rps"] = _median(b["throughput_rps"] for b in batches)
            line["batch_errors"] = sum(b["requests"]["errors"] for b in batches)
        report[name] = line
    for name in ("camera beside batch", "one class"):
        for key in ("p50", "p95"):
            report[name][f"camera_{key}_over_alone"] = _median(
                _ratio(camera_of(r[name])["latency_ms"][key], r["camera alone"]["latency_ms"][key])  # type: ignore[index]
                for r in rounds
            )
        report[name]["batch_over_alone"] = _median(
            _ratio(batch_of(r[name])["throughput_rps"], r["batch alone"]["throughput_rps"])  # type: ignore[index]
            for r in rounds
        )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results/priority.json"))
    parser.add_argument("--images", type=Path, help="image folder (default: benchmarks/images.py)")
    parser.add_argument("--rounds", type=int, default=Plan.rounds)
    parser.add_argument("--fps", type=float, default=Plan.fps)
    parser.add_argument("--concurrency", type=int, default=Plan.concurrency)
    parser.add_argument("--duration", type=float, default=Plan.duration_s)
    parser.add_argument("--quick", action="store_true", help="a smoke test: every phase short")
    args = parser.parse_args()
    plan = Plan(args.rounds, args.fps, args.concurrency, duration_s=args.duration)
    if args.quick:
        plan = Plan(1, args.fps, 4, warmup_s=0.5, duration_s=1.5)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    images = args.images or args.out.parent / "images"
    if not args.images:
        subprocess.run([PYTHON, str(HERE / "images.py"), str(images)], check=True)
    command = [PYTHON, "-m", "recognizer", "serve", "--port", "0"]
    os.environ["RECOGNIZER_DRAIN_DELAY"] = "0"  # SIGTERM stops it at once
    rounds = []
    with started(command, SERVICE_READY) as address:
        for index in range(plan.rounds):
            order = list(phases(plan).items())[:: -1 if index % 2 else 1]
            rounds.append(
                {name: bench(address, images, plan, arguments) for name, arguments in order}
            )
    report = summarize(rounds)
    args.out.write_text(json.dumps({"plan": vars(plan), "rounds": rounds, "summary": report}))
    print(json.dumps(report, indent=2))
    beside = report["camera beside batch"]
    held = beside["camera_p95_over_alone"] <= BOUND and beside["batch_over_alone"] > 0
    print(
        f"camera p95 beside the batch / alone: {beside['camera_p95_over_alone']:.2f}"
        f" (bound {BOUND}); batch throughput beside / alone: {beside['batch_over_alone']:.2f}"
        f" -> {'held' if held else 'NOT held'}"
    )


if __name__ == "__main__":
    main()
