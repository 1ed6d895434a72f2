"""Start-up time and resident memory of `recognizer serve`, and where the memory goes.

    python benchmarks/footprint.py --images bench-images/ [--model M] [--precision P]

For each start (--starts, default 3) it launches `python -m recognizer serve --port 0`
with a model cache of its own (--cache-dir, default a fresh temporary folder), times
from launching the process to the health service answering SERVING, classifies
--requests images as a warm-up, and reads the server's memory from /proc: resident
(VmRSS) and peak (VmHWM), split into anonymous memory and mapped files, the largest
mappings by resident size, and whether PyTorch, ONNX Runtime, OpenVINO or NNCF are
loaded. The first start with an empty cache is the cold start (export, quantisation);
the later ones read the cache. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from recognizer.bench.workload import find_images
from recognizer.client import Client

READY = re.compile(r"serving recognizer\.v1\.Recognizer on ([\d.]+:\d+)")
LIBRARIES = {
    "torch": "libtorch",
    "torch CUDA": "libtorch_cuda",
    "CUDA (nvidia)": "/nvidia/",
    "onnxruntime": "onnxruntime",
    "openvino": "libopenvino",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", nargs="+", required=True, help="image files or folders")
    parser.add_argument("--model", default="efficientnet-lite0", help="as serve --model")
    parser.add_argument("--precision", default="auto", help="as serve --precision")
    parser.add_argument("--starts", type=int, default=3, help="starts, the first cold")
    parser.add_argument("--requests", type=int, default=200, help="warm-up classifications")
    parser.add_argument("--cache-dir", type=Path, help="model cache (default: a fresh one)")
    parser.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more serve flags")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    images = [Path(path).read_bytes() for path in find_images(args.images)]
    scratch = None if args.cache_dir else tempfile.mkdtemp(prefix="recognizer-footprint-")
    cache = args.cache_dir or Path(str(scratch))
    try:
        flags = ["--model", args.model, "--precision", args.precision, *args.extra]
        starts = [measure_start(cache, flags, images, args.requests) for _ in range(args.starts)]
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    result = {"schema": "recognizer-footprint/1", "flags": flags, "starts": starts}
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


def measure_start(
    cache: Path, flags: list[str], images: list[bytes], requests: int
) -> dict[str, Any]:
    """One server start: seconds to SERVING, then memory after `requests` classifications."""
    command = [sys.executable, "-m", "recognizer", "serve", "--port", "0", *flags]
    command += ["--model-cache-dir", str(cache)]
    cold = not any(cache.glob("*/description.json"))
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    address = _announced(process)
    serving_s = _wait_serving(address, started)
    try:
        with Client(address) as client:
            for index in range(requests):
                client.classify(images[index % len(images)])
        memory = read_memory(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    return {"cold_cache": cold, "seconds_to_serving": round(serving_s, 2), **memory}


def _announced(process: subprocess.Popen[str]) -> str:
    """The address the server's log announces; the rest of its log is passed on to stderr."""
    assert process.stdout is not None
    for line in process.stdout:
        sys.stderr.write(f"  | {line}")
        if match := READY.search(line):
            threading.Thread(target=_drain, args=(process,), daemon=True).start()
            return match.group(1)
    raise RuntimeError(f"the server exited with status {process.wait()} before serving")


def _drain(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        sys.stderr.write(f"  | {line}")


def _wait_serving(address: str, started: float) -> float:
    """Seconds from `started` until the health service says SERVING."""
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                status = health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
            except grpc.RpcError:
                status = None
            if status == health_pb2.HealthCheckResponse.SERVING:
                return time.monotonic() - started
            time.sleep(0.02)


def read_memory(pid: int) -> dict[str, Any]:
    """Resident and peak memory, anonymous against file-backed, the largest mappings, and
    which runtimes are loaded: from /proc/PID/status and /proc/PID/smaps."""
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    by_mapping: dict[str, int] = defaultdict(int)
    name = "[anonymous]"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        parts = line.split()
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            name = parts[5] if len(parts) > 5 else "[anonymous]"
        elif parts[0] == "Rss:":
            by_mapping[name] += int(parts[1])
    anonymous = sum(kib for path, kib in by_mapping.items() if not path.startswith("/"))
    files = sum(kib for path, kib in by_mapping.items() if path.startswith("/"))
    largest = sorted(by_mapping.items(), key=lambda item: -item[1])[:12]
    return {
        "rss_mib": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
        "peak_rss_mib": round(int(fields["VmHWM"].split()[0]) / 1024, 1),
        "anonymous_mib": round(anonymous / 1024, 1),
        "mapped_files_mib": round(files / 1024, 1),
        "largest_mib": {
            os.path.basename(path) or path: round(kib / 1024, 1) for path, kib in largest
        },
        "loaded": {
            label: any(marker in path for path in by_mapping) for label, marker in LIBRARIES.items()
        },
    }


def render(result: dict[str, Any]) -> str:
    lines = [f"recognizer serve {' '.join(result['flags'])}"]
    lines.append(
        f"{'start':<12}{'to SERVING s':>14}{'RSS MiB':>10}{'peak MiB':>10}"
        f"{'anon MiB':>10}{'files MiB':>10}  loaded"
    )
    for index, start in enumerate(result["starts"], start=1):
        loaded = ", ".join(label for label, on in start["loaded"].items() if on) or "-"
        label = f"{index} ({'cold' if start['cold_cache'] else 'warm'})"
        lines.append(
            f"{label:<12}{start['seconds_to_serving']:>14.2f}{start['rss_mib']:>10.1f}"
            f"{start['peak_rss_mib']:>10.1f}{start['anonymous_mib']:>10.1f}"
            f"{start['mapped_files_mib']:>10.1f}  {loaded}"
        )
    last = result["starts"][-1]["largest_mib"]
    lines.append(
        "largest mappings of the last start (MiB): "
        + ", ".join(f"{name} {mib}" for name, mib in last.items())
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
