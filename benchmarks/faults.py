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
5. attacks on the doors, against a second server with a tokens file and --http-port, the
   good client a tenant whose every call must be answered within 2 s: a header of 81 MiB,
   slowloris, idle sockets beyond --max-connections on both ports, health watches by the
   thousand with no token, streams that go idle, big messages with no token, messages
   that are not UTF-8, a token revoked under open streams, WebSockets that send nothing,
   what a caller with no token learns, a request_id of 100,000 characters;
6. a TLS session after its CA: a third server with mTLS, whose client CA is rotated
   while a client keeps sessions to resume;
7. a rolling restart: three servers under steady load through the shipped client (its
   service config balances and retries), each sent SIGTERM and started again in turn.

It passes when no good request is lost, nothing anywhere is INTERNAL, every hostile
input gets its expected status, resident memory stays flat through the soak (it grows
by less than 64 MiB after the first tenth), every attack on the doors gets what it must
with the server's memory back down after it and no error logged, no TLS session outlives
the rotation, no request of the rolling restart fails, and the servers say SERVING at the
end. It prints a summary and writes faults.json into --out; RELIABILITY.md quotes it.
--quick shrinks every phase, for a smoke test.

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
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import hostile_images
import httpx
import psutil
from google.protobuf import json_format
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from PIL import Image
from websockets.asyncio.client import connect as websocket_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from recognizer import open_files
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
    retries: every call must come back OK, within `deadline` seconds, with the answer the
    idle server gave. `metadata` (a token) and `credentials` (TLS) as the server needs."""

    target: str
    photos: Sequence[tuple[bytes, int]]  # each image and its expected top-1 class
    rate: float
    deadline: float = 30.0
    metadata: tuple[tuple[str, str], ...] = ()
    credentials: grpc.ChannelCredentials | None = None
    sent: int = 0
    slowest_s: float = 0.0
    slowest_by_phase: dict[str, float] = field(default_factory=dict)
    lost: list[str] = field(default_factory=list)
    phase: str = ""  # the attack under way, named in each lost call's line
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
        with channel_to(self.target, self.credentials) as channel:
            stub = pb_grpc.RecognizerStub(channel)
            due = time.monotonic()
            while not self._stop.wait(max(due - time.monotonic(), 0)):
                data, expected = self.photos[self.sent % len(self.photos)]
                self.sent += 1
                started = time.monotonic()
                try:
                    answer = stub.Classify(
                        pb.ClassifyRequest(image=data, top_k=1),
                        timeout=self.deadline,
                        metadata=self.metadata,
                    )
                    if answer.labels[0].class_id != expected:
                        self._lose(f"class {answer.labels[0].class_id}, not {expected}")
                except grpc.RpcError as error:
                    self._lose(f"{error.code().name}: {error.details()}")
                took = time.monotonic() - started
                self.slowest_s = max(self.slowest_s, took)
                if self.phase:
                    self.slowest_by_phase[self.phase] = max(
                        self.slowest_by_phase.get(self.phase, 0.0), took
                    )
                due += 1 / self.rate

    def _lose(self, what: str) -> None:
        self.lost.append(f"{what} (during {self.phase})" if self.phase else what)


def channel_to(target: str, credentials: grpc.ChannelCredentials | None = None) -> grpc.Channel:
    if credentials is None:
        return grpc.insecure_channel(target, MESSAGE_OPTIONS)
    return grpc.secure_channel(target, credentials, MESSAGE_OPTIONS)


def reference_answers(
    target: str,
    images: Sequence[bytes],
    metadata: tuple[tuple[str, str], ...] = (),
    credentials: grpc.ChannelCredentials | None = None,
) -> list[tuple[bytes, int]]:
    """Each image with the top-1 class the server gives it now (asked while idle)."""
    with channel_to(target, credentials) as channel:
        stub = pb_grpc.RecognizerStub(channel)
        answers = [
            stub.Classify(pb.ClassifyRequest(image=data, top_k=1), timeout=60, metadata=metadata)
            for data in images
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


async def _flood_code(call: grpc.aio.Call) -> str:
    """The call's code, with UNAVAILABLE from a stream refused over the server's streams a
    connection (HTTP/2 REFUSED_STREAM, error code 7: safe to retry) named REFUSED_STREAM."""
    code = await call.code()
    if code == grpc.StatusCode.UNAVAILABLE and "error code 7" in (await call.details() or ""):
        return "REFUSED_STREAM"
    return str(code.name)


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
                calls.append(asyncio.create_task(_flood_code(call)))
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


# 6. Network attacks, one caller against the server's doors


def _address(target: str) -> tuple[str, int]:
    host, _, port = target.rpartition(":")
    return host.strip("[]"), int(port)


def _answer_of(sock: socket.socket) -> str:
    """What the server sent on a connection before closing it: its HTTP status, "closed"
    (nothing) or "reset" (an abort, or a close with unread bytes, which loses the answer)."""
    sock.settimeout(60)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except OSError:
        return data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "reset"
    return data.split(b" ", 2)[1].decode() if data.startswith(b"HTTP/") else "closed"


def header_flood(http: str, *, connections: int = 4, size: int = 81 << 20) -> dict[str, Any]:
    """Connections that each send one header that never ends, as fast as they can, up to
    `size` bytes: the server must answer 431 and close once --http-max-header-kb has come
    (an answer the client may lose to the reset). Returns how each connection ended and
    the most bytes one sent."""

    def one(_: int) -> tuple[str, int]:
        with socket.create_connection(_address(http), timeout=60) as sock:
            sock.sendall(b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nX-Huge: ")
            piece, sent = b"h" * 65536, 0
            try:
                while sent < size:
                    sock.sendall(piece)
                    sent += len(piece)
            except OSError:
                pass
            return _answer_of(sock), sent

    with ThreadPoolExecutor(connections) as pool:
        ended = list(pool.map(one, range(connections)))
    return {
        "ended": dict(Counter(how for how, _ in ended)),
        "most_bytes_sent": max(sent for _, sent in ended),
    }


def slowloris(http: str, *, connections: int = 500, seconds: float = 60.0) -> dict[str, Any]:
    """Connections that send a request head a line a second and never finish it: the server
    must close each (408) within --header-timeout. Returns how many it closed, how many were
    still open after `seconds`, and the longest one was held."""

    async def one() -> float | None:
        reader, writer = await asyncio.open_connection(*_address(http))
        opened = time.monotonic()
        try:
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            while time.monotonic() - opened < seconds:
                with suppress(TimeoutError):
                    async with asyncio.timeout(1.0):
                        if not await reader.read(65536):
                            return time.monotonic() - opened
                writer.write(b"X-Slow: 1\r\n")
                await writer.drain()
        except OSError:
            return time.monotonic() - opened
        finally:
            writer.close()
        return None

    async def run() -> list[float | None]:
        return list(await asyncio.gather(*(one() for _ in range(connections))))

    held = asyncio.run(run())
    closed = [seconds for seconds in held if seconds is not None]
    return {
        "connections": connections,
        "closed": len(closed),
        "still_open": connections - len(closed),
        "held_longest_s": round(max(closed, default=0.0), 1),
    }


def idle_sockets(
    targets: Sequence[str], *, per_port: int, hold_s: float, fds: Callable[[], int]
) -> dict[str, Any]:
    """`per_port` sockets to each port that send nothing, held `hold_s` seconds: beyond
    --max-connections the server closes them as they come, and --header-timeout closes the
    rest. Returns how many each port refused at once and the most descriptors the server
    held (`fds()`)."""
    open_files.raise_open_file_limit()  # this client needs as many as it opens
    most, refused = fds(), {}
    for target in targets:
        sockets = []
        for _ in range(per_port):
            sock = socket.create_connection(_address(target), timeout=60)
            sock.setblocking(False)
            sockets.append(sock)
        time.sleep(1.0)
        most = max(most, fds())
        refused[target] = sum(_closed_now(sock) for sock in sockets)
        deadline = time.monotonic() + hold_s
        while time.monotonic() < deadline:
            most = max(most, fds())
            time.sleep(0.5)
        for sock in sockets:
            sock.close()
    return {"per_port": per_port, "refused_at_once": refused, "server_fds_most": most}


def _closed_now(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def answers_on_a_new_connection(
    target: str, image_bytes: bytes, metadata: tuple[tuple[str, str], ...] = ()
) -> str:
    """The code of a Classify on a connection of its own, opened now."""
    with grpc.insecure_channel(target, _OWN_CONNECTION) as channel:
        try:
            stub = pb_grpc.RecognizerStub(channel)
            stub.Classify(pb.ClassifyRequest(image=image_bytes), timeout=30, metadata=metadata)
        except grpc.RpcError as error:
            return str(error.code().name)
    return "OK"


STREAMS_A_CONNECTION = 50  # well within the server's 100: a client that opens streams
# before the server's HTTP/2 settings arrive has those over it refused (REFUSED_STREAM)


REFUSAL_GRACE_S = 3.0  # how long the watches stay open after the last one opened, at least


def watch_flood(
    target: str, *, streams: int = 4096, hold_s: float = 10.0, wave: int = 512
) -> dict[str, int]:
    """Health Watch streams with no token, STREAMS_A_CONNECTION a connection, held `hold_s`
    seconds: each caller's share of the calls keeps them from taking every call. They are
    opened `wave` at a time, each wave once the one before is answered: thousands opened
    by one process at once end, a quarter of them, CANCELLED by gRPC's own stack on a busy
    machine, before any server sees them (as against grpc's stock health server), and
    would leave the calls' limit untested. Returns how they ended: "held" (answered with a
    status and open at the end), "unanswered" (open at the end with nothing received), or
    the code that ended or refused them."""

    async def run() -> dict[str, int]:
        connections = math.ceil(streams / STREAMS_A_CONNECTION)
        channels = [grpc.aio.insecure_channel(target, _OWN_CONNECTION) for _ in range(connections)]
        calls: list[grpc.aio.UnaryStreamCall[Any, Any]] = []
        answered: set[int] = set()
        first_read: list[asyncio.Event] = []

        async def watch(index: int) -> str:
            with suppress(grpc.RpcError):  # refused: its code tells
                try:
                    if await calls[index].read() != grpc.aio.EOF:
                        answered.add(index)
                finally:
                    first_read[index].set()
            return await _code(calls[index])

        # Waited on aside: a call's code() answers CANCELLED when its waiter is cancelled,
        # which would count a watch held to the end as ended.
        ended: list[asyncio.Future[str]] = []
        try:
            for start in range(0, streams, wave):
                opened = range(start, min(start + wave, streams))
                for index in opened:
                    stub = health_pb2_grpc.HealthStub(channels[index % connections])
                    calls.append(stub.Watch(health_pb2.HealthCheckRequest()))
                    first_read.append(asyncio.Event())
                ended += [asyncio.ensure_future(watch(index)) for index in opened]
                firsts = [asyncio.ensure_future(first_read[index].wait()) for index in opened]
                await asyncio.wait(firsts, timeout=REFUSAL_GRACE_S * 10)
                for first in firsts:
                    first.cancel()
            # All are ended at one instant, a while after the last opened: a watch ended
            # earlier would free its place for one opened later, and both would count as
            # held though never held together.
            await asyncio.wait(ended, timeout=max(hold_s, REFUSAL_GRACE_S))
            outcomes = [
                end.result() if end.done() else "held" if i in answered else "unanswered"
                for i, end in enumerate(ended)
            ]
            for call in calls:
                call.cancel()
            await asyncio.gather(*ended, return_exceptions=True)
            return dict(Counter(outcomes))
        finally:
            for channel in channels:
                await channel.close()

    return asyncio.run(run())


def idle_streams(
    target: str,
    image_bytes: bytes,
    *,
    streams: int,
    wait_s: float,
    metadata: tuple[tuple[str, str], ...] = (),
) -> dict[str, Any]:
    """ClassifyStreams that send one frame, read its answer, then send nothing: each must be
    ended (DEADLINE_EXCEEDED, STREAM_IDLE) within --stream-idle-timeout; waits `wait_s` at
    most. Returns how they ended, and the longest one lasted."""

    async def run() -> list[tuple[str, float]]:
        connections = math.ceil(streams / STREAMS_A_CONNECTION)
        channels = [grpc.aio.insecure_channel(target, _OWN_CONNECTION) for _ in range(connections)]

        async def one(index: int) -> tuple[str, float]:
            call = pb_grpc.RecognizerStub(channels[index % connections]).ClassifyStream(
                metadata=metadata
            )
            started = time.monotonic()
            try:
                await call.write(pb.ClassifyRequest(image=image_bytes))
                await call.read()
                async with asyncio.timeout(wait_s):
                    code = await call.code()
            except TimeoutError:
                call.cancel()
                return "still open", time.monotonic() - started
            except grpc.aio.AioRpcError as error:
                code = error.code()
            reason = _reason(await rpc_status.aio.from_call(call))
            return f"{code.name} {reason}".strip(), time.monotonic() - started

        try:
            return list(await asyncio.gather(*(one(index) for index in range(streams))))
        finally:
            for channel in channels:
                await channel.close()

    ended = asyncio.run(run())
    return {
        "ended": dict(Counter(how for how, _ in ended)),
        "lasted_longest_s": round(max(seconds for _, seconds in ended), 1),
    }


def unauthenticated_messages(
    target: str, *, calls: int = 65, size: int = 31 << 20, rss: Callable[[], int]
) -> dict[str, Any]:
    """`calls` Classify calls of `size` bytes each, at once, with no token: each must be
    refused (UNAUTHENTICATED) before its message is read. Returns their codes and the
    server's resident memory before, at its highest while they ran (sampled every 20 ms),
    and two seconds after."""
    request = pb.ClassifyRequest(image=bytes(size))
    before = rss()
    highest = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            highest[0] = max(highest[0], rss())

    sampler = threading.Thread(target=sample)
    sampler.start()

    async def run() -> dict[str, int]:
        async with grpc.aio.insecure_channel(target, _OWN_CONNECTION) as channel:
            stub = pb_grpc.RecognizerStub(channel)
            codes = [_code(stub.Classify(request, timeout=120)) for _ in range(calls)]
            return dict(Counter(await asyncio.gather(*codes)))

    try:
        codes = asyncio.run(run())
    finally:
        done.set()
        sampler.join()
    time.sleep(2.0)
    return {"codes": codes, "rss_before": before, "rss_highest": highest[0], "rss_after": rss()}


INVALID_UTF8 = b"\x22\x02\xff\xfe"  # ClassifyRequest.request_id (4), two bytes that are not UTF-8


def undecodable(
    target: str, http: str, *, calls: int, metadata: tuple[tuple[str, str], ...] = ()
) -> dict[str, dict[str, int]]:
    """Classify calls whose request_id is not UTF-8, over gRPC, and JSON bodies that are not
    UTF-8, over HTTP: INVALID_ARGUMENT and 400, each with its reason. Returns their codes."""
    grpc_codes: Counter[str] = Counter()
    with grpc.insecure_channel(target, MESSAGE_OPTIONS) as channel:
        classify: grpc.UnaryUnaryMultiCallable[bytes, bytes]
        classify = channel.unary_unary("/recognizer.v1.Recognizer/Classify")
        for _ in range(calls):
            try:
                classify(INVALID_UTF8, timeout=30, metadata=metadata)
                grpc_codes["OK"] += 1
            except grpc.RpcError as error:
                grpc_codes[" ".join(status_of(error)).strip()] += 1
    http_codes: Counter[str] = Counter()
    headers = {"Content-Type": "application/json", **dict(metadata)}
    with httpx.Client(base_url=f"http://{http}", timeout=30) as client:
        for _ in range(calls):
            answer = client.post("/v1/classify", content=b'{"request_id": "\xff"}', headers=headers)
            http_codes[f"{answer.status_code} {_http_reason(answer)}".strip()] += 1
    return {"grpc": dict(grpc_codes), "http": dict(http_codes)}


def hostile_jpegs(side: int) -> dict[str, bytes]:
    """JPEGs that cost the most to decode, of `side` x `side` pixels: refused from their
    markers (a scan repeated; thousands of scans in order), or allowed and costly (a 4:4:4
    progressive JPEG of 68 scans, every coefficient held at full resolution)."""
    return {
        "scan repeated": hostile_images.many_scan_jpeg(side),
        "2,081 scans": hostile_images.progressive_jpeg(side, bands=63),
        "68 scans": hostile_images.progressive_jpeg(side, bands=2),
    }


def costly_decodes(
    target: str,
    jpegs: dict[str, bytes],
    *,
    copies: int,
    deadline_s: float,
    metadata: tuple[tuple[str, str], ...] = (),
) -> dict[str, dict[str, int]]:
    """`copies` of each JPEG sent at once, each with a deadline too short to decode it in:
    each is refused before decoding or given up on (its decoding stopped), while cache
    hits and other callers go on. Returns each JPEG's codes."""

    async def run() -> dict[str, dict[str, int]]:
        async with grpc.aio.insecure_channel(target, MESSAGE_OPTIONS) as channel:
            stub = pb_grpc.RecognizerStub(channel)

            async def one(data: bytes) -> str:
                try:
                    await stub.Classify(image(data), timeout=deadline_s, metadata=metadata)
                    return "OK"
                except grpc.aio.AioRpcError as error:
                    return " ".join(status_of(error)).strip()

            sent = [(name, one(data)) for name, data in jpegs.items() for _ in range(copies)]
            codes = await asyncio.gather(*(call for _, call in sent))
        counted: dict[str, Counter[str]] = {name: Counter() for name in jpegs}
        for (name, _), code in zip(sent, codes, strict=True):
            counted[name][code] += 1
        return {name: dict(counter) for name, counter in counted.items()}

    return asyncio.run(run())


