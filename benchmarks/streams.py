"""Measure ClassifyStream the way camera pipelines use it, in one run.

    python benchmarks/streams.py [--out bench-results/] [--quick]

Against `python -m recognizer serve` (default settings) on a free loopback port, with the
benchmark photos as 640x480 JPEGs (or raw RGB8 frames), `recognizer bench` measures:
1. one stream and 8 streams sending as fast as they are answered, encoded and raw;
2. one camera at 30 fps (does it keep up?);
3. overload, 8 cameras at 60 fps, under each policy: every-frame (flow control slows the
   senders, so latency from capture grows) and latest-frame (stale frames are skipped);
4. fairness: a 60 fps camera, a 5 fps camera and 4 unary callers at once;
5. a soak: one stream of 20,000 frames (--soak-frames) with the server's resident memory
   sampled throughout.
Latency is counted from each frame's scheduled capture time. Writes streams.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
from compare import HERE, PYTHON, SERVICE_READY, machine, started

SCENARIOS: dict[str, list[str]] = {
    "1 stream, encoded": ["--streams", "1", "--fps", "0"],
    "1 stream, raw": ["--streams", "1", "--fps", "0", "--raw"],
    "8 streams, encoded": ["--streams", "8", "--fps", "0"],
    "8 streams, raw": ["--streams", "8", "--fps", "0", "--raw"],
    "1 camera at 30 fps": ["--streams", "1", "--fps", "30"],
    "8 cameras at 60 fps, every frame": ["--streams", "8", "--fps", "60", "--policy", "every"],
    "8 cameras at 60 fps, latest frame": ["--streams", "8", "--fps", "60", "--policy", "latest"],
}
FAIRNESS: dict[str, list[str]] = {
    "camera at 60 fps": ["--streams", "1", "--fps", "60"],
    "camera at 5 fps": ["--streams", "1", "--fps", "5"],
    "4 unary callers": ["--concurrency", "4"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="output folder")
    parser.add_argument("--soak-frames", type=int, default=20_000, help="frames in the soak")
    parser.add_argument("--quick", action="store_true", help="a smoke test: every phase short")
    args = parser.parse_args()
    seconds = ("0.5", "2") if args.quick else ("3", "15")
    timing = ["--warmup", seconds[0], "--duration", seconds[1]]
    soak_frames = 500 if args.quick else args.soak_frames
    args.out.mkdir(parents=True, exist_ok=True)
    images = args.out / "images"
    subprocess.run([PYTHON, str(HERE / "images.py"), str(images)], check=True, stdout=sys.stderr)

    results: dict[str, Any] = {"machine": machine(), "quick": args.quick}
    serve = [PYTHON, "-m", "recognizer", "serve", "--port", "0"]
    with started(serve, SERVICE_READY) as address:
        base = [PYTHON, "-m", "recognizer", "bench", "--server", address, "--images", str(images)]
        results["scenarios"] = {
            name: bench([*base, *flags, *timing]) for name, flags in SCENARIOS.items()
        }
        results["fairness"] = concurrently(
            {name: [*base, *flags, *timing] for name, flags in FAIRNESS.items()}
        )
        results["soak"] = soak(base, address, soak_frames)
    (args.out / "streams.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
    print(report(results))
    print(f"\nwrote {args.out / 'streams.json'}")


def bench(command: Sequence[str]) -> dict[str, Any]:
    return concurrently({"run": list(command)})["run"]


def concurrently(commands: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """Run load generators side by side; each writes its JSON document."""
    with tempfile.TemporaryDirectory() as scratch:
        outputs = {name: Path(scratch) / f"{index}.json" for index, name in enumerate(commands)}
        processes = []
        for name, command in commands.items():
            full = [*command, "--json", str(outputs[name])]
            print("$ python", " ".join(full[1:]), file=sys.stderr)
            processes.append(subprocess.Popen(full, stdout=sys.stderr))
        for process in processes:
            process.wait()
        return {name: json.loads(path.read_text()) for name, path in outputs.items()}


def soak(base: list[str], address: str, frames: int) -> dict[str, Any]:
    """One long stream; the server's resident memory sampled every half second."""
    server = _server_process(address)
    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:
        started_at = time.monotonic()
        while not done.wait(0.5):
            samples.append((time.monotonic() - started_at, server.memory_info().rss))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        stream = ["--streams", "1", "--fps", "0", "--warmup", "0", "--requests", str(frames)]
        run = bench([*base, *stream])
    finally:
        done.set()
        sampler.join()
    warm = [rss for at, rss in samples if at >= samples[-1][0] * 0.2] if samples else []
    growth = round((max(warm) - warm[0]) / 2**20, 1) if warm else None
    return {
        "frames": frames,
        "run": run,
        "rss_mib": [[round(at, 1), round(rss / 2**20, 1)] for at, rss in samples],
        "rss_growth_after_warm_up_mib": growth,
    }


def _server_process(address: str) -> psutil.Process:
    """The process listening on the server's port."""
    port = int(address.rsplit(":", 1)[1])
    for connection in psutil.net_connections(kind="tcp"):
        if connection.laddr and connection.laddr.port == port and connection.status == "LISTEN":
            return psutil.Process(connection.pid)
    raise RuntimeError(f"no process listens on {address}")


def report(results: dict[str, Any]) -> str:
    rows = ["| scenario | answered/s | skipped | errors | p50 ms | p95 ms | p99 ms | mean batch |"]
    rows.append("|---|---|---|---|---|---|---|---|")
    runs = {**results["scenarios"], **{f"fairness: {k}": v for k, v in results["fairness"].items()}}
    for name, run in runs.items():
        latency, requests = run["latency_ms"], run["requests"]
        rows.append(
            f"| {name} | {run['throughput_rps']:.1f} | {requests['skipped']} |"
            f" {requests['errors']} | {_ms(latency['p50'])} | {_ms(latency['p95'])} |"
            f" {_ms(latency['p99'])} | {run['mean_batch_size'] or '-'} |"
        )
    soak_result = results["soak"]
    rows.append(
        f"\nsoak: {soak_result['frames']} frames at {soak_result['run']['throughput_rps']:.1f}/s;"
        f" server resident memory grew {soak_result['rss_growth_after_warm_up_mib']} MiB"
        " after the first fifth of the run"
    )
    return "\n".join(rows)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


if __name__ == "__main__":
    main()
