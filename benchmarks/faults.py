"""The fault suite: the service under abuse and faults, with good traffic throughout.

    python benchmarks/faults.py [--out bench-results/] [--quick]

Starts `python -m recognizer serve` (the default model and settings) on a free port on
both 127.0.0.1 and ::1, so that the good client (on ::1) and the abusers (on 127.0.0.1)
are two callers, as two hosts would be. While the good client sends real photos at a
steady modest rate and checks every answer against the one the idle server gave, it runs
in turn:

1. hostile inputs, a corpus it makes (nothing is downloaded): empty, random and
   truncated bytes of every supported format, bombs in PNG (a real one), GIF, WebP and
   TIFF, huge dimensions, raw frames of the wrong size or stride, an unknown model or
   language, top_k 2^31, min_score NaN, a message over the size limit; each as a call
   and as a stream frame, each expecting its own status and ErrorInfo reason;
2. misbehaving clients: 500 calls and 50 streams cancelled mid-flight, client processes
   killed with calls and streams open, streams that never read their answers, calls
   with a 1 ms deadline;
3. a flood at 10x the capacity measured just before;
4. a soak of 20,000 requests, the server's resident memory sampled throughout;
5. a rolling restart: three servers under steady load through the shipped client (its
   service config balances and retries), each sent SIGTERM and started again in turn.

It passes when no good request is lost, nothing anywhere is INTERNAL, every hostile
input gets its expected status, resident memory stays flat through the soak (it grows
by less than 64 MiB after the first tenth), no request of the rolling restart fails, and
the server says SERVING at the end. It prints a summary and writes faults.json into
--out; RELIABILITY.md quotes it. --quick shrinks every phase, for a smoke test.

The phases are functions of a target address, so tests/test_faults.py runs them too,
smaller, against servers in the test process.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psutil
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from PIL import Image

from recognizer.client import Client
from recognizer.client.clients import MESSAGE_OPTIONS
from recognizer.v1 import recognizer_pb2 as pb
from recognizer.v1 import recognizer_pb2_grpc as pb_grpc

HERE = Path(__file__).resolve().parent
RSS_GROWTH_LIMIT = 64 << 20
OVERSIZE = 33 << 20  # over the default --max-message-mb of 32
_OWN_CONNECTION = [*MESSAGE_OPTIONS, ("grpc.use_local_subchannel_pool", 1)]


# 1. Hostile inputs


@dataclass(frozen=True)
class Hostile:
    """A bad request and the status it must get: a code name, and the ErrorInfo reason
    ("" where gRPC itself answers, with no details)."""

    name: str
    request: pb.ClassifyRequest
    code: str
    reason: str = ""


def encode(image: Image.Image, format: str, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format, **params)
    return buffer.getvalue()


def hostile_corpus() -> list[Hostile]:
    """Every kind of bad input the contract names, made here, with its expected status."""
    picture = Image.effect_mandelbrot((160, 120), (-2.0, -1.5, 1.0, 1.5), 50).convert("RGB")
    invalid, corrupt, undecodable = "INVALID_ARGUMENT", "IMAGE_CORRUPT", "IMAGE_UNDECODABLE"
    cases = [
        Hostile("empty", image(b""), invalid, "IMAGE_EMPTY"),
        Hostile("random bytes", image(random.Random(7).randbytes(4096)), invalid, undecodable),
        Hostile(
            "an ICO, not a promised format", image(encode(picture, "ICO")), invalid, undecodable
        ),
    ]
    for format in ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF"):
        data = encode(picture, format)
        cases.append(Hostile(f"{format} header only", image(data[:16]), invalid, undecodable))
        # WebP decodes while opening, so a cut WebP is not recognised at all.
        cut = undecodable if format == "WEBP" else corrupt
        for fraction in (0.5, 0.9):
            truncated = image(data[: int(len(data) * fraction)])
            cases.append(Hostile(f"{format} cut at {fraction:.0%}", truncated, invalid, cut))
    png = encode(picture, "PNG")
    too_large, short, bad_raw = "IMAGE_TOO_LARGE", "RAW_SIZE_MISMATCH", "RAW_IMAGE_INVALID"
    nv12 = pb.PIXEL_FORMAT_NV12
    cases += [
        Hostile("PNG bomb, 9000x9000 zeros in 80 kB", image(png_bomb()), invalid, too_large),
        Hostile("GIF claiming 65535x65535", image(gif_claiming(picture)), invalid, too_large),
        Hostile("WebP claiming 16384x16384", image(webp_claiming(picture)), invalid, too_large),
        Hostile("TIFF claiming 60000x60000", image(tiff_claiming(picture)), invalid, too_large),
        Hostile("raw 100000x100000", raw(100_000, 100_000, bytes(12)), invalid, too_large),
        Hostile("raw one byte short", raw(64, 48, bytes(64 * 48 * 3 - 1)), invalid, short),
        Hostile("raw stride too short", raw(64, 48, bytes(63 * 48), stride=63), invalid, bad_raw),
        Hostile("raw zero width", raw(0, 48, b""), invalid, bad_raw),
        Hostile("raw unknown format", raw(4, 4, bytes(48), pixel_format=99), invalid, bad_raw),
        Hostile("raw NV12 without chroma", raw(64, 48, bytes(64 * 48), nv12), invalid, short),
        Hostile("unknown model", image(png, model="no"), "NOT_FOUND", "MODEL_NOT_FOUND"),
        Hostile("unknown language", image(png, language="fr"), invalid, "INVALID_REQUEST"),
        Hostile("min_score NaN", image(png, min_score=math.nan), invalid, "INVALID_REQUEST"),
        Hostile("min_score 2", image(png, min_score=2.0), invalid, "INVALID_REQUEST"),
        Hostile("top_k 2^31", image(png, top_k=2**31), "OK"),
        Hostile("message over the size limit", image(bytes(OVERSIZE)), "RESOURCE_EXHAUSTED"),
    ]
    return cases


def image(data: bytes, **options: Any) -> pb.ClassifyRequest:
    return pb.ClassifyRequest(image=data, **options)


def raw(
    width: int, height: int, data: bytes, pixel_format: int = pb.PIXEL_FORMAT_RGB8, stride: int = 0
) -> pb.ClassifyRequest:
    frame = pb.RawImage(width=width, height=height, data=data, row_stride=stride)
    frame.format = pixel_format  # type: ignore[assignment]  # unknown values too, on purpose
    return pb.ClassifyRequest(raw_image=frame)


def png_bomb(side: int = 9000) -> bytes:
    """A real decompression bomb: side x side gray zeros, which deflate a thousandfold."""
    rows = (b"\0" * (side + 1) for _ in range(side))
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for row in rows) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", idat)
        + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def gif_claiming(picture: Image.Image) -> bytes:
    """A GIF whose screen and frame claim 65535x65535 pixels."""
    data = bytearray(encode(picture, "GIF"))
    data[6:10] = struct.pack("<HH", 65535, 65535)
    descriptor = data.index(b"\x2c", 13)
    data[descriptor + 5 : descriptor + 9] = struct.pack("<HH", 65535, 65535)
    return bytes(data)


def webp_claiming(picture: Image.Image) -> bytes:
    """A lossless WebP whose VP8L header claims 16384x16384 (its largest) pixels."""
    data = bytearray(encode(picture, "WEBP", lossless=True))
    assert data[12:16] == b"VP8L"
    bits = struct.unpack("<I", data[21:25])[0] & ~((1 << 28) - 1)
    data[21:25] = struct.pack("<I", bits | 16383 | 16383 << 14)
    return bytes(data)


def tiff_claiming(picture: Image.Image) -> bytes:
    """A TIFF whose ImageWidth and ImageLength tags claim 60000x60000 pixels."""
    data = bytearray(encode(picture, "TIFF"))
    order = "<" if data[:2] == b"II" else ">"
    directory = struct.unpack(order + "I", data[4:8])[0]
    for index in range(struct.unpack(order + "H", data[directory : directory + 2])[0]):
        entry = directory + 2 + 12 * index
        tag, kind = struct.unpack(order + "HH", data[entry : entry + 4])
        if tag in (256, 257):
            value = struct.pack(order + ("H" if kind == 3 else "I"), 60000)
            data[entry + 8 : entry + 8 + len(value)] = value
    return bytes(data)


def status_of(error: grpc.RpcError | grpc.aio.AioRpcError) -> tuple[str, str]:
    """A failed call's code name and ErrorInfo reason ("" without one)."""
    status = rpc_status.from_call(error)
    return error.code().name, _reason(status)