def cpu_after_callers_left(cpu: Callable[[], float], *, settle_s: float) -> float:
    """The server's CPU seconds over the `settle_s` seconds after the callers had their
    answers: decoding nobody waits for would show here."""
    before = cpu()
    time.sleep(settle_s)
    return round(cpu() - before, 2)


def _http_reason(answer: httpx.Response) -> str:
    try:
        return str(answer.json()["error"]["details"][0]["reason"])
    except (ValueError, KeyError, IndexError, TypeError):
        return ""


def revoked_token(
    target: str,
    http: str,
    tokens_file: Path,
    image_bytes: bytes,
    *,
    token: str,
    wait_s: float = 30.0,
) -> dict[str, Any]:
    """A ClassifyStream and a WebSocket open under `token`, each answered a frame; then the
    token's line is removed from the tokens file: both must end (UNAUTHENTICATED, close
    1008) once the file is re-read. The file is put back. Returns how each ended and when."""
    kept = tokens_file.read_text(encoding="utf-8")
    revoked_text = "".join(line for line in kept.splitlines(True) if token not in line)
    metadata = (("authorization", f"Bearer {token}"),)

    async def run() -> dict[str, Any]:
        async with (
            grpc.aio.insecure_channel(target, MESSAGE_OPTIONS) as channel,
            websocket_connect(
                f"ws://{http}/v1/classify/stream",
                additional_headers={"Authorization": f"Bearer {token}"},
                max_size=None,
            ) as websocket,
        ):
            call = pb_grpc.RecognizerStub(channel).ClassifyStream(metadata=metadata)
            await call.write(pb.ClassifyRequest(image=image_bytes))
            await call.read()
            await websocket.send(image_bytes)
            await websocket.recv()
            await asyncio.to_thread(tokens_file.write_text, revoked_text, encoding="utf-8")
            revoked = time.monotonic()
            async with asyncio.timeout(wait_s):
                code = await call.code()
                reason = _reason(await rpc_status.aio.from_call(call))
                grpc_after = time.monotonic() - revoked
                with suppress(ConnectionClosed):
                    while True:
                        await websocket.recv()
            return {
                "grpc": f"{code.name} {reason}",
                "grpc_after_s": round(grpc_after, 1),
                "websocket": f"{websocket.close_code} {websocket.close_reason}",
                "websocket_after_s": round(time.monotonic() - revoked, 1),
            }

    try:
        return asyncio.run(run())
    finally:
        tokens_file.write_text(kept, encoding="utf-8")


