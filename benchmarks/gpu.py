"""The GPU path measured: one table, for a lent GPU machine (benchmarks/gpu.sh runs it there).

    python benchmarks/images.py bench-images/
    python benchmarks/gpu.py --images bench-images/ [--device cuda] [--batch 128] [--json out.json]
    python benchmarks/gpu.py --images bench-images/ --device cpu --quick   # seconds: the tests

For EfficientNet-Lite0 (its real weights), ResNet-50 and ResNeSt-101e with 54,092 classes
(the 万物识别 shape; random weights run as fast as trained ones), on a folder's JPEGs
(benchmarks/images.py makes six real photos at 640x480), in fp16 and channels-last on CUDA
(fp32 on the CPU):
- model alone: the network on a batch already on the device, eager;
- in process: the Torch backend's batch call on JPEG bytes (decoded where the model runs,
  resized, cropped, normalised, the model, top-5), CUDA graphs recorded, one thread;
- the service: recognizer's own server (Engine and gRPC, --device-decode on, the rest
  auto) on loopback, fed JPEG bytes by closed-loop gRPC callers in several processes:
  images a second, the batch sizes it formed, its share of the model alone; the p50
  latency of one caller alone, and the p99 at half the service's throughput (open loop);
- the seed design: 4 threads, each decoding with Pillow and running the model in fp32 at
  batch 1, no HTTP.
For the model with real weights it first checks that decoding on the device answers as
Pillow's path does: the same top-1 on every photo, probabilities within tolerance.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recognizer.app import Service
from recognizer.config.schema import EngineSettings, ServerSettings
from recognizer.engine.backends.device_inputs import DEVICE_DECODE_TOLERANCE
from recognizer.engine.backends.torch_backend import TorchBackend
from recognizer.engine.engine import Engine, ServedModel
from recognizer.models.jpeg import EncodedJpeg, read_jpeg_header
from recognizer.models.labels import Labels
from recognizer.models.preprocessing import Preprocessing, decode_image, prepare_input
from recognizer.models.spec import LoadedModel, ModelSpec

MODELS = ("efficientnet-lite0", "resnet-50", "resnest101e-54k")
WANWU_CLASSES = 54_092
SEED_THREADS = 4
QUEUE_LIMIT = 8192  # above every caller the load sends at once: measure, never refuse
WARM_UP_RUNS = 3  # first calls pay for kernel choice, nvJPEG's set-up and allocations
TOP_K = 5
MAX_PIXELS = 64_000_000


@dataclass(frozen=True)
class Plan:
    """How long and how hard each measurement runs."""

    device: str
    batch: int
    seconds: float
    client_processes: int
    callers: int
    service_batch: int | None  # None: the server measures its own at start-up
    inference_workers: int | None  # None: the server's own choice for the device


@dataclass
class Row:
    """One model's line of the table; rates in images a second, latencies in ms."""

    model: str
    built_from: str
    batch: int
    model_alone: float = 0.0
    in_process: float = 0.0
    service: float = 0.0
    service_batch_sizes: dict[int, int] = field(default_factory=dict)
    service_errors: int = 0
    service_setup: str = ""
    idle_p50_ms: float = 0.0
    half_load_p99_ms: float = 0.0
    seed: float = 0.0
    check: str = ""
    failures: list[str] = field(default_factory=list)


# The models


def build_model(name: str) -> tuple[LoadedModel, str]:
    """The model to measure, and what it was built from (said in the output)."""
    if name == "efficientnet-lite0":
        from recognizer.models.efficientnet_lite0 import load_efficientnet_lite0

        return load_efficientnet_lite0(), "the package's real weights"
    if name == "resnet-50":
        import torchvision

        network: torch.nn.Module = torchvision.models.resnet50()
        return _random(name, network, 1000), "torchvision resnet50, random weights"
    try:
        import timm

        network = timm.create_model("resnest101e", num_classes=WANWU_CLASSES)
        built_from = "timm resnest101e, random weights"
    except Exception as error:  # timm missing or without ResNeSt: the nearest torchvision net
        import torchvision

        network = torchvision.models.resnet101(num_classes=WANWU_CLASSES)
        built_from = f"SUBSTITUTE torchvision resnet101 (timm's resnest101e failed: {error})"
    return _random(name, network, WANWU_CLASSES), built_from


def _random(name: str, network: torch.nn.Module, classes: int) -> LoadedModel:
    names = [f"class {index}" for index in range(classes)]
    spec = ModelSpec(
        name=name,
        architecture=name,
        source_format="benchmark",
        labels=Labels({"en": names}),
        preprocessing=Preprocessing(),
    )
    return LoadedModel(spec, network)