def _reason(status: status_pb2.Status | None) -> str:
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""


def try_hostile(target: str, corpus: Sequence[Hostile]) -> list[str]:
    """Send each case as a call, then each (but the oversized message) as a stream frame;
    returns what did not get its expected status."""
    wrong = []
    with grpc.insecure_channel(target, MESSAGE_OPTIONS) as channel:
        stub = pb_grpc.RecognizerStub(channel)
        for case in corpus:
            try:
                response = stub.Classify(case.request, timeout=60)
                got = ("OK", "") if response.labels else ("OK, but no labels", "")
            except grpc.RpcError as error:
                got = status_of(error)
            if got != (case.code, case.reason):
                wrong.append(f"call {case.name}: {got}, expected {(case.code, case.reason)}")
        framed = [case for case in corpus if case.code != "RESOURCE_EXHAUSTED"]
        requests = [pb.ClassifyRequest(request_id=case.name) for case in framed]
        for request, case in zip(requests, framed, strict=True):
            request.MergeFrom(case.request)
        for response, case in zip(
            stub.ClassifyStream(iter(requests), timeout=120), framed, strict=True
        ):
            code = (
                grpc.StatusCode.OK.name
                if not response.error.code
                else _code_name(response.error.code)
            )
            got = (code, _reason(response.error))
            if got != (case.code, case.reason) or response.request_id != case.name:
                wrong.append(f"frame {case.name}: {got}, expected {(case.code, case.reason)}")
    return wrong


