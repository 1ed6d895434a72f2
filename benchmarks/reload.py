"""Reloading a model under load: the latency while versions switch, against steady serving.

    python benchmarks/reload.py [--out bench-results/reload.json] [--rounds 3]
        [--concurrency 8] [--duration 20] [--every 5] [--quick]

One `recognizer serve --admin` serving EfficientNet-Lite0 from an ONNX file (exported
here from the built-in model, so that a reload loads a real network: OpenVINO compiles
it, the engine warms it). In each round, back to back (every other round in reverse
order, as a shared machine's speed drifts between minutes), `recognizer bench` loads it
with --concurrency unary callers, every image distinct so that no cache answers:

- steady: nothing changes;
- switching: every --every seconds the model's file is touched and reloaded through the
  admin API (LoadModel), so that a new version is loaded, warmed and switched to while
  the load runs, and the old one retired.

It prints each phase's latency (p50, p95, p99), throughput and failed calls over the
rounds' medians, the switching phase's over the steady phase's, how long each reload
took, and the server's resident memory after each phase (flat across switching phases
if retired versions are freed; the result cache is off, so that its entries do not grow
it). --quick is a smoke test: its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from compare import HERE, PYTHON, SERVICE_READY, _median, _ratio, run_json, started

MiB = 1 << 20
PERCENTILES = ("p50", "p95", "p99")


@dataclass(frozen=True)
class Plan:
    rounds: int = 3
    concurrency: int = 8
    every_s: float = 5.0
    warmup_s: float = 3.0
    duration_s: float = 20.0


def export_model(folder: Path) -> Path:
    """EfficientNet-Lite0 (the built-in model) as an ONNX file with its labels beside it."""
    script = f"""
import shutil, torch
from pathlib import Path
from recognizer.config.models import ModelConfig
from recognizer.models.loading import load_model
loaded = load_model(ModelConfig(path="efficientnet-lite0"))
folder = Path({str(folder)!r})
torch.onnx.export(loaded.network.eval(), (torch.zeros(1, 3, 224, 224),), folder / "lite.onnx",
    input_names=["image"], output_names=["logits"], dynamo=False,
    dynamic_axes={{"image": {{0: "batch"}}, "logits": {{0: "batch"}}}})
"""
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run([PYTHON, "-c", script], check=True)
    labels = HERE.parent / "src" / "recognizer" / "models" / "data" / "imagenet1k_labels.tsv"
    shutil.copy(labels, folder / "labels.tsv")
    return folder / "lite.onnx"


def resident_mib(config: Path) -> float:
    """The resident memory of the server serving `config`."""
    for process in psutil.process_iter(["cmdline"]):
        if str(config) in (process.info["cmdline"] or []):
            return round(process.memory_info().rss / MiB, 1)
    raise RuntimeError("the server process is gone")


def switching(address: str, model: Path, every_s: float, stop: threading.Event) -> list[float]:
    """Touch the model's file and reload it every `every_s` seconds; each reload's seconds."""
    from recognizer.client import Client

    took: list[float] = []
    with Client(address, timeout=300) as client:
        while not stop.wait(every_s):
            os.utime(model)
            started_at = time.monotonic()
            client.load_model("lite")
            took.append(round(time.monotonic() - started_at, 3))
    return took


def bench(address: str, images: Path, plan: Plan) -> dict[str, Any]:
    command = [PYTHON, "-m", "recognizer", "bench", "--server", address, "--unique"]
    return run_json(command, images, plan, ["--concurrency", str(plan.concurrency)])


def phase(
    name: str, address: str, images: Path, plan: Plan, model: Path
) -> tuple[dict[str, Any], list[float]]:
    if name == "steady":
        return bench(address, images, plan), []
    stop = threading.Event()
    reloads: list[float] = []
    reloader = threading.Thread(
        target=lambda: reloads.extend(switching(address, model, plan.every_s, stop))
    )
    reloader.start()
    try:
        return bench(address, images, plan), reloads
    finally:
        stop.set()
        reloader.join()


def latency(done: dict[str, Any], phase: str, key: str) -> float:
    value: float = done[phase]["bench"]["latency_ms"][key]
    return value


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for name in ("steady", "switching"):
        runs = [r[name]["bench"] for r in rounds]
        report[name] = {
            **{
                f"{k}_ms": _median(run["latency_ms"][k] for run in runs)
                for k in ("p50", "p95", "p99")
            },
            "throughput_rps": _median(run["throughput_rps"] for run in runs),
            "errors": sum(run["requests"]["errors"] for run in runs),
        }
    for key in ("p50", "p95", "p99"):
        report[f"switching_{key}_over_steady"] = _median(
            _ratio(
                r["switching"]["bench"]["latency_ms"][key], r["steady"]["bench"]["latency_ms"][key]
            )
            for r in rounds
        )
    report["switching_throughput_over_steady"] = _median(
        _ratio(r["switching"]["bench"]["throughput_rps"], r["steady"]["bench"]["throughput_rps"])
        for r in rounds
    )
    reloads = [s for r in rounds for s in r["switching"]["reloads_s"]]
    report["reloads"] = len(reloads)
    report["reload_s_median"] = statistics.median(reloads) if reloads else None
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results/reload.json"))
    parser.add_argument("--images", type=Path, help="image folder (default: benchmarks/images.py)")
    parser.add_argument("--rounds", type=int, default=Plan.rounds)
    parser.add_argument("--concurrency", type=int, default=Plan.concurrency)
    parser.add_argument("--duration", type=float, default=Plan.duration_s)
    parser.add_argument("--every", type=float, default=Plan.every_s)
    parser.add_argument("--quick", action="store_true", help="a smoke test: every phase short")
    args = parser.parse_args()
    plan = Plan(args.rounds, args.concurrency, args.every, duration_s=args.duration)
    if args.quick:
        plan = Plan(1, 4, 1.0, warmup_s=0.5, duration_s=3.0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    images = args.images or args.out.parent / "images"
    if not args.images:
        subprocess.run([PYTHON, str(HERE / "images.py"), str(images)], check=True)
    os.environ["RECOGNIZER_DRAIN_DELAY"] = "0"  # SIGTERM stops it at once
    with tempfile.TemporaryDirectory() as scratch:
        model = export_model(Path(scratch) / "model")
        config = Path(scratch) / "recognizer.toml"
        config.write_text(f'[[models]]\nname = "lite"\npath = "{model}"\n')
        # No result cache: every image is distinct anyway, and its entries would grow the
        # memory this measures between the first steady phase and the end.
        command = [PYTHON, "-m", "recognizer", "serve", "--port", "0", "--admin"]
        command += ["--config", str(config), "--cache-entries", "0"]
        rounds: list[dict[str, Any]] = []
        memory: list[str] = []
        with started(command, SERVICE_READY) as address:
            for index in range(plan.rounds):
                order = ["steady", "switching"][:: -1 if index % 2 else 1]
                done: dict[str, Any] = {}
                for name in order:
                    run, reloads = phase(name, address, images, plan, model)
                    rss = resident_mib(config)
                    done[name] = {"bench": run, "reloads_s": reloads, "rss_mib": rss}
                    memory.append(f"{name} {rss:.0f}")
                rounds.append(done)
    report = {**summarize(rounds), "rss_mib_after_each_phase": memory}
    args.out.write_text(json.dumps({"plan": vars(plan), "rounds": rounds, "summary": report}))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
