"""The front end's ceiling: how many calls one server process carries when the model costs
nothing, so the RPC layer, decoding and the engine are all that is measured.

    python benchmarks/frontend.py [--out bench-results/] [--quick]

A server process runs recognizer's own Service (gRPC, the engine, its preprocess pool and
batch queue) over `Instant`, a backend that answers at once: a benchmark's stand-in, not a
shipped model. `recognizer bench` (two client processes) loads it with unary calls and
with streams sending as fast as they are answered, with JPEGs (640x480, decoded and
resized by the server), raw RGB frames of the same photos (not decoded; resized) and raw
frames already the model's 224 px (neither: what is left is RPC and the engine). The
server's own CPU time is read from /proc, so each rate is also given per core of the
server: the client shares the machine, and a GPU that answers thousands of images a
second needs that many per core of front end. Writes frontend.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from compare import HERE, PYTHON, SERVICE_READY, machine, started

from recognizer.engine.types import QuantizationCheck

SCENARIOS: dict[str, tuple[str, list[str]]] = {  # (images, flags)
    "unary, JPEG": ("photos", ["--concurrency", "64"]),
    "unary, raw frames": ("photos", ["--concurrency", "64", "--raw"]),
    "unary, 224 px raw frames": ("small", ["--concurrency", "64", "--raw"]),
    "16 streams, JPEG": ("photos", ["--streams", "16", "--fps", "0"]),
    "16 streams, raw frames": ("photos", ["--streams", "16", "--fps", "0", "--raw"]),
    "16 streams, 224 px raw frames": ("small", ["--streams", "16", "--fps", "0", "--raw"]),
}
SMALL = 224  # the model's input size: a frame already that size is only copied
CLASSES = 1000


class Instant:
    """A backend that answers every batch at once: class ids 0 to k-1, scores 1/k."""

    name = "instant"
    device = "cpu"
    precision = "fp32"
    quantization_check: QuantizationCheck | None = None

    def __call__(self, pixels: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        rows = len(pixels)
        scores = np.full((rows, top_k), 1 / top_k, dtype=np.float32)
        return scores, np.broadcast_to(np.arange(top_k), (rows, top_k))


def serve() -> None:
    """The server process: recognizer's Service over Instant, until SIGTERM."""
    import uvloop

    from recognizer.app import Service
    from recognizer.config.schema import EngineSettings, ServerSettings
    from recognizer.engine.engine import Engine, ServedModel
    from recognizer.models.labels import Labels
    from recognizer.models.preprocessing import Preprocessing
    from recognizer.models.spec import ModelSpec

    spec = ModelSpec(
        name="instant",
        architecture="none",
        source_format="benchmark",
        labels=Labels({"en": [f"class {index}" for index in range(CLASSES)]}),
        preprocessing=Preprocessing(),
    )

    async def run() -> None:
        engine = Engine([ServedModel(spec, Instant())], EngineSettings(cache_entries=0))
        service = Service(engine, ServerSettings(port=0, drain_delay=0, reflection=False))
        await service.start()
        print(f"serving recognizer.v1.Recognizer on 127.0.0.1:{service.grpc.port}", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await service.stop(drain_delay=0)

    uvloop.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results"), help="output folder")
    parser.add_argument("--quick", action="store_true", help="a smoke test: every phase short")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    timing = ["--warmup", "0.5", "--duration", "2"] if args.quick else ["--warmup", "3"]
    timing += [] if args.quick else ["--duration", "15"]
    args.out.mkdir(parents=True, exist_ok=True)
    images = {"photos": args.out / "images", "small": args.out / "images-224"}
    subprocess.run(
        [PYTHON, str(HERE / "images.py"), str(images["photos"])], check=True, stdout=sys.stderr
    )
    shrink(images["photos"], images["small"])
    results: dict[str, Any] = {"machine": machine(), "scenarios": {}}
    with started([PYTHON, __file__, "--serve"], SERVICE_READY) as address:
        server = next(
            child
            for child in psutil.Process().children()
            if "frontend.py" in " ".join(child.cmdline())
        )
        for name, (folder, flags) in SCENARIOS.items():
            results["scenarios"][name] = run(address, images[folder], [*flags, *timing], server)
    (args.out / "frontend.json").write_text(json.dumps(results, indent=2))
    print(report(results))


def shrink(source: Path, target: Path) -> None:
    """The photos cut to the model's input size, as PNG (the client sends them raw)."""
    from PIL import Image

    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir()):
        with Image.open(path) as photo:
            photo.convert("RGB").resize((SMALL, SMALL)).save(target / f"{path.stem}.png")


def run(address: str, images: Path, flags: list[str], server: psutil.Process) -> dict[str, Any]:
    """One `recognizer bench` run, with the server's CPU over it."""
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "run.json"
        command = [PYTHON, "-m", "recognizer", "bench", "--server", address, "--unique"]
        command += ["--processes", "2", "--images", str(images), *flags, "--json", str(output)]
        before, started_at = _cpu(server), time.monotonic()
        subprocess.run(command, check=True, stdout=sys.stderr)
        server_cores = (_cpu(server) - before) / (time.monotonic() - started_at)
        summary: dict[str, Any] = json.loads(output.read_text())
    rate = summary["throughput_rps"]
    return {
        "throughput_rps": rate,
        "p99_ms": summary["latency_ms"]["p99"],
        "server_cores": round(server_cores, 3),
        "per_server_core": round(rate / server_cores, 1) if server_cores else None,
        "errors": summary["requests"]["errors"],
    }


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def report(results: dict[str, Any]) -> str:
    lines = [f"{'scenario':<26}{'calls/s':>9}{'p99 ms':>9}{'server cores':>14}{'per core':>10}"]
    for name, found in results["scenarios"].items():
        lines.append(
            f"{name:<26}{found['throughput_rps']:>9.0f}{found['p99_ms']:>9.1f}"
            f"{found['server_cores']:>14.2f}{found['per_server_core'] or 0:>10.0f}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