def _code_name(value: int) -> str:
    return next(code.name for code in grpc.StatusCode if code.value[0] == value)


# Good traffic, throughout


@dataclass
class GoodTraffic:
    """A well-behaved caller at `rate` calls a second, on its own connection, without
    retries: every call must come back OK with the answer the idle server gave."""

    target: str
    photos: Sequence[tuple[bytes, int]]  # each image and its expected top-1 class
    rate: float
    sent: int = 0
    lost: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> GoodTraffic:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(timeout=120)

    def _run(self) -> None:
        with grpc.insecure_channel(self.target, MESSAGE_OPTIONS) as channel:
            stub = pb_grpc.RecognizerStub(channel)
            due = time.monotonic()
            while not self._stop.wait(max(due - time.monotonic(), 0)):
                data, expected = self.photos[self.sent % len(self.photos)]
                self.sent += 1
                try:
                    answer = stub.Classify(pb.ClassifyRequest(image=data, top_k=1), timeout=30)
                    if answer.labels[0].class_id != expected:
                        self.lost.append(f"class {answer.labels[0].class_id}, not {expected}")
                except grpc.RpcError as error:
                    self.lost.append(f"{error.code().name}: {error.details()}")
                due += 1 / self.rate


def reference_answers(target: str, images: Sequence[bytes]) -> list[tuple[bytes, int]]:
    """Each image with the top-1 class the server gives it now (asked while idle)."""
    with grpc.insecure_channel(target, MESSAGE_OPTIONS) as channel:
        stub = pb_grpc.RecognizerStub(channel)
        answers = [
            stub.Classify(pb.ClassifyRequest(image=data, top_k=1), timeout=60) for data in images
        ]
    return [(data, answer.labels[0].class_id) for data, answer in zip(images, answers, strict=True)]


# 2. Misbehaving clients


VANISHING_CLIENT = """
import sys, time, grpc
from recognizer.v1 import recognizer_pb2 as pb, recognizer_pb2_grpc as pb_grpc
channel = grpc.insecure_channel(sys.argv[1], [("grpc.max_send_message_length", 64 << 20)])
stub = pb_grpc.RecognizerStub(channel)
image = open(sys.argv[2], "rb").read()
calls = [stub.Classify.future(pb.ClassifyRequest(image=image)) for _ in range(20)]
def frames():
    for _ in range(1000):
        yield pb.ClassifyRequest(image=image)
        time.sleep(0.01)
streams = [stub.ClassifyStream(frames()) for _ in range(3)]
print("open", flush=True)
time.sleep(60)
"""


def misbehave(
    target: str,
    image_bytes: bytes,
    *,
    cancelled_calls: int = 500,
    cancelled_streams: int = 50,
    vanishing_clients: int = 4,
    unread_streams: int = 10,
    short_deadlines: int = 100,
) -> dict[str, dict[str, int]]:
    """Each kind of misbehaviour in turn; returns the codes the misbehaving calls saw."""
    counts = (cancelled_calls, cancelled_streams, unread_streams, short_deadlines)
    codes = asyncio.run(_misbehave(target, image_bytes, *counts))
    codes["vanishing clients"] = {"killed": vanish(target, image_bytes, vanishing_clients)}
    return codes


