"""The in-process limit: recognizer's model, images and preprocessing with nothing in the way.

    python benchmarks/limit.py --images bench-images/ [--duration 5] [--json limit.json]

No RPC, no serialisation, no event loop: decoding and preprocessing run recognizer's own
decode_image and prepare_input in a pool of one thread per CPU (as the server's
preprocess pool), and inference runs the backend the server builds
(create_backend(kind="auto"): OpenVINO on the CPU) in one worker thread per core,
each with its share of the cores (the server's default). Each worker has its next batch
prepared while it runs the current one. Every batch size asked for is measured; the
best is the limit a server on this machine could approach. --backend torch measures
eager PyTorch the same way, to compare the backends.

It also measures the two halves alone, so the report shows which one sets the limit:
preprocessing on the whole pool with no model, and the model on stacked pixels with no
decoding. And it measures the model with the runtime's own benchmark, OpenVINO's
`benchmark_app` (from the openvino wheel) with its best hint (throughput or latency),
on the very graph the backend runs, at batch 1; with that rate M and preprocessing's P,
each using every core, the whole job's limit is 1 / (1/M + 1/P) images a second: what
the machine could do if nothing but the runtime's own scheduling and our decoding ran.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from recognizer.bench.workload import find_images
from recognizer.config.schema import BackendKind, Precision

TOP_K = 5  # the server's default answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", required=True, help="image files or folders")
    parser.add_argument(
        "--duration", type=float, default=5.0, help="seconds measured per batch size (default: 5)"
    )
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="seconds run before measuring (default: 1)"
    )
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=[1, 2, 4, 8, 16],
        help="batch sizes to measure (default: 1 2 4 8 16)",
    )
    parser.add_argument(
        "--backend",
        choices=("auto", "openvino", "onnxruntime", "torch"),
        default="auto",
        help="as `recognizer serve --backend` (default: auto, what the server runs)",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "int8"),
        default="auto",
        help="as `recognizer serve --precision` (default: auto, fp32 on the CPU)",
    )
    parser.add_argument(
        "--runtime-seconds",
        type=float,
        default=10.0,
        help="seconds benchmark_app runs per hint (default: 10; 0 skips it)",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="the model, as `recognizer serve --model` takes it (default: the built-in one)",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    args = parser.parse_args()
    result = measure_limit(
        [Path(path).read_bytes() for path in find_images(args.images)],
        model_source=args.model,
        backend_kind=args.backend,
        precision=args.precision,
        batch_sizes=args.batch_sizes,
        warmup_s=args.warmup,
        duration_s=args.duration,
        runtime_s=args.runtime_seconds,
    )
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


def measure_limit(
    images: Sequence[bytes],
    *,
    model_source: str | None = None,
    backend_kind: BackendKind = "auto",
    precision: Precision = "auto",
    batch_sizes: Sequence[int],
    warmup_s: float,
    duration_s: float,
    runtime_s: float = 0.0,
) -> dict[str, Any]:
    """Images per second end to end at each batch size, of each half alone, and of the
    model under the runtime's own benchmark."""
    from recognizer.config.models import ModelConfig, parse_model_flag
    from recognizer.config.schema import EngineSettings
    from recognizer.config.sources import DEFAULT_MODEL
    from recognizer.engine import sizing
    from recognizer.engine.backends import resolve_device
    from recognizer.engine.backends.prepared import cached_graph, load_backend
    from recognizer.models.preprocessing import decode_image, prepare_input

    device = resolve_device("auto")
    # The server's own settings and model cache, so the int8 model is the server's too; the
    # gate is the server's business: the limit measures speed whatever the agreement.
    settings = EngineSettings(backend=backend_kind, precision=precision, int8_min_agreement=0)
    model = parse_model_flag(model_source) if model_source else ModelConfig(path=DEFAULT_MODEL)
    spec, backend = load_backend(model, settings, device=device)
    call, workers = engine_calls(backend, sizing.worker_threads(settings.inference_workers, device))
    preprocessing = spec.preprocessing

    def prepare(data: bytes) -> np.ndarray:
        return prepare_input(decode_image(data), preprocessing)

    with ThreadPoolExecutor(sizing.preprocess_threads(settings)) as pool:
        rates = {
            size: pipeline_rate(
                prepare,
                call,
                images,
                pool,
                batch_size=size,
                workers=workers,
                warmup_s=warmup_s,
                duration_s=duration_s,
            )
            for size in batch_sizes
        }
        best = max(rates, key=lambda size: rates[size])
        preprocess_only = preprocess_rate(
            prepare, images, pool, sizing.preprocess_threads(settings), warmup_s, duration_s
        )
    model_only = model_rate(call, preprocessing.crop, best, workers, warmup_s, duration_s)
    runtime = (
        runtime_rates(cached_graph(model, settings), preprocessing.crop, runtime_s)
        if runtime_s > 0 and backend.name == "openvino"
        else {}
    )
    runtime_best = max(runtime.values(), default=None)
    return {
        "schema": "recognizer-limit/2",
        "model": spec.name,
        "backend": backend.name,
        "precision": backend.precision,
        "quantization_check": _check(backend.quantization_check),
        "device": backend.device,
        "calls_at_once": workers,
        "preprocess_threads": settings.preprocess_threads,
        "openvino": _version("openvino"),
        "images": len(images),
        "warmup_s": warmup_s,
        "duration_s": duration_s,
        "images_per_s_by_batch_size": {str(size): round(rate, 2) for size, rate in rates.items()},
        "best_batch_size": best,
        "images_per_s": round(rates[best], 2),
        "preprocess_only_images_per_s": round(preprocess_only, 2),
        "model_only_images_per_s": round(model_only, 2),
        "runtime_benchmark_fps_by_hint": runtime,
        "runtime_best_fps": runtime_best,
        "whole_job_limit_images_per_s": (
            round(1 / (1 / runtime_best + 1 / preprocess_only), 2) if runtime_best else None
        ),
    }