# In process


def rate(run: Callable[[], int], seconds: float, sync: Callable[[], None]) -> float:
    """Images a second of `run` (which returns how many it did), called for `seconds`."""
    for _ in range(WARM_UP_RUNS):
        run()
    sync()
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        done += run()
    sync()
    return done / (time.perf_counter() - started)


def synchronizer(device: torch.device) -> Callable[[], None]:
    return (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)


def model_alone(model: LoadedModel, device: torch.device, half: bool, plan: Plan) -> float:
    """The network on a ready batch on the device, eager."""
    assert isinstance(model.network, torch.nn.Module)
    dtype = torch.float16 if half else torch.float32
    network = model.network.eval().to(device, dtype).to(memory_format=torch.channels_last)
    crop = model.spec.preprocessing.crop
    batch = torch.randn(plan.batch, 3, crop, crop, device=device, dtype=dtype)
    batch = batch.contiguous(memory_format=torch.channels_last)

    def run() -> int:
        network(batch)
        return plan.batch

    with torch.inference_mode():
        return rate(run, plan.seconds, synchronizer(device))


def jpeg_rows(images: Sequence[bytes], count: int) -> list[EncodedJpeg]:
    rows = [read_jpeg_header(images[index % len(images)], MAX_PIXELS) for index in range(count)]
    assert all(row is not None for row in rows), "the benchmark images are RGB JPEGs"
    return [row for row in rows if row is not None]


def in_process(backend: TorchBackend, images: Sequence[bytes], plan: Plan) -> float:
    """The backend's batch call on JPEG bytes: decode, resize, crop, normalise, model, top-k."""
    rows = jpeg_rows(images, plan.batch)

    def run() -> int:
        backend.classify_rows(rows, TOP_K)
        return plan.batch

    return rate(run, plan.seconds, lambda: None)  # the call ends on the host: synchronised


def check_against_pillow(backend: TorchBackend, spec: ModelSpec, images: Sequence[bytes]) -> str:
    """Whether decoding on the device answers as Pillow's path does, photo by photo."""
    classes = spec.num_classes
    pixels = np.stack([prepare_input(decode_image(data), spec.preprocessing) for data in images])
    pillow_scores, pillow_ids = backend(pixels, classes)
    device_scores, device_ids, errors = backend.classify_rows(
        jpeg_rows(images, len(images)), classes
    )
    assert not any(errors), errors
    pillow = np.zeros((len(images), classes))
    on_device = np.zeros((len(images), classes))
    np.put_along_axis(pillow, pillow_ids, pillow_scores, axis=1)
    np.put_along_axis(on_device, device_ids, device_scores, axis=1)
    same = int((pillow.argmax(1) == on_device.argmax(1)).sum())
    difference = float(np.abs(pillow - on_device).max())
    verdict = "ok" if same == len(images) and difference < DEVICE_DECODE_TOLERANCE else "FAILED"
    return (
        f"{verdict}: top-1 equal on {same}/{len(images)} photos, largest probability"
        f" difference {difference:.4f} (tolerance {DEVICE_DECODE_TOLERANCE})"
    )


