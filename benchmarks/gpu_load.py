"""One client process of benchmarks/gpu.py's load: Classify calls with JPEG bytes, timed.

    python benchmarks/gpu_load.py     # then, on stdin, two lines of JSON:
    {"target": "127.0.0.1:50051", "images": ["a.jpg"], "callers": 64}
    {"start_at": 1767225600.0, "end_at": 1767225605.0}

A closed loop of `callers`, or an open loop at `rate` requests a second (latency from
the scheduled send, so queueing shows). It reads the first line, connects, prints
"ready", and waits for the second: only calls sent between `start_at` and `end_at`
(wall-clock instants, the same for every client process) are measured. Then it prints a
JSON object: the latencies in seconds, the batch sizes the server reported, the errors.
It imports only gRPC and the stubs, so that many such processes start quickly.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import grpc

from recognizer.v1 import recognizer_pb2 as pb
from recognizer.v1 import recognizer_pb2_grpc as pb_grpc

TOP_K = 5
MESSAGE_LIMIT = 64 << 20


async def run(share: dict[str, Any], images: list[bytes]) -> dict[str, Any]:
    requests = [pb.ClassifyRequest(image=data, top_k=TOP_K) for data in images]
    latencies: list[float] = []
    batch_sizes: Counter[int] = Counter()
    errors = 0
    options = [("grpc.max_send_message_length", MESSAGE_LIMIT)]
    async with grpc.aio.insecure_channel(share["target"], options=options) as channel:
        stub = pb_grpc.RecognizerStub(channel)  # type: ignore[no-untyped-call]
        await stub.Classify(requests[0], timeout=60)  # connected, and the path warm
        print("ready", flush=True)
        window = json.loads(await asyncio.to_thread(sys.stdin.readline))
        start_at, end_at = float(window["start_at"]), float(window["end_at"])

        async def send(index: int, sent_at: float) -> None:
            nonlocal errors
            try:
                response = await stub.Classify(requests[index % len(requests)], timeout=30)
            except grpc.aio.AioRpcError:
                errors += 1
                return
            if sent_at >= start_at:
                latencies.append(time.time() - sent_at)
                batch_sizes[response.timing.batch_size] += 1

        async def caller(index: int) -> None:
            while (now := time.time()) < end_at:
                await send(index, now)
                index += 1

        if share.get("callers"):
            await asyncio.gather(*(caller(index) for index in range(share["callers"])))
        else:
            rate = float(share["rate"])
            sends = []
            for index in range(max(1, int((end_at - start_at) * rate))):  # one at least
                scheduled = start_at + index / rate
                await asyncio.sleep(max(0.0, scheduled - time.time()))
                sends.append(asyncio.create_task(send(index, scheduled)))
            await asyncio.gather(*sends)
    return {"latencies_s": latencies, "batch_sizes": dict(batch_sizes), "errors": errors}


def main() -> None:
    share = json.loads(sys.stdin.readline())
    images = [Path(path).read_bytes() for path in share["images"]]
    print(json.dumps(asyncio.run(run(share, images))))


if __name__ == "__main__":
    main()