def runtime_rates(graph: Path | None, size: int, seconds: float) -> dict[str, float]:
    """FPS of OpenVINO's benchmark_app on `graph` at batch 1, by performance hint."""
    tool = shutil.which("benchmark_app", path=str(Path(sys.executable).parent))
    if graph is None or tool is None:
        return {}
    rates: dict[str, float] = {}
    for hint in ("throughput", "latency"):
        command = [
            tool,
            "-m",
            str(graph),
            "-d",
            "CPU",
            "-hint",
            hint,
            "-t",
            str(max(1, round(seconds))),
        ]
        command += ["-shape", f"[1,{size},{size},3]"]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        found = re.search(r"Throughput:\s+([\d.]+) FPS", done.stdout + done.stderr)
        if found:
            rates[hint] = float(found.group(1))
        else:
            tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
            print(f"benchmark_app -hint {hint} failed: {' / '.join(tail)}", file=sys.stderr)
    return rates


def _check(check: Any) -> dict[str, Any] | None:
    """An int8 model's fidelity to fp32, and the gate's, as the server measured them."""
    if check is None:
        return None
    return {
        "measured": dataclasses.asdict(check.measured),
        "required": dataclasses.asdict(check.required),
        "reference_change": check.reference_change,
        "held_out_images": check.held_out_images,
        "passed": check.passed,
    }


def engine_calls(backend: Any, worker_threads: int) -> tuple[Callable[[np.ndarray], object], int]:
    """How the engine calls a backend: a blocking call for each caller thread, and how many
    callers run at once (a runtime's slots, submitted asynchronously, or the engine's worker
    threads)."""
    from recognizer.engine.backends import SchedulesCalls

    if not isinstance(backend, SchedulesCalls):
        return (lambda pixels: backend(pixels, TOP_K)), worker_threads
    scheduler = backend

    def call(pixels: np.ndarray) -> object:
        ended = threading.Event()
        results: list[object] = []

        def done(result: object) -> None:
            results.append(result)
            ended.set()

        scheduler.submit(pixels, TOP_K, done)
        ended.wait()
        if isinstance(results[0], BaseException):
            raise results[0]
        return results[0]

    return call, scheduler.slots


