"""The seed article's design, written plainly and fairly, to measure recognizer against.

    python benchmarks/seed_baseline.py serve [--port 8000] [--workers N]
    python benchmarks/seed_baseline.py load --url http://127.0.0.1:8000/predict \\
        --images bench-images/ --concurrency 8 [--duration 10] [--json baseline.json]

`serve` is the article's service: FastAPI on uvicorn, one multipart upload endpoint
(POST /predict, form field `file`), PIL decoding and torchvision transforms (Resize 256,
CenterCrop 224, ToTensor, Normalize with the model's mean and std), the same
EfficientNet-Lite0 weights recognizer serves, run at batch 1 in eager PyTorch under
inference_mode in a ThreadPoolExecutor through run_in_executor, answering the top 5
classes as JSON. Fair to it: one executor thread per CPU, PyTorch's default intra-op
threads, and no access log.

`load` is an HTTP load generator with the same loops (closed, or open with --rate) and the
same statistics and JSON document as `recognizer bench`, so the two compare like for like.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import os
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from fastapi import FastAPI, UploadFile

from recognizer.bench.loadgen import Recorder, closed_loop, open_loop
from recognizer.bench.stats import Outcome, ProcessUsage, Results, render, summarize
from recognizer.bench.workload import find_images

# FastAPI reads the endpoint's annotations, so UploadFile is imported at module level.
TOP_K = 5
BOUNDARY = "recognizer-seed-baseline"


def create_app(workers: int) -> FastAPI:
    """The service: the model is loaded once, requests are classified in a thread pool."""
    import torch
    from PIL import Image
    from torchvision import transforms

    from recognizer.models.efficientnet_lite0 import load_efficientnet_lite0

    loaded = load_efficientnet_lite0()
    model, preprocessing = loaded.network, loaded.spec.preprocessing
    assert isinstance(model, torch.nn.Module)
    labels = loaded.spec.labels.names("en")
    transform = transforms.Compose(
        [
            transforms.Resize(preprocessing.resize),
            transforms.CenterCrop(preprocessing.crop),
            transforms.ToTensor(),
            transforms.Normalize(preprocessing.mean, preprocessing.std),
        ]
    )
    executor = ThreadPoolExecutor(max_workers=workers)
    app = FastAPI(title="seed baseline")

    def predict(data: bytes) -> list[dict[str, Any]]:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        batch = transform(image).unsqueeze(0)
        with torch.inference_mode():
            probabilities = model(batch).softmax(dim=1)[0]
        scores, class_ids = probabilities.topk(TOP_K)
        return [
            {"class_id": int(class_id), "label": labels[class_id], "score": float(score)}
            for score, class_id in zip(scores, class_ids, strict=True)
        ]

    @app.post("/predict")
    async def classify(file: UploadFile) -> dict[str, Any]:
        data = await file.read()
        loop = asyncio.get_running_loop()
        return {"predictions": await loop.run_in_executor(executor, predict, data)}

    return app


def serve(host: str, port: int, workers: int) -> None:
    """Serve until interrupted; prints `listening on URL` once the socket is bound."""
    import uvicorn

    app = create_app(workers)
    listener = socket.create_server((host, port))
    print(f"listening on http://{host}:{listener.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[listener])


def multipart(path: Path) -> tuple[dict[str, str], bytes]:
    """The headers and body of a form upload of one file, encoded once, up front."""
    head = (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    body = head.encode() + path.read_bytes() + f"\r\n--{BOUNDARY}--\r\n".encode()
    return {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}, body


async def run_http_load(
    url: str,
    images: tuple[str, ...],
    *,
    concurrency: int = 1,
    rate: float = 0.0,
    warmup_s: float = 0.0,
    duration_s: float = 10.0,
    requests: int | None = None,
    timeout_s: float = 30.0,
    encode: Callable[[Path], tuple[dict[str, str], bytes]] = multipart,
) -> Results:
    """POST the images round-robin in a closed loop (or open, at `rate`) and measure it.

    `encode` makes each image's request headers and body, once, up front: a form upload
    here, a KServe v2 inference request for Triton (triton_peer.py).
    """
    import httpx

    uploads = itertools.cycle([encode(Path(path)) for path in images])
    limits = httpx.Limits(max_connections=1024, max_keepalive_connections=1024)
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:

        async def send() -> Outcome:
            headers, body = next(uploads)
            try:
                response = await client.post(url, content=body, headers=headers)
            except httpx.HTTPError as error:
                return Outcome(type(error).__name__)
            return Outcome("OK" if response.status_code == 200 else f"HTTP {response.status_code}")

        cpu_started, start = time.process_time(), time.monotonic()
        recorder = Recorder(start, warmup_s=warmup_s, duration_s=duration_s, requests=requests)
        if rate:
            await open_loop(send, recorder, rate=rate)
        else:
            await closed_loop(send, recorder, callers=concurrency)
    usage = ProcessUsage(time.process_time() - cpu_started, time.monotonic() - start)
    recorder.results.usage.append(usage)
    return recorder.results


def load(args: argparse.Namespace) -> None:
    images = find_images(args.images)
    results = asyncio.run(
        run_http_load(
            args.url,
            images,
            concurrency=args.concurrency,
            rate=args.rate,
            warmup_s=args.warmup,
            duration_s=args.duration,
            requests=args.requests,
            timeout_s=args.timeout,
        )
    )
    report_http_load(args, results, images, url=args.url, load="POST multipart")


def report_http_load(
    args: argparse.Namespace, results: Results, images: Sequence[str], *, url: str, load: str
) -> None:
    """Print the summary of an HTTP load run, and write its JSON if asked."""
    shape = (
        f"open loop at {args.rate:g} requests/s"
        if args.rate
        else (f"closed loop, {args.concurrency} callers")
    )
    setup = {
        "target": url,
        "load": f"{load}, {shape}; {len(images)} encoded images",
        "rpc": f"POST {urlparse(url).path}",
        "loop": "open" if args.rate else "closed",
        "concurrency": None if args.rate else args.concurrency,
        "rate": args.rate or None,
        "images": list(images),
        "warmup_s": args.warmup,
        "duration_s": None if args.requests else args.duration,
        "requests": args.requests,
        "timeout_s": args.timeout,
        "processes": 1,
    }
    summary = summarize(results, setup=setup)
    print(render(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True, dest="command")
    serving = commands.add_parser("serve", help="serve the seed design over HTTP")
    serving.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    serving.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    serving.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="executor threads running the model (default: one per CPU)",
    )
    loading = commands.add_parser("load", help="load a seed service and report")
    loading.add_argument("--url", default="http://127.0.0.1:8000/predict")
    loading.add_argument("--images", nargs="+", required=True, help="image files or folders")
    shape = loading.add_mutually_exclusive_group()
    shape.add_argument("--concurrency", type=int, default=8, help="closed loop callers")
    shape.add_argument("--rate", type=float, default=0.0, help="open loop requests per second")
    length = loading.add_mutually_exclusive_group()
    length.add_argument("--duration", type=float, default=10.0, help="seconds measured")
    length.add_argument("--requests", type=int, help="requests measured")
    loading.add_argument("--warmup", type=float, default=2.0, help="seconds not measured")
    loading.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    loading.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.host, args.port, args.workers)
    else:
        load(args)


if __name__ == "__main__":
    main()