async def _misbehave(
    target: str,
    image_bytes: bytes,
    cancelled_calls: int,
    cancelled_streams: int,
    unread_streams: int,
    short_deadlines: int,
) -> dict[str, dict[str, int]]:
    """Each kind on a connection of its own: the server counts a cancelled call against its
    connection's streams until its handler has finished, so new streams opened at once on
    that connection may be refused (REFUSED_STREAM), which is the abuser's own loss."""
    request = pb.ClassifyRequest(image=image_bytes)
    jitter = random.Random(11)

    async def cancelled_call(stub: pb_grpc.RecognizerStub) -> str:
        call = stub.Classify(request)
        await asyncio.sleep(jitter.uniform(0, 0.05))
        call.cancel()
        return await _code(call)

    async def cancelled_stream(stub: pb_grpc.RecognizerStub) -> str:
        call = stub.ClassifyStream()
        with suppress(grpc.aio.AioRpcError):  # the call's own status says why
            for _ in range(jitter.randint(1, 6)):
                await call.write(request)
            await asyncio.sleep(jitter.uniform(0, 0.05))
        call.cancel()
        return await _code(call)

    async def unread_stream(stub: pb_grpc.RecognizerStub) -> str:
        call = stub.ClassifyStream()
        with suppress(TimeoutError, grpc.aio.AioRpcError):
            async with asyncio.timeout(2):
                for _ in range(200):  # flow control stops these writes, as it should
                    await call.write(request)
        call.cancel()
        return await _code(call)

    async def short_deadline(stub: pb_grpc.RecognizerStub) -> str:
        return await _code(stub.Classify(request, timeout=0.001))

    results: dict[str, dict[str, int]] = {}
    for name, make, count in (
        ("cancelled calls", cancelled_call, cancelled_calls),
        ("cancelled streams", cancelled_stream, cancelled_streams),
        ("unread streams", unread_stream, unread_streams),
        ("1 ms deadlines", short_deadline, short_deadlines),
    ):
        async with grpc.aio.insecure_channel(target, _OWN_CONNECTION) as channel:
            stub = pb_grpc.RecognizerStub(channel)
            outcomes = await asyncio.gather(*(make(stub) for _ in range(count)))
        results[name] = dict(Counter(outcomes))
    return results


async def _code(call: grpc.aio.Call) -> str:
    """The name of the status a call ends with, however it ends."""
    return str((await call.code()).name)


def vanish(target: str, image_bytes: bytes, clients: int) -> int:
    """Client processes that open calls and streams, then are killed (SIGKILL) with them
    open; returns how many were killed."""
    with tempfile_image(image_bytes) as path:
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", VANISHING_CLIENT, target, str(path)],
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(clients)
        ]
        for process in processes:
            assert process.stdout is not None
            process.stdout.readline()  # "open"
        time.sleep(0.5)
        for process in processes:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
            assert process.stdout is not None
            process.stdout.close()
    return len(processes)


@contextmanager
def tempfile_image(data: bytes) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "image"
        path.write_bytes(data)
        yield path


# 3. A flood


def capacity(target: str, image_bytes: bytes, *, seconds: float, concurrency: int = 16) -> float:
    """Answers a second the server gives a closed loop of `concurrency` callers."""

    async def run() -> int:
        async with grpc.aio.insecure_channel(target, MESSAGE_OPTIONS) as channel:
            stub = pb_grpc.RecognizerStub(channel)
            stop_at = time.monotonic() + seconds
            answered = 0

            async def caller() -> None:
                nonlocal answered
                while time.monotonic() < stop_at:
                    await stub.Classify(pb.ClassifyRequest(image=image_bytes), timeout=60)
                    answered += 1

            await asyncio.gather(*(caller() for _ in range(concurrency)))
            return answered

    return asyncio.run(run()) / seconds


def flood(
    target: str, image_bytes: bytes, *, rate: float, seconds: float, connections: int = 8
) -> dict[str, int]:
    """Calls sent on a fixed schedule at `rate` a second over `connections` connections,
    whatever comes back (an open loop, as a misconfigured client or an attack sends);
    returns their codes. (One connection alone would be held back by the server's limit
    of streams per connection: its further calls wait on the client.)"""

    async def run() -> dict[str, int]:
        channels = [grpc.aio.insecure_channel(target, _OWN_CONNECTION) for _ in range(connections)]
        try:
            stubs = [pb_grpc.RecognizerStub(channel) for channel in channels]
            request = pb.ClassifyRequest(image=image_bytes)
            calls = []
            started = time.monotonic()
            for index in range(int(rate * seconds)):
                await asyncio.sleep(max(started + index / rate - time.monotonic(), 0))
                call = stubs[index % connections].Classify(request, timeout=60)
                calls.append(asyncio.create_task(_code(call)))
            return dict(Counter(await asyncio.gather(*calls)))
        finally:
            for channel in channels:
                await channel.close()

    return asyncio.run(run())