def model_rate(
    call: Callable[[np.ndarray], object],
    size: int,
    batch_size: int,
    workers: int,
    warmup_s: float,
    duration_s: float,
) -> float:
    """Images per second of the model alone on blank pixels, called as the engine calls it."""
    pixels = np.zeros((batch_size, size, size, 3), dtype=np.uint8)
    done = [0] * workers
    stop = threading.Event()

    def worker(index: int) -> None:
        while not stop.is_set():
            call(pixels)
            done[index] += batch_size

    return _rate(worker, workers, done, stop, warmup_s, duration_s)


def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def pipeline_rate(
    prepare: Callable[[bytes], np.ndarray],
    call: Callable[[np.ndarray], object],
    images: Sequence[bytes],
    pool: ThreadPoolExecutor,
    *,
    batch_size: int,
    workers: int,
    warmup_s: float,
    duration_s: float,
) -> float:
    """Images per second decoded, prepared and classified by `workers` callers of the model."""
    done = [0] * workers
    stop = threading.Event()

    def worker(index: int) -> None:
        source = itertools.islice(itertools.cycle(images), index, None)

        def submit() -> list[Future[np.ndarray]]:
            return [pool.submit(prepare, next(source)) for _ in range(batch_size)]

        pending = submit()
        while not stop.is_set():
            pixels = np.stack([future.result() for future in pending])
            pending = submit()  # the next batch is prepared while this one runs
            call(pixels)
            done[index] += batch_size
        for future in pending:
            future.result()

    return _rate(worker, workers, done, stop, warmup_s, duration_s)


def preprocess_rate(
    prepare: Callable[[bytes], np.ndarray],
    images: Sequence[bytes],
    pool: ThreadPoolExecutor,
    threads: int,
    warmup_s: float,
    duration_s: float,
) -> float:
    """Images per second decoded and prepared by the pool's `threads` threads, with no model."""
    done = [0] * threads
    stop = threading.Event()

    def worker(index: int) -> None:
        source = itertools.islice(itertools.cycle(images), index, None)
        while not stop.is_set():
            pool.submit(prepare, next(source)).result()
            done[index] += 1

    return _rate(worker, threads, done, stop, warmup_s, duration_s)


def _rate(
    worker: Callable[[int], None],
    count: int,
    done: list[int],
    stop: threading.Event,
    warmup_s: float,
    duration_s: float,
) -> float:
    """Run `count` workers; the items they finish per second after the warm-up."""
    with ThreadPoolExecutor(count) as runner:
        running = [runner.submit(worker, index) for index in range(count)]
        time.sleep(warmup_s)
        before, started = sum(done), time.perf_counter()
        time.sleep(duration_s)
        after, ended = sum(done), time.perf_counter()
        stop.set()
        for future in running:
            future.result()  # a worker's failure fails the measurement
    return (after - before) / (ended - started)


def render(result: dict[str, Any]) -> str:
    rates = result["images_per_s_by_batch_size"]
    lines = [
        f"limit: {result['model']} on {result['device']} with {result['backend']},"
        f" {result['calls_at_once']} calls at once, {result['preprocess_threads']} preprocess"
        " threads,"
        f" {result['images']} images",
        "batch  images/s",
        *(f"{size:>5}  {rate:8.1f}" for size, rate in rates.items()),
        f"limit        {result['images_per_s']:.1f} images/s at batch {result['best_batch_size']}",
        f"  preprocessing alone  {result['preprocess_only_images_per_s']:.1f} images/s",
        f"  model alone          {result['model_only_images_per_s']:.1f} images/s",
    ]
    for hint, fps in result["runtime_benchmark_fps_by_hint"].items():
        lines.append(f"  benchmark_app -hint {hint:<10} {fps:.1f} FPS (batch 1, model alone)")
    if result["whole_job_limit_images_per_s"]:
        lines.append(
            f"whole-job limit      {result['whole_job_limit_images_per_s']:.1f} images/s"
            " (benchmark_app's best with preprocessing's cost added)"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
