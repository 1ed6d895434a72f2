"""The strongest peer: NVIDIA Triton (through PyTriton) serving the same network with OpenVINO.

    python benchmarks/triton_peer.py export --out triton-model/     # the project's venv
    .venv-triton/bin/python benchmarks/triton_peer.py serve --model-file triton-model/model.onnx
    python benchmarks/triton_peer.py load --url http://127.0.0.1:8000 --images bench-images/ \\
        --concurrency 16 [--duration 10] [--json triton.json]

`export` writes EfficientNet-Lite0 as recognizer exports it (ONNX, uint8 NHWC input
with normalisation folded in), so both servers run the same graph. The Triton venv wants
Python 3.12: PyTriton 0.7's model stub fails on Python 3.11.7 (its resource tracker).
`serve` runs in a venv of
its own (benchmarks/triton-requirements.txt: PyTriton needs numpy<2) and needs nothing
from recognizer: Triton 2.5x with dynamic batching (up to --max-batch-size, waiting at
most --max-delay-ms), --instances model instances, each with its own compiled OpenVINO
model (THROUGHPUT hint, the cores shared out), decoding JPEGs with Pillow as the seed
design does (shorter side to 256, bilinear, centre crop 224) and answering the top 5.
`load` is the same load generator as the seed baseline's (closed or open loop, the same
statistics and JSON), sending each image as a BYTES tensor over Triton's HTTP/REST (KServe
v2) protocol with the binary-data extension.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import struct
import sysconfig
from pathlib import Path
from typing import Any

MODEL = "efficientnet_lite0"
TOP_K = 5
RESIZE, CROP = 256, 224


def export(out: Path) -> None:
    """The built-in model as recognizer exports it, into `out`/model.onnx."""
    from recognizer.config.models import ModelConfig
    from recognizer.engine.backends.graphs import export_to_onnx
    from recognizer.models.loading import load_model

    out.mkdir(parents=True, exist_ok=True)
    graph = export_to_onnx(load_model(ModelConfig(path="efficientnet-lite0")))
    (out / "model.onnx").write_bytes(graph.data)
    print(out / "model.onnx")


def serve(args: argparse.Namespace) -> None:
    """Serve the model with Triton until interrupted; prints `listening on URL` when ready."""
    import numpy as np
    import openvino as ov
    from PIL import Image
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import (
        DEFAULT_PROTECTED_ENDPOINTS,
        Triton,
        TritonConfig,
        TritonSecurityConfig,
    )

    # Triton's Python backend stub links libpython, which a pyenv or venv Python keeps
    # off the loader's path.
    libdir = sysconfig.get_config_var("LIBDIR")
    os.environ["LD_LIBRARY_PATH"] = ":".join(
        part for part in (libdir, os.environ.get("LD_LIBRARY_PATH")) if part
    )
    cores = os.cpu_count() or 1
    threads = max(1, cores // args.instances)
    core = ov.Core()

    def prepare(data: bytes) -> Any:
        with Image.open(io.BytesIO(data)) as opened:
            image = opened.convert("RGB")
        width, height = image.size
        scale = RESIZE / min(width, height)
        size = (round(width * scale), round(height * scale))
        image = image.resize(size, Image.Resampling.BILINEAR)
        left, top = (image.width - CROP) // 2, (image.height - CROP) // 2
        return np.asarray(image.crop((left, top, left + CROP, top + CROP)), dtype=np.uint8)

    def instance() -> Any:
        compiled = core.compile_model(
            str(args.model_file),
            "CPU",
            {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": 1, "INFERENCE_NUM_THREADS": threads},
        )
        request = compiled.create_infer_request()

        @batch  # type: ignore[untyped-decorator]
        def infer(image: Any) -> dict[str, Any]:
            pixels = np.stack([prepare(bytes(row[0])) for row in image])
            logits = request.infer({0: pixels})[0]
            exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
            scores = exponentials / exponentials.sum(axis=1, keepdims=True)
            class_ids = np.argsort(-scores, axis=1)[:, :TOP_K]
            return {
                "class_ids": class_ids.astype(np.int64),
                "scores": np.take_along_axis(scores, class_ids, axis=1).astype(np.float32),
            }

        return infer

    config = TritonConfig(http_port=args.port, grpc_port=args.port + 1, metrics_port=args.port + 2)
    # perf_analyzer (benchmarks/perf_analyzer.py) reads the statistics, which PyTriton
    # guards with a token of its own by default; the other guarded endpoints stay guarded.
    guarded = [name for name in DEFAULT_PROTECTED_ENDPOINTS if name != "statistics"]
    security = TritonSecurityConfig(restricted_endpoints=guarded)
    with Triton(config=config, security_config=security) as triton:
        triton.bind(
            model_name=MODEL,
            infer_func=[instance() for _ in range(args.instances)],
            inputs=[Tensor(name="image", dtype=bytes, shape=(1,))],
            outputs=[
                Tensor(name="class_ids", dtype=np.int64, shape=(TOP_K,)),
                Tensor(name="scores", dtype=np.float32, shape=(TOP_K,)),
            ],
            config=ModelConfig(
                max_batch_size=args.max_batch_size,
                batcher=DynamicBatcher(max_queue_delay_microseconds=int(args.max_delay_ms * 1000)),
            ),
            strict=False,
        )
        print(f"listening on http://127.0.0.1:{args.port}", flush=True)
        triton.serve()


def infer_request(path: Path) -> tuple[dict[str, str], bytes]:
    """A KServe v2 inference request carrying one encoded image as a binary BYTES tensor."""
    data = path.read_bytes()
    tensor = struct.pack("<I", len(data)) + data
    header = {
        "inputs": [
            {
                "name": "image",
                "shape": [1, 1],
                "datatype": "BYTES",
                "parameters": {"binary_data_size": len(tensor)},
            }
        ],
        "outputs": [{"name": "class_ids"}, {"name": "scores"}],
    }
    head = json.dumps(header).encode()
    headers = {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(head)),
    }
    return headers, head + tensor


def load(args: argparse.Namespace) -> None:
    from seed_baseline import report_http_load, run_http_load

    from recognizer.bench.workload import find_images

    images = find_images(args.images)
    url = f"{args.url.rstrip('/')}/v2/models/{MODEL}/infer"
    results = asyncio.run(
        run_http_load(
            url,
            images,
            concurrency=args.concurrency,
            rate=args.rate,
            warmup_s=args.warmup,
            duration_s=args.duration,
            requests=args.requests,
            timeout_s=args.timeout,
            encode=infer_request,
        )
    )
    report_http_load(args, results, images, url=url, load="POST KServe v2 infer (binary BYTES)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True, dest="command")
    exporting = commands.add_parser("export", help="write the graph both servers run")
    exporting.add_argument("--out", type=Path, required=True, help="folder for model.onnx")
    serving = commands.add_parser("serve", help="serve it with Triton (in the Triton venv)")
    serving.add_argument("--model-file", type=Path, required=True, help="model.onnx from export")
    serving.add_argument("--port", type=int, default=8000, help="HTTP port (gRPC +1, metrics +2)")
    serving.add_argument("--instances", type=int, default=2, help="model instances (default: 2)")
    serving.add_argument("--max-batch-size", type=int, default=32, help="default: 32")
    serving.add_argument("--max-delay-ms", type=float, default=2.0, help="default: 2")
    loading = commands.add_parser("load", help="load a Triton server and report")
    loading.add_argument("--url", default="http://127.0.0.1:8000")
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
    if args.command == "export":
        export(args.out)
    elif args.command == "serve":
        serve(args)
    else:
        load(args)


if __name__ == "__main__":
    main()