# 4. A soak


@dataclass
class Soak:
    codes: dict[str, int]
    rss: list[tuple[int, int]]  # (requests done, resident bytes)

    @property
    def growth(self) -> int:
        """Resident memory at the end over the first sample past a tenth of the run."""
        tenth = self.rss[-1][0] / 10
        start = next(rss for done, rss in self.rss if done >= tenth)
        return self.rss[-1][1] - start


def soak(
    target: str,
    images: Sequence[bytes],
    *,
    requests: int,
    rss: Callable[[], int],
    concurrency: int = 8,
    samples: int = 50,
) -> Soak:
    """`requests` calls from a closed loop of `concurrency` callers, cycling the images,
    with the server's resident memory (`rss()`) sampled as they go."""

    async def run() -> Soak:
        async with grpc.aio.insecure_channel(target, MESSAGE_OPTIONS) as channel:
            stub = pb_grpc.RecognizerStub(channel)
            codes: Counter[str] = Counter()
            memory = [(0, rss())]
            every = max(requests // samples, 1)
            left = iter(range(requests))

            async def caller() -> None:
                for index in left:
                    request = pb.ClassifyRequest(image=images[index % len(images)])
                    codes[await _code(stub.Classify(request, timeout=60))] += 1
                    if (index + 1) % every == 0:
                        memory.append((index + 1, rss()))

            await asyncio.gather(*(caller() for _ in range(concurrency)))
            memory.append((requests, rss()))
            return Soak(dict(codes), sorted(memory))

    return asyncio.run(run())


# 5. A rolling restart


@dataclass
class Restart:
    codes: dict[str, int]
    restarts: int
    errors: list[str]


def rolling_restart(
    addresses: Sequence[str],
    restart: Callable[[int], None],
    image_bytes: bytes,
    *,
    callers: int = 4,
    settle_s: float = 3.0,
) -> Restart:
    """Steady load through the shipped Client on all the addresses while `restart(i)`
    stops replica i (SIGTERM: drain delay, drain) and starts it again, one at a time,
    `settle_s` apart; returns the codes the calls ended with."""
    target = "ipv4:" + ",".join(addresses)
    codes: Counter[str] = Counter()
    errors: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with Client(target, timeout=30) as client:
            while not stop.is_set():
                try:
                    client.classify(image_bytes, top_k=1)
                    codes["OK"] += 1
                except grpc.RpcError as error:
                    codes[error.code().name] += 1
                    errors.append(f"{error.code().name}: {error.details()}")

    threads = [threading.Thread(target=load) for _ in range(callers)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(settle_s)
        for index in range(len(addresses)):
            restart(index)
            time.sleep(settle_s)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    return Restart(dict(codes), len(addresses), errors[:20])


def serving(target: str) -> str:
    with grpc.insecure_channel(target) as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


# The run against `recognizer serve`


class Served:
    """`python -m recognizer serve` on a port, its log echoed, its memory measurable."""

    def __init__(self, port: int, *args: str) -> None:
        self.port = port
        command = [sys.executable, "-m", "recognizer", "serve", "--host", "localhost"]
        command += ["--port", str(port), *args]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.ready = threading.Event()
        threading.Thread(target=self._read_log, daemon=True).start()
        if not self.ready.wait(300):
            raise RuntimeError(f"{' '.join(command)} did not start")

    def _read_log(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            sys.stderr.write(f"  {self.port} | {line}")
            if "serving recognizer.v1.Recognizer" in line:
                self.ready.set()
        self.ready.set()

    def rss(self) -> int:
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=120)


def free_port() -> int:
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        return int(probe.getsockname()[1])


def photos() -> list[bytes]:
    """The benchmark photos as 640x480 JPEGs (benchmarks/images.py)."""
    from images import make_images  # here: tests/ has an images module of its own

    with tempfile.TemporaryDirectory() as folder:
        return [path.read_bytes() for path in make_images(Path(folder))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--quick", action="store_true", help="small phases: a smoke test")
    args = parser.parse_args()
    quick = args.quick
    images = photos()
    results: dict[str, Any] = {"quick": quick, "machine": _machine()}
    port = free_port()
    server = Served(port)
    abuser, good = f"127.0.0.1:{port}", f"[::1]:{port}"
    try:
        reference = reference_answers(good, images)
        with GoodTraffic(good, reference, rate=2.0 if quick else 5.0) as traffic:
            corpus = hostile_corpus()
            wrong = try_hostile(abuser, corpus)
            results["hostile"] = {"cases": len(corpus), "frames": len(corpus) - 1, "wrong": wrong}
            results["misbehaving"] = misbehave(
                abuser,
                images[0],
                cancelled_calls=100 if quick else 500,
                cancelled_streams=10 if quick else 50,
            )
            measured = capacity(abuser, images[0], seconds=3 if quick else 10)
            rate = 10 * measured
            flooded = flood(abuser, images[0], rate=rate, seconds=3 if quick else 20)
            results["flood"] = {"capacity_per_s": measured, "rate_per_s": rate, "codes": flooded}
            soaked = soak(abuser, images, requests=1000 if quick else 20_000, rss=server.rss)
            results["soak"] = {**asdict(soaked), "growth_bytes": soaked.growth}
            results["good"] = {"sent": traffic.sent, "lost": traffic.lost[:20]}
        results["serving_at_end"] = serving(good)
    finally:
        server.stop()
    results["rolling_restart"] = asdict(run_rolling_restart(images[0], quick))
    results["passed"] = passed(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "faults.json").write_text(json.dumps(results, indent=2) + "\n")
    print(summary(results))
    sys.exit(0 if results["passed"] else 1)


def run_rolling_restart(image_bytes: bytes, quick: bool) -> Restart:
    args = ("--drain-delay", "1", "--grace-period", "10")
    ports = [free_port() for _ in range(3)]
    servers = [Served(port, *args) for port in ports]

    def restart(index: int) -> None:
        servers[index].stop()
        servers[index] = Served(ports[index], *args)

    try:
        return rolling_restart(
            [f"127.0.0.1:{port}" for port in ports],
            restart,
            image_bytes,
            settle_s=3 if quick else 10,
        )
    finally:
        for server in servers:
            server.stop()


def passed(results: dict[str, Any]) -> bool:
    every_code = [
        *results["flood"]["codes"],
        *results["soak"]["codes"],
        *results["rolling_restart"]["codes"],
        *(code for codes in results["misbehaving"].values() for code in codes),
    ]
    return (
        not results["hostile"]["wrong"]
        and not results["good"]["lost"]
        and "INTERNAL" not in every_code
        and set(results["soak"]["codes"]) == {"OK"}
        and results["soak"]["growth_bytes"] < RSS_GROWTH_LIMIT
        and set(results["rolling_restart"]["codes"]) == {"OK"}
        and results["serving_at_end"] == "SERVING"
    )


def summary(results: dict[str, Any]) -> str:
    flood_ = results["flood"]
    soak_ = results["soak"]
    restart = results["rolling_restart"]
    lines = [
        f"hostile inputs   {results['hostile']['cases']} calls and {results['hostile']['frames']}"
        f" frames, {len(results['hostile']['wrong'])} with an unexpected status",
        *(f"                   {wrong}" for wrong in results["hostile"]["wrong"]),
        *(f"misbehaving      {name}: {codes}" for name, codes in results["misbehaving"].items()),
        f"flood            {flood_['rate_per_s']:.0f}/s for a capacity of"
        f" {flood_['capacity_per_s']:.0f}/s: {flood_['codes']}",
        f"soak             {sum(soak_['codes'].values())} requests: {soak_['codes']}; resident"
        f" {soak_['rss'][0][1] / 2**20:.0f} -> {soak_['rss'][-1][1] / 2**20:.0f} MiB, growth after"
        f" the first tenth {soak_['growth_bytes'] / 2**20:+.1f} MiB",
        f"rolling restart  {restart['restarts']} restarts: {restart['codes']}",
        f"good traffic     {results['good']['sent']} sent, {len(results['good']['lost'])} lost",
        f"at the end       {results['serving_at_end']}",
        f"passed           {results['passed']}",
    ]
    return "\n".join(lines)


def _machine() -> dict[str, Any]:
    git = ["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"]
    commit = subprocess.run(git, capture_output=True, text=True, check=False).stdout.strip()
    return {"cpu_count": os.cpu_count(), "commit": commit or None, "python": sys.version.split()[0]}


if __name__ == "__main__":
    main()