def seed_design(
    model: LoadedModel, device: torch.device, images: Sequence[bytes], seconds: float
) -> float:
    """The seed article's design: threads each decoding with Pillow, fp32, batch 1."""
    assert isinstance(model.network, torch.nn.Module)
    network = model.network.eval().to(device, torch.float32)  # and as PyTorch lays it out:
    network = network.to(memory_format=torch.contiguous_format)  # the seed knew no better
    spec = model.spec.preprocessing
    mean = torch.tensor(spec.mean, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(spec.std, device=device).view(1, 3, 1, 1) * 255
    deadline = time.perf_counter() + seconds

    def worker(offset: int) -> int:
        done = 0
        with torch.inference_mode():
            while time.perf_counter() < deadline:
                data = images[(offset + done) % len(images)]
                pixels = torch.from_numpy(prepare_input(decode_image(data), spec)).to(device)
                batch = (pixels.permute(2, 0, 1)[None].float() - mean) / std
                network(batch).softmax(1).topk(TOP_K)[0].cpu()
                done += 1
        return done

    started = time.perf_counter()
    with ThreadPoolExecutor(SEED_THREADS) as pool:
        done = sum(pool.map(worker, range(SEED_THREADS)))
    return done / (time.perf_counter() - started)


# The service, and its load

LOAD_SCRIPT = Path(__file__).parent / "gpu_load.py"
START_SLACK_S = 0.2  # for the window to reach every client before it opens


@dataclass
class Measured:
    """What the client processes of one load measured, together."""

    latencies_s: list[float] = field(default_factory=list)
    batch_sizes: Counter[int] = field(default_factory=Counter)
    errors: int = 0


def run_load(
    target: str, images: Sequence[Path], plan: Plan, shares: Sequence[dict[str, float]]
) -> Measured:
    """Run one client process (gpu_load.py) per share; once all have connected, they measure
    the same window of `plan.seconds`."""
    first: dict[str, Any] = {"target": target, "images": [str(path) for path in images]}
    children = [
        subprocess.Popen(
            [sys.executable, str(LOAD_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in shares
    ]
    for child, share in zip(children, shares, strict=True):
        assert child.stdin and child.stdout
        child.stdin.write(json.dumps(first | share) + "\n")
        child.stdin.flush()
    for child in children:
        assert child.stdout
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError(f"a client process failed (exit status {child.wait()})")
    start_at = time.time() + START_SLACK_S
    window = json.dumps({"start_at": start_at, "end_at": start_at + plan.seconds})
    merged = Measured()
    for child in children:
        output, _ = child.communicate(window + "\n", timeout=plan.seconds + 120)
        if child.returncode:
            raise RuntimeError(f"a client process failed (exit status {child.returncode})")
        part = json.loads(output)
        merged.latencies_s += part["latencies_s"]
        merged.batch_sizes.update({int(size): n for size, n in part["batch_sizes"].items()})
        merged.errors += part["errors"]
    return merged


class RunningService:
    """recognizer's server on a loopback port, on its own event loop thread."""

    def __init__(self, model: ServedModel, settings: EngineSettings) -> None:
        self._loop: asyncio.AbstractEventLoop
        try:
            import uvloop

            self._loop = uvloop.new_event_loop()
        except ImportError:
            self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

        async def start() -> Service:
            server = ServerSettings(port=0, reflection=False, drain_delay=0, grace_period=5)
            service = Service(Engine([model], settings), server)
            await service.start()
            return service

        self.service = asyncio.run_coroutine_threadsafe(start(), self._loop).result()
        self.target = f"127.0.0.1:{self.service.grpc.port}"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.service.stop(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


def measure_service(model: ServedModel, images: Sequence[Path], plan: Plan, row: Row) -> None:
    """Full load (closed loop), one caller alone, then half the full load (open loop)."""
    settings = EngineSettings(
        device=plan.device,
        device_decode="on",
        max_batch_size=plan.service_batch,
        inference_workers=plan.inference_workers,
        max_queued_requests=QUEUE_LIMIT,
        cache_entries=0,
    )
    running = RunningService(model, settings)
    served = running.service.engine.runner("")
    row.service_setup = f"{served.slots} call(s) at once, batches of up to {served.max_batch_size}"
    try:
        processes = plan.client_processes
        full = run_load(running.target, images, plan, [{"callers": plan.callers}] * processes)
        row.service = len(full.latencies_s) / plan.seconds
        row.service_batch_sizes = dict(sorted(full.batch_sizes.items()))
        idle = run_load(running.target, images, plan, [{"callers": 1}])
        row.idle_p50_ms = percentile(idle.latencies_s, 50) * 1000
        half = {"rate": row.service / 2 / processes}
        loaded = run_load(running.target, images, plan, [half] * processes)
        row.half_load_p99_ms = percentile(loaded.latencies_s, 99) * 1000
        row.service_errors = full.errors + idle.errors + loaded.errors
    finally:
        running.close()


def percentile(values: Sequence[float], percent: float) -> float:
    return float(np.percentile(values, percent)) if values else float("nan")


# The whole run


def measure(name: str, paths: Sequence[Path], plan: Plan) -> Row:
    """One model's row. A stage that fails is reported in the row and the run goes on: a
    lent GPU's minutes are few, and the other stages' figures still count."""
    device = torch.device(plan.device)
    half = device.type == "cuda"
    images = [path.read_bytes() for path in paths]
    loaded, built_from = build_model(name)
    row = Row(name, built_from, plan.batch)
    say(f"{name}: built from {built_from}")

    def stage(label: str, run: Callable[[], object]) -> None:
        try:
            run()
        except Exception as error:
            row.failures.append(f"{label}: {type(error).__name__}: {error}")
            say(f"{name}: {label} FAILED: {error!r}")

    def alone() -> None:
        row.model_alone = model_alone(loaded, device, half, plan)
        say(f"{name}: model alone {row.model_alone:,.0f} img/s")

    backend = TorchBackend(loaded, device=device, half=half)

    def check() -> None:
        row.check = check_against_pillow(backend, loaded.spec, images)
        say(f"{name}: device decoding against Pillow: {row.check}")

    def inside() -> None:
        backend.capture_graphs(plan.batch)
        row.in_process = in_process(backend, images, plan)
        say(f"{name}: in process {row.in_process:,.0f} img/s")

    def service() -> None:
        measure_service(ServedModel(loaded.spec, backend), paths, plan, row)
        say(f"{name}: service {row.service:,.0f} img/s, batches {row.service_batch_sizes}")

    def seed() -> None:
        row.seed = seed_design(loaded, device, images, plan.seconds)
        say(f"{name}: seed design {row.seed:,.1f} img/s")

    stage("model alone", alone)
    if name == "efficientnet-lite0":
        stage("check", check)
    stage("in process", inside)
    stage("service", service)
    stage("seed design", seed)
    return row


def measure_each(models: Sequence[str], paths: Sequence[Path], plan: Plan) -> list[Row]:
    """Each model's row, one model on the device at a time."""
    rows = []
    for name in models:
        rows.append(measure(name, paths, plan))
        gc.collect()
        if plan.device.startswith("cuda"):
            torch.cuda.empty_cache()
    return rows


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def environment(device: str) -> dict[str, str]:
    import torchvision

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = os.environ.get("RECOGNIZER_COMMIT", "unknown")
    on = (
        torch.cuda.get_device_name(torch.device(device))
        if device.startswith("cuda")
        else platform.processor() or "cpu"
    )
    return {
        "commit": commit,
        "device": on,
        "cpus": str(os.cpu_count()),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "cuda": str(torch.version.cuda),
        "python": platform.python_version(),
    }


def ratio(part: float, whole: float) -> float:
    return part / whole if whole else float("nan")


def table(rows: Sequence[Row]) -> str:
    lines = [
        "| model | batch | model alone | in process (decode + model) | service over gRPC"
        " | of model alone | batch sizes seen (mean / max) | p50 alone | p99 at half load"
        " | seed design | service / seed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        seen = Counter(row.service_batch_sizes)
        total = sum(seen.values())
        mean = sum(size * count for size, count in seen.items()) / total if total else 0.0
        lines.append(
            f"| {row.model} | {row.batch} | {row.model_alone:,.0f} | {row.in_process:,.0f}"
            f" | {row.service:,.0f} | {ratio(row.service, row.model_alone):.2f}"
            f" | {mean:.1f} / {max(seen, default=0)} | {row.idle_p50_ms:.1f} ms"
            f" | {row.half_load_p99_ms:.1f} ms | {row.seed:,.1f}"
            f" | {ratio(row.service, row.seed):.1f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=Path, required=True, help="a folder of JPEGs")
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default: cuda)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=None, help="default: all")
    parser.add_argument("--batch", type=int, default=None, help="in-process batch (default 128)")
    parser.add_argument("--seconds", type=float, default=None, help="per measurement (default 5)")
    parser.add_argument("--clients", type=int, default=None, help="client processes (default 6)")
    parser.add_argument("--callers", type=int, default=None, help="per client process (default 64)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a few seconds in all, EfficientNet-Lite0 only: checks that it runs",
    )
    parser.add_argument(
        "--inference-workers", type=int, default=None, help="the service's (default: auto)"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    quick = args.quick
    plan = Plan(
        device=args.device,
        batch=args.batch or (4 if quick else 128),
        seconds=args.seconds or (1.0 if quick else 5.0),
        client_processes=args.clients or (1 if quick else 6),
        callers=args.callers or (4 if quick else 64),
        service_batch=4 if quick else None,
        inference_workers=args.inference_workers,
    )
    models = args.models or (["efficientnet-lite0"] if quick else list(MODELS))
    if plan.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("no CUDA device here: use --device cpu (with --quick, to check the script)")
    about = environment(plan.device)
    say(" ".join(f"{key}={value}" for key, value in about.items()))
    paths = sorted(args.images.glob("*.jpg"))
    if not paths:
        parser.error(f"no .jpg files in {args.images}: make them with benchmarks/images.py")
    rows = measure_each(models, paths, plan)
    print(", ".join(f"{key} {value}" for key, value in about.items()))
    print(
        "img/s; 640x480 JPEGs; in process and the service decode on the device;"
        f" {plan.seconds:g} s a measurement; service load {plan.client_processes} client"
        f" process(es) x {plan.callers} callers"
    )
    for row in rows:
        check = f"; check {row.check}" if row.check else ""
        print(
            f"{row.model}: {row.built_from}; the service: {row.service_setup},"
            f" {row.service_errors} failed calls{check}"
        )
        for failure in row.failures:
            print(f"{row.model}: FAILED {failure}")
    print(table(rows))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"environment": about, "plan": asdict(plan), "rows": [asdict(row) for row in rows]},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
