"""Streaming sessions against a real server: order, pacing, policies, latency, summaries."""

from __future__ import annotations

import asyncio
import concurrent.futures
import statistics
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import grpc
import pytest

from fakes import COLOURS, ColourNet, colour_model, solid_png
from recognizer.client import AsyncClient
from recognizer.client.payloads import to_request
from recognizer.client.sources import open_source
from recognizer.client.streaming import (
    FrameAnswer,
    OutgoingFrame,
    StreamSummary,
    stream_frames,
)
from recognizer.v1 import recognizer_pb2 as pb
from support import ServerThread
from videos import solid_video

PICTURES = [(200, 0, 0), (0, 200, 0), (0, 0, 200)]  # red, green, blue: classes 0, 1, 2
LATEST = pb.StreamOptions(policy=pb.STREAM_POLICY_LATEST_FRAME)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with ServerThread([colour_model()], max_batch_size=4) as running:
        yield running


@pytest.fixture(scope="module")
def slow_server() -> Iterator[ServerThread]:
    """40 ms a batch of at most 2, one batch at a time: easy to fall behind."""
    model = colour_model(network=ColourNet(delay_s=0.04))
    with ServerThread([model], max_batch_size=2, inference_workers=1) as running:
        yield running


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 frames at 40 fps: red, green, blue, red, ..."""
    return solid_video(tmp_path_factory.mktemp("video") / "clip.mp4", PICTURES * 4, fps=40)


def stream(
    address: str,
    location: Path,
    *,
    raw_format: str | None = None,
    fps: float | None = None,
    options: pb.StreamOptions | None = None,
) -> tuple[list[FrameAnswer], StreamSummary]:
    """Stream a source as `recognizer stream` does; returns the answers and the summary."""
    answers: list[FrameAnswer] = []

    async def run() -> StreamSummary:
        with open_source(location, fps=fps) as source:
            frames = (
                OutgoingFrame(
                    to_request(frame, raw_format=raw_format, top_k=1, language="en"),
                    frame.due,
                    frame.name,
                )
                for frame in source.frames
            )
            async with AsyncClient(address) as client:
                return await stream_frames(
                    client, frames, options=options, on_answer=answers.append
                )

    return answers, asyncio.run(run())


def labels(answers: list[FrameAnswer]) -> list[str]:
    return [a.response.labels[0].label if a.response.labels else a.outcome for a in answers]


def test_every_frame_of_a_video_is_answered_in_order_with_its_colour(
    server: ServerThread, clip: Path
) -> None:
    answers, summary = stream(server.address, clip)
    assert [a.response.request_id for a in answers] == [str(i) for i in range(12)]
    assert labels(answers) == COLOURS["en"] * 4
    assert [a.name for a in answers][:3] == ["0.000s", "0.025s", "0.050s"]
    assert summary.ok and summary.code == grpc.StatusCode.OK
    assert (summary.sent, summary.counts["answered"]) == (12, 12)
    assert summary.server_counts == {"answered": 12, "skipped": 0, "failed": 0}


@pytest.mark.parametrize("raw_format", ["auto", "rgb8", "nv12", "i420"])
def test_raw_frames_get_the_same_labels_as_encoded_ones(
    server: ServerThread, clip: Path, raw_format: str
) -> None:
    answers, summary = stream(server.address, clip, raw_format=raw_format)
    assert labels(answers) == COLOURS["en"] * 4
    assert summary.ok


def test_frames_go_at_their_timestamps_without_drifting(server: ServerThread) -> None:
    png = solid_png(PICTURES[1], size=16)
    dues = [index / 200 for index in range(60)]
    frames = [
        OutgoingFrame(pb.ClassifyRequest(image=png, request_id=str(i)), due)
        for i, due in enumerate(dues)
    ]
    sent: list[float] = []  # when each frame went, from when its answer came and its latency

    async def run() -> StreamSummary:
        async with AsyncClient(server.address) as client:
            return await stream_frames(
                client, frames, on_answer=lambda a: sent.append(time.perf_counter() - a.latency_s)
            )

    summary = asyncio.run(run())
    offsets = [at - sent[0] for at in sent]
    assert all(offset >= due - 0.002 for offset, due in zip(offsets, dues, strict=True))
    # Scheduled from the start, the last frames are as punctual as the first; waiting
    # 5 ms after each send instead would leave them 60 small delays late.
    lateness = [offset - due for offset, due in zip(offsets, dues, strict=True)]
    assert statistics.median(lateness[-10:]) < 0.01, lateness
    assert summary.elapsed_s == pytest.approx(dues[-1], abs=0.05)


def test_latest_frame_on_a_slow_server_reports_skipped_frames(
    slow_server: ServerThread, tmp_path: Path
) -> None:
    for index in range(40):
        (tmp_path / f"{index}.png").write_bytes(solid_png(PICTURES[index % 3], size=16))
    answers, summary = stream(slow_server.address, tmp_path, fps=200, options=LATEST)
    assert [a.response.request_id for a in answers] == [str(i) for i in range(40)]
    skipped = [a for a in answers if a.outcome == "skipped"]
    assert len(skipped) >= 10 and all(not a.response.labels for a in skipped)
    assert summary.counts["skipped"] == len(skipped)
    assert summary.server_counts == {
        "answered": 40 - len(skipped),
        "skipped": len(skipped),
        "failed": 0,
    }
    for answer in answers:
        if answer.outcome == "answered":
            assert answer.response.labels[0].class_id == int(answer.response.request_id) % 3
    assert summary.ok


def test_latency_and_summary_numbers_agree(slow_server: ServerThread, tmp_path: Path) -> None:
    for index in range(12):
        (tmp_path / f"{index}.png").write_bytes(solid_png(PICTURES[index % 3], size=16))
    answers, summary = stream(slow_server.address, tmp_path)  # every frame, all at once
    latencies = [a.latency_s for a in answers]
    assert all(0 < latency < summary.elapsed_s for latency in latencies)
    assert summary.latencies_s == latencies  # every frame was classified
    p50, p95, p99 = (summary.latency_s(p) for p in (50, 95, 99))
    assert p50 is not None and p95 is not None and p99 is not None
    assert min(latencies) <= p50 <= p95 <= p99 <= max(latencies)
    assert p99 == max(latencies)  # nearest rank: the worst of 12
    assert summary.sent == sum(summary.counts.values()) == 12 and summary.unanswered == 0
    assert summary.frames_per_s == pytest.approx(12 / summary.elapsed_s)
    # Queued behind a 40 ms model, the last frames waited for the first ones.
    assert max(latencies) > 0.1


def test_a_corrupt_image_fails_alone_and_the_stream_goes_on(
    server: ServerThread, tmp_path: Path
) -> None:
    for index, picture in enumerate(PICTURES):
        (tmp_path / f"{index}.png").write_bytes(solid_png(picture))
    (tmp_path / "1b.png").write_bytes(solid_png(PICTURES[0])[:70])  # truncated
    for raw_format in (None, "auto"):
        answers, summary = stream(server.address, tmp_path, raw_format=raw_format)
        assert [a.name for a in answers] == ["0.png", "1.png", "1b.png", "2.png"]
        assert labels(answers) == ["red", "green", "failed", "blue"]
        error = answers[2].response.error
        assert error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and error.message
        assert summary.counts == {"answered": 3, "failed": 1}
        assert summary.server_counts["failed"] == 1
        assert not summary.ok and summary.code == grpc.StatusCode.OK


def test_a_stream_refused_by_the_server_keeps_its_status(server: ServerThread, clip: Path) -> None:
    bad = pb.StreamOptions(policy=pb.STREAM_POLICY_EVERY_FRAME, max_frame_age_ms=10)
    _, summary = stream(server.address, clip, options=bad)
    assert summary.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_frame_age_ms" in summary.details
    assert not summary.ok


def test_a_source_that_breaks_off_ends_sending_and_the_frames_sent_are_answered(
    server: ServerThread,
) -> None:
    def frames() -> Iterator[OutgoingFrame]:
        for index in range(2):
            request = pb.ClassifyRequest(image=solid_png(PICTURES[index]), request_id=str(index))
            yield OutgoingFrame(request)
        raise OSError("camera unplugged")

    async def run() -> StreamSummary:
        async with AsyncClient(server.address) as client:
            return await stream_frames(client, frames())

    summary = asyncio.run(run())
    assert isinstance(summary.source_error, OSError)
    assert (summary.sent, summary.counts["answered"], summary.code) == (2, 2, grpc.StatusCode.OK)
    assert not summary.ok


def test_stop_ends_sending_and_the_frames_sent_are_still_answered(
    slow_server: ServerThread,
) -> None:
    def frames() -> Iterator[OutgoingFrame]:
        for index in range(1000):
            request = pb.ClassifyRequest(image=solid_png(PICTURES[0]), request_id=str(index))
            yield OutgoingFrame(request, due=index / 50)

    async def run() -> StreamSummary:
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.3, stop.set)
        async with AsyncClient(slow_server.address) as client:
            return await stream_frames(client, frames(), stop=stop)

    started = time.perf_counter()
    summary = asyncio.run(run())
    assert time.perf_counter() - started < 3
    assert 5 <= summary.sent < 100
    assert summary.counts["answered"] == summary.sent and summary.ok


class _EchoCall:
    """A ClassifyStream that answers each request once `on_write` has seen it."""

    def __init__(self, on_write: Callable[[pb.ClassifyRequest], Awaitable[None]]) -> None:
        self._on_write = on_write
        self._answers: asyncio.Queue[pb.ClassifyResponse | None] = asyncio.Queue()

    async def write(self, request: pb.ClassifyRequest) -> None:
        await self._on_write(request)
        self._answers.put_nowait(pb.ClassifyResponse(request_id=request.request_id))

    async def done_writing(self) -> None:
        self._answers.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[pb.ClassifyResponse]:
        while (answer := await self._answers.get()) is not None:
            yield answer

    def cancel(self) -> bool:
        return False

    async def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.OK

    async def details(self) -> str:
        return ""

    async def trailing_metadata(self) -> tuple[()]:
        return ()


def test_the_next_frame_is_produced_while_the_current_one_waits_and_is_written() -> None:
    count = 4
    producing = [threading.Event() for _ in range(count + 1)]  # the last: the source's end
    overlapped: list[bool] = []

    def frames() -> Iterator[OutgoingFrame]:
        for index in range(count):
            producing[index].set()
            yield OutgoingFrame(pb.ClassifyRequest(request_id=str(index)), due=index / 100)
        producing[count].set()

    async def write(request: pb.ClassifyRequest) -> None:
        following = producing[int(request.request_id) + 1]
        overlapped.append(await asyncio.to_thread(following.wait, 2))

    class Client:
        def open_stream(self) -> _EchoCall:
            return _EchoCall(write)

    summary = asyncio.run(stream_frames(Client(), frames()))  # type: ignore[arg-type]
    assert overlapped == [True] * count  # each write found the next frame under way
    assert (summary.sent, summary.counts["answered"], summary.ok) == (count, count, True)


def test_a_stream_whose_server_stops_is_reopened_on_the_next_with_the_frames_unanswered() -> None:
    slow = ColourNet(delay_s=0.02)  # frames queue up, so some are in flight when it stops
    with (
        ServerThread([colour_model(network=slow)], max_batch_size=2) as first,
        ServerThread([colour_model(network=slow)], max_batch_size=2) as second,
    ):
        servers = {first.address: first, second.address: second}
        frames = [
            OutgoingFrame(pb.ClassifyRequest(image=solid_png(PICTURES[i % 3]), request_id=str(i)))
            for i in range(40)
        ]
        answers: list[FrameAnswer] = []
        stopping: list[concurrent.futures.Future[None]] = []

        def on_answer(answer: FrameAnswer) -> None:
            answers.append(answer)
            if len(answers) == 10:  # stop the server that has the stream, as SIGTERM would
                (serving,) = (s for s in servers.values() if s.engine.open_streams)
                stopping.append(serving.submit(serving.server.stop(drain_delay=0)))

        async def run() -> StreamSummary:
            async with AsyncClient(f"ipv4:{first.address},{second.address}") as client:
                return await stream_frames(client, frames, on_answer=on_answer)

        summary = asyncio.run(run())
        stopping[0].result(timeout=30)
    assert sorted(int(a.response.request_id) for a in answers) == list(range(40))
    for answer in answers:
        assert answer.response.labels, str(answer.response)
        assert answer.response.labels[0].class_id == int(answer.response.request_id) % 3
    assert (summary.reopened, summary.sent, summary.ok) == (1, 40, True)
    # Both streams' trailers: each frame was classified once, by one server or the other.
    assert summary.server_counts == {"answered": 40, "skipped": 0, "failed": 0}


def test_a_stream_is_reopened_at_most_reopens_times_in_a_row() -> None:
    async def refuse_streams() -> None:
        draining.engine.drain()  # from now on every stream is refused with UNAVAILABLE

    with ServerThread([colour_model()]) as draining:
        draining.run(refuse_streams())
        frames = [OutgoingFrame(pb.ClassifyRequest(image=solid_png(PICTURES[0]), request_id="0"))]

        async def run() -> StreamSummary:
            async with AsyncClient(draining.address) as client:
                return await stream_frames(client, frames, reopens=2)

        summary = asyncio.run(run())
    assert (summary.reopened, summary.code) == (2, grpc.StatusCode.UNAVAILABLE)
    assert summary.unanswered == summary.sent and not summary.ok