def websocket_flood(
    http: str, *, count: int = 500, wait_s: float = 60.0, token: str = ""
) -> dict[str, Any]:
    """WebSockets that open and send nothing: each must be closed (1008, FIRST_FRAME_TIMEOUT)
    within --first-frame-timeout. Returns how they ended and the longest one lasted."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def one() -> tuple[str, float]:
        started = time.monotonic()
        try:
            async with websocket_connect(
                f"ws://{http}/v1/classify/stream", additional_headers=headers, open_timeout=60
            ) as websocket:
                async with asyncio.timeout(wait_s):
                    with suppress(ConnectionClosed):
                        while True:
                            await websocket.recv()
                return (
                    f"{websocket.close_code} {websocket.close_reason}",
                    time.monotonic() - started,
                )
        except TimeoutError:
            return "still open", time.monotonic() - started
        except InvalidStatus as refused:
            return str(refused.response.status_code), time.monotonic() - started

    async def run() -> list[tuple[str, float]]:
        return list(await asyncio.gather(*(one() for _ in range(count))))

    ended = asyncio.run(run())
    return {
        "ended": dict(Counter(how for how, _ in ended)),
        "lasted_longest_s": round(max(seconds for _, seconds in ended), 1),
    }


def anonymous_view(target: str, http: str, model: str) -> dict[str, Any]:
    """What a caller with no token learns of the server: the health of "" and of a served
    model (Check and Watch), and /readyz."""
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        overall = stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status
        try:
            stub.Check(health_pb2.HealthCheckRequest(service=model), timeout=10)
            model_check = "OK"
        except grpc.RpcError as error:
            model_check = str(error.code().name)
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=model), timeout=10)
        model_watch = next(watch).status
        watch.cancel()
    names = health_pb2.HealthCheckResponse.ServingStatus.Name
    ready = httpx.get(f"http://{http}/readyz", timeout=10).json()
    return {
        "health": names(overall),
        "model_check": model_check,
        "model_watch": names(model_watch),
        "readyz": ready,
    }


def echoed_request_ids(
    target: str,
    http: str,
    image_bytes: bytes,
    *,
    length: int = 100_000,
    metadata: tuple[tuple[str, str], ...] = (),
) -> dict[str, int]:
    """The length of a `length`-character request_id as each door echoes it."""
    long = "r" * length
    with grpc.insecure_channel(target, MESSAGE_OPTIONS) as channel:
        request = pb.ClassifyRequest(image=image_bytes, request_id=long)
        answer = pb_grpc.RecognizerStub(channel).Classify(request, timeout=30, metadata=metadata)
    body = json_format.MessageToJson(request)
    headers = {"Content-Type": "application/json", **dict(metadata)}
    over_http = httpx.post(f"http://{http}/v1/classify", content=body, headers=headers, timeout=30)
    return {"grpc": len(answer.request_id), "http": len(over_http.json()["request_id"])}


def tls_resumption(
    https: str, ca: Path, client: tuple[Path, Path], rotate: Callable[[], object]
) -> dict[str, Any]:
    """A client with a certificate the client CA signed makes full handshakes (TLS 1.2 and
    1.3) and keeps their sessions; then `rotate()` replaces the client CA: offering a kept
    session again must not get the client in. Returns whether each resumed before the
    rotation and what the offer after it got."""

    def context(version: ssl.TLSVersion) -> ssl.SSLContext:
        made = ssl.create_default_context(cafile=ca)
        made.load_cert_chain(*client)
        made.minimum_version = made.maximum_version = version
        return made

    def get(
        made: ssl.SSLContext, session: ssl.SSLSession | None = None
    ) -> tuple[bool, ssl.SSLSession | None]:
        with (
            socket.create_connection(_address(https), timeout=30) as raw,
            made.wrap_socket(raw, server_hostname="localhost", session=session) as tls,
        ):
            tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
            if not answer.startswith(b"HTTP/1.1 200"):  # TLS 1.3 refuses after the handshake
                raise ConnectionRefusedError("the server closed the connection unanswered")
            return bool(tls.session_reused), tls.session

    results: dict[str, Any] = {}
    kept = {}
    for name, version in (("TLSv1.2", ssl.TLSVersion.TLSv1_2), ("TLSv1.3", ssl.TLSVersion.TLSv1_3)):
        made = context(version)
        _, session = get(made)
        reused, _ = get(made, session)
        results[f"{name} resumed before"] = reused
        kept[name] = (made, session)
    rotate()
    for name, (made, session) in kept.items():
        try:
            reused, _ = get(made, session)
            results[f"{name} after rotation"] = "resumed" if reused else "full handshake accepted"
        except OSError as error:
            results[f"{name} after rotation"] = f"refused ({type(error).__name__})"
    return results


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
        self.errors_logged = 0  # tracebacks and ERROR lines in its log
        threading.Thread(target=self._read_log, daemon=True).start()
        if not self.ready.wait(300):
            raise RuntimeError(f"{' '.join(command)} did not start")

    def _read_log(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            sys.stderr.write(f"  {self.port} | {line}")
            if "serving recognizer.v1.Recognizer" in line:
                self.ready.set()
            if "Traceback" in line or " ERROR " in line:
                self.errors_logged += 1
        self.ready.set()

    def rss(self) -> int:
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def fds(self) -> int:
        return int(psutil.Process(self.process.pid).num_fds())

    def cpu_s(self) -> float:
        times = psutil.Process(self.process.pid).cpu_times()
        return float(times.user + times.system)

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
    results["network"] = run_network_attacks(images, quick)
    results["tls_resumption"] = run_tls_resumption(images, quick)
    results["rolling_restart"] = asdict(run_rolling_restart(images[0], quick))
    results["passed"] = passed(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "faults.json").write_text(json.dumps(results, indent=2) + "\n")
    print(summary(results))
    sys.exit(0 if results["passed"] else 1)


GOOD, ABUSER, REVOKED = (
    "G00dTenantT0kenAbCdEf12",
    "Abus3rT0kenGhIjKlMn3456",
    "R3v0kedT0kenOpQrStUv789",
)
GOOD_DEADLINE_S = 2.0  # a good call answered later than this, during an attack, is lost
HEADER_TIMEOUT_S = 10.0  # the defaults, which these phases check
STREAM_IDLE_S = 60.0
MAX_CONNECTIONS = 1024
MAX_CONCURRENT_RPCS = 4096


def network_attacks(
    target: str,
    abuser: str,
    http: str,
    tokens_file: Path,
    images: Sequence[bytes],
    *,
    quick: bool,
    rss: Callable[[], int],
    fds: Callable[[], int],
    cpu: Callable[[], float],
    errors_logged: Callable[[], int],
    model: str,
    traffic: GoodTraffic | None = None,
) -> dict[str, Any]:
    """Every attack on the doors in turn, from `abuser` (the gRPC port from 127.0.0.1) and
    `http`; `target` is the gRPC port as the good client dials it. Each phase's result has
    the server's resident memory before and after it (two seconds after), and its errors
    logged; `traffic`, the good caller, is told which phase is under way."""
    token = (("authorization", f"Bearer {ABUSER}"),)
    n = 1 if quick else 4  # the phases' sizes, quick or full
    jpegs = hostile_jpegs(4000 if quick else hostile_images.SIDE)
    phases: dict[str, Callable[[], Any]] = {
        "header flood": lambda: header_flood(http, connections=4),
        "slowloris": lambda: slowloris(http, connections=125 * n, seconds=HEADER_TIMEOUT_S + 20),
        "idle sockets": lambda: {
            **idle_sockets([abuser, http], per_port=1500 * n, hold_s=HEADER_TIMEOUT_S + 5, fds=fds),
            "then, on a new connection": answers_on_a_new_connection(
                target, images[0], (("authorization", f"Bearer {GOOD}"),)
            ),
        },
        "health watches": lambda: watch_flood(
            abuser, streams=MAX_CONCURRENT_RPCS // 4 * n + 1024, hold_s=10.0
        ),
        "idle streams": lambda: idle_streams(
            abuser, images[0], streams=50 * n, wait_s=STREAM_IDLE_S + 30, metadata=token
        ),
        "unauthenticated messages": lambda: unauthenticated_messages(
            abuser, calls=16 if quick else 65, rss=rss
        ),
        "undecodable messages": lambda: undecodable(abuser, http, calls=250 * n, metadata=token),
        "costly JPEGs": lambda: {
            **costly_decodes(abuser, jpegs, copies=2 * n, deadline_s=0.5, metadata=token),
            "server_cpu_s_after": cpu_after_callers_left(cpu, settle_s=10.0),
        },
        "revoked token": lambda: revoked_token(abuser, http, tokens_file, images[0], token=REVOKED),
        "idle websockets": lambda: websocket_flood(http, count=125 * n, token=ABUSER),
        "anonymous view": lambda: anonymous_view(abuser, http, model),
        "echoed request ids": lambda: echoed_request_ids(abuser, http, images[0], metadata=token),
    }
    results: dict[str, Any] = {}
    for name, phase in phases.items():
        before, errors = rss(), errors_logged()
        print(f"network: {name}", file=sys.stderr, flush=True)
        if traffic is not None:
            traffic.phase = name
        results[name] = phase()
        time.sleep(2.0)
        results[name] = {
            "result": results[name],
            "rss_before": before,
            "rss_after": rss(),
            "errors_logged": errors_logged() - errors,
        }
    return results


def run_network_attacks(images: Sequence[bytes], quick: bool) -> dict[str, Any]:
    """A server with tokens and HTTP (default settings otherwise), good traffic from a tenant
    on ::1 throughout, and the attacks from 127.0.0.1."""
    with tempfile.TemporaryDirectory() as folder:
        tokens = Path(folder) / "tokens"
        tokens.write_text(f"good:{GOOD}\nabuser:{ABUSER}\nrevoked:{REVOKED}\n", encoding="utf-8")
        port, http_port = free_port(), free_port()
        server = Served(port, "--http-port", str(http_port), "--tokens-file", str(tokens))
        good = (("authorization", f"Bearer {GOOD}"),)
        try:
            reference = reference_answers(f"[::1]:{port}", images, good)
            with GoodTraffic(
                f"[::1]:{port}",
                reference,
                rate=2.0 if quick else 5.0,
                deadline=GOOD_DEADLINE_S,
                metadata=good,
            ) as traffic:
                traffic.phase = "before the attacks"
                results = network_attacks(
                    f"[::1]:{port}",
                    f"127.0.0.1:{port}",
                    f"127.0.0.1:{http_port}",
                    tokens,
                    images,
                    quick=quick,
                    rss=server.rss,
                    fds=server.fds,
                    cpu=server.cpu_s,
                    errors_logged=lambda: server.errors_logged,
                    model="efficientnet-lite0",
                    traffic=traffic,
                )
            results["good"] = {
                "sent": traffic.sent,
                "lost": traffic.lost[:20],
                "slowest_s": round(traffic.slowest_s, 3),
                "slowest_s_by_phase": {
                    phase: round(seconds, 3) for phase, seconds in traffic.slowest_by_phase.items()
                },
            }
            results["serving_at_end"] = serving(f"[::1]:{port}")
        finally:
            server.stop()
    return results


def run_tls_resumption(images: Sequence[bytes], quick: bool) -> dict[str, Any]:
    """A server with mTLS on both ports (certificates made as docs/security.md makes them), good
    traffic over mTLS throughout, and a client that tries to resume a session after the
    client CA is rotated."""
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        make_certificates(folder)
        client_ca = folder / "client-ca.pem"
        client_ca.write_bytes((folder / "ca.pem").read_bytes())
        port, http_port = free_port(), free_port()
        server = Served(
            port,
            *("--http-port", str(http_port), "--tls-cert", str(folder / "server.pem")),
            *("--tls-key", str(folder / "server.key"), "--tls-client-ca", str(client_ca)),
        )
        credentials = grpc.ssl_channel_credentials(
            (folder / "ca.pem").read_bytes(),
            (folder / "good.key").read_bytes(),
            (folder / "good.pem").read_bytes(),
        )
        try:
            target = f"localhost:{port}"
            reference = reference_answers(target, images, credentials=credentials)
            with GoodTraffic(
                target,
                reference,
                rate=2.0 if quick else 5.0,
                deadline=GOOD_DEADLINE_S,
                credentials=credentials,
            ) as traffic:
                resumed = tls_resumption(
                    f"127.0.0.1:{http_port}",
                    folder / "ca.pem",
                    (folder / "good.pem", folder / "good.key"),
                    lambda: client_ca.write_bytes((folder / "other-ca.pem").read_bytes()),
                )
                time.sleep(1.0)
            return {**resumed, "good": {"sent": traffic.sent, "lost": traffic.lost[:20]}}
        finally:
            server.stop()


def make_certificates(folder: Path) -> None:
    """A CA, the server's certificate (localhost, 127.0.0.1, ::1), a client's (CN good) and
    another CA: with OpenSSL, as docs/security.md makes them."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes")
    for ca in ("ca", "other-ca"):
        subject = ("-subj", f"/CN={ca}")
        openssl(
            "req",
            "-x509",
            *key,
            "-days",
            "30",
            *subject,
            "-keyout",
            f"{ca}.key",
            "-out",
            f"{ca}.pem",
        )
    extensions = {
        "server": "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\nextendedKeyUsage=serverAuth\n",
        "good": "extendedKeyUsage=clientAuth\n",
    }
    for name, extension in extensions.items():
        (folder / f"{name}.ext").write_text(extension, encoding="ascii")
        openssl(
            "req", *key, "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.csr"
        )
        openssl(
            *("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key"),
            *("-CAcreateserial", "-days", "30", "-extfile", f"{name}.ext", "-out", f"{name}.pem"),
        )


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
    network, tls = results["network"], results["tls_resumption"]
    return (
        not results["hostile"]["wrong"]
        and not results["good"]["lost"]
        and "INTERNAL" not in every_code
        and set(results["soak"]["codes"]) == {"OK"}
        and results["soak"]["growth_bytes"] < RSS_GROWTH_LIMIT
        and set(results["rolling_restart"]["codes"]) == {"OK"}
        and results["serving_at_end"] == "SERVING"
        and not network_failures(network)
        and not tls["good"]["lost"]
        and all(tls[f"{v} after rotation"].startswith("refused") for v in ("TLSv1.2", "TLSv1.3"))
    )


def network_failures(network: dict[str, Any]) -> list[str]:
    """What each network attack must leave (good traffic answered within its deadline,
    nothing INTERNAL, nothing logged as an error, memory back down), and what each must
    get; returns what did not hold."""
    failures = []
    if network["good"]["lost"] or network["serving_at_end"] != "SERVING":
        failures.append("good traffic lost calls, or the server is not SERVING")
    for name, phase in network.items():
        if name in ("good", "serving_at_end"):
            continue
        if phase["errors_logged"]:
            failures.append(f"{name}: {phase['errors_logged']} errors logged")
        if phase["rss_after"] - phase["rss_before"] >= RSS_GROWTH_LIMIT:
            failures.append(f"{name}: resident memory did not come back down")
        if "INTERNAL" in json.dumps(phase["result"]):
            failures.append(f"{name}: INTERNAL")
    result = {name: phase["result"] for name, phase in network.items() if "result" in phase}
    checks = {
        "header flood": set(result["header flood"]["ended"]) <= {"431", "reset", "closed"}
        and result["header flood"]["most_bytes_sent"] < 16 << 20,
        "slowloris": result["slowloris"]["still_open"] == 0
        and result["slowloris"]["held_longest_s"] <= HEADER_TIMEOUT_S + 5,
        "idle sockets": result["idle sockets"]["server_fds_most"]
        <= 2 * MAX_CONNECTIONS + open_files.RESERVED_FILES
        and result["idle sockets"]["then, on a new connection"] == "OK",
        # CANCELLED: gRPC's client stack ends a few watches so on a busy machine (watch_flood)
        "health watches": set(result["health watches"])
        <= {"held", "RESOURCE_EXHAUSTED", "CANCELLED"}
        and 0 < result["health watches"].get("held", 0) <= MAX_CONCURRENT_RPCS
        and result["health watches"].get("CANCELLED", 0)
        < sum(result["health watches"].values()) / 20
        and (
            sum(result["health watches"].values()) <= MAX_CONCURRENT_RPCS
            or result["health watches"].get("RESOURCE_EXHAUSTED", 0) > 0
        ),
        "idle streams": set(result["idle streams"]["ended"]) == {"DEADLINE_EXCEEDED STREAM_IDLE"},
        "unauthenticated messages": set(result["unauthenticated messages"]["codes"])
        == {"UNAUTHENTICATED"},
        "undecodable messages": set(result["undecodable messages"]["grpc"])
        == {"INVALID_ARGUMENT INVALID_REQUEST"}
        and set(result["undecodable messages"]["http"]) == {"400 INVALID_REQUEST"},
        "revoked token": result["revoked token"]["grpc"] == "UNAUTHENTICATED TOKEN_INVALID"
        and result["revoked token"]["websocket"] == "1008 TOKEN_INVALID",
        "costly JPEGs": set(result["costly JPEGs"]["scan repeated"])
        == {"INVALID_ARGUMENT IMAGE_CORRUPT"}
        and set(result["costly JPEGs"]["2,081 scans"]) == {"INVALID_ARGUMENT IMAGE_TOO_COMPLEX"}
        and all(
            code.startswith("DEADLINE_EXCEEDED") for code in result["costly JPEGs"]["68 scans"]
        ),
        "idle websockets": set(result["idle websockets"]["ended"]) == {"1008 FIRST_FRAME_TIMEOUT"},
        "anonymous view": result["anonymous view"]["model_check"] == "NOT_FOUND"
        and result["anonymous view"]["model_watch"] == "SERVICE_UNKNOWN"
        and result["anonymous view"]["readyz"] == {"status": "SERVING"},
        "echoed request ids": set(result["echoed request ids"].values()) == {256},
    }
    return failures + [f"{name}: not as expected" for name, held in checks.items() if not held]


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
        *(
            f"network          {name}: {json.dumps(phase['result'])}; resident"
            f" {phase['rss_before'] / 2**20:.0f} -> {phase['rss_after'] / 2**20:.0f} MiB"
            for name, phase in results["network"].items()
            if "result" in phase
        ),
        f"                 good traffic {results['network']['good']}",
        *(f"                 {failure}" for failure in network_failures(results["network"])),
        f"TLS resumption   {results['tls_resumption']}",
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
