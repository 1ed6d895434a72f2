"""One ClassifyStream session: frames sent on their schedule, answers timed as they arrive.

Why grpc.aio: the stream is bidirectional, and neither direction may wait for the
other. A sender task sleeps until each frame is due, counted from one start time so
that delays never add up, and awaits `write`, which is where flow control holds it
back when the server falls behind in every-frame mode; meanwhile the reader loop
stamps each answer the moment it arrives. Both run on one event loop, so the
bookkeeping needs no locks, and frames are produced (decoded, encoded) in a worker
thread, one ahead of the send, so producing never delays a timestamp. The blocking API
would run the sender as a request generator on gRPC's own thread, where an exception
from the source turns into a cancelled call.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc

from recognizer.client.clients import AsyncClient
from recognizer.outcomes import FrameOutcome
from recognizer.v1 import recognizer_pb2 as pb

Call = grpc.aio.StreamStreamCall[pb.ClassifyRequest, pb.ClassifyResponse]


@dataclass(frozen=True, slots=True)
class OutgoingFrame:
    """A request to send `due` seconds after the first frame (None: as soon as it can go).

    Answers are matched to frames by request_id, so ids must be unique within a stream.
    """

    request: pb.ClassifyRequest
    due: float | None = None
    name: str = ""


@dataclass(frozen=True, slots=True)
class FrameAnswer:
    """The answer to one frame, and its latency: from handing it to gRPC to reading this."""

    name: str
    response: pb.ClassifyResponse
    latency_s: float

    @property
    def outcome(self) -> FrameOutcome:
        if self.response.HasField("error"):
            return FrameOutcome.FAILED
        return FrameOutcome.SKIPPED if self.response.skipped else FrameOutcome.ANSWERED


@dataclass(slots=True)
class StreamSummary:
    """What one stream did, as the client counted it and (`server_counts`) the server did."""

    sent: int = 0
    counts: Counter[FrameOutcome] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)  # of classified frames only
    elapsed_s: float = 0.0  # from the first send to the last answer
    server_counts: dict[FrameOutcome, int] = field(default_factory=dict)  # from the trailers
    code: grpc.StatusCode = grpc.StatusCode.OK
    details: str = ""
    source_error: Exception | None = None  # why frames stopped coming early, if they did

    @property
    def unanswered(self) -> int:
        return self.sent - sum(self.counts.values())

    @property
    def ok(self) -> bool:
        """No frame failed, the source ran to its end, and the stream ended with OK."""
        return (
            self.code == grpc.StatusCode.OK
            and not self.counts[FrameOutcome.FAILED]
            and self.source_error is None
        )

    @property
    def frames_per_s(self) -> float:
        """Answers of any outcome per second."""
        return sum(self.counts.values()) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def latency_s(self, percentile: float) -> float | None:
        """A nearest-rank percentile of the classified frames' latency (None without any)."""
        if not self.latencies_s:
            return None
        ordered = sorted(self.latencies_s)
        return ordered[max(math.ceil(percentile / 100 * len(ordered)), 1) - 1]


async def stream_frames(
    client: AsyncClient,
    frames: Iterable[OutgoingFrame],
    *,
    options: pb.StreamOptions | None = None,
    on_answer: Callable[[FrameAnswer], object] = lambda answer: None,
    stop: asyncio.Event | None = None,
) -> StreamSummary:
    """Send `frames` over one ClassifyStream, calling `on_answer` with each answer.

    `options` go on the first request. Setting `stop` stops sending, and so does an
    exception from `frames` (kept in the summary); either way the frames already sent
    are still answered. The stream's status and the server's trailing counts are put
    in the summary, not raised.
    """
    session = _Session(client.open_stream(), on_answer)
    with ThreadPoolExecutor(1, thread_name_prefix="frames") as producer:
        sender = asyncio.create_task(
            session.send(iter(frames), options, producer, stop or asyncio.Event())
        )
        try:
            await session.receive()
        finally:
            sender.cancel()  # it is done, unless the stream ended before the frames did
            session.call.cancel()
            await asyncio.wait({sender})
    if not sender.cancelled() and (error := sender.exception()) is not None:
        raise error
    return session.summary


class _Session:
    """The frames in flight, by request_id, and what has been counted so far."""

    def __init__(self, call: Call, on_answer: Callable[[FrameAnswer], object]) -> None:
        self.call = call
        self.summary = StreamSummary()
        self._on_answer = on_answer
        self._in_flight: dict[str, tuple[str, float]] = {}  # request_id: (name, sent at)
        self._started: float | None = None  # when the first frame was sent

    async def send(
        self,
        frames: Iterator[OutgoingFrame],
        options: pb.StreamOptions | None,
        producer: ThreadPoolExecutor,
        stop: asyncio.Event,
    ) -> None:
        """Write each frame when it is due, producing the next one meanwhile, then half-close."""
        loop = asyncio.get_running_loop()
        stopped = asyncio.ensure_future(stop.wait())
        schedule: float | None = None  # the clock time that frames' `due` counts from
        produced = loop.run_in_executor(producer, next, frames, None)
        try:
            while True:
                either: set[asyncio.Future[Any]] = {produced, stopped}
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
                if stop.is_set():
                    break
                try:
                    frame = produced.result()
                except Exception as error:
                    self.summary.source_error = error
                    break
                if frame is None:
                    break
                # One ahead: the next frame is produced while this one waits and is written.
                produced = loop.run_in_executor(producer, next, frames, None)
                if frame.due is not None:
                    now = time.perf_counter()
                    schedule = now - frame.due if schedule is None else schedule
                    if schedule + frame.due > now:
                        await asyncio.wait({stopped}, timeout=schedule + frame.due - now)
                        if stop.is_set():
                            break
                if not await self._write(frame, options if self._started is None else None):
                    return
            await self.call.done_writing()
        finally:
            stopped.cancel()
            # A frame produced ahead but not sent is dropped, and so is the source's error.
            if not produced.cancel() and not produced.cancelled():
                produced.exception()  # retrieved, so that asyncio does not log it

    async def _write(self, frame: OutgoingFrame, options: pb.StreamOptions | None) -> bool:
        """Send one frame; False if the stream has already ended (receive says how)."""
        request = frame.request
        if options is not None:
            request = pb.ClassifyRequest()
            request.CopyFrom(frame.request)
            request.stream_options.CopyFrom(options)
        sent_at = time.perf_counter()
        if self._started is None:
            self._started = sent_at
        # Registered before the write: its answer may be read before the write returns.
        self._in_flight[request.request_id] = (frame.name, sent_at)
        try:
            await self.call.write(request)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            del self._in_flight[request.request_id]
            return False
        self.summary.sent += 1
        return True

    async def receive(self) -> None:
        """Read answers until the stream ends, then keep its status and trailing counts."""
        try:
            async for response in self.call:
                self._answered(response, time.perf_counter())
        except grpc.aio.AioRpcError:
            pass  # read below, like the status of a stream that ended well
        summary = self.summary
        summary.code = await self.call.code()
        summary.details = await self.call.details() or ""
        trailers = await self.call.trailing_metadata() or ()
        counts = dict(trailers)
        summary.server_counts = {
            outcome: int(counts[outcome.trailer])
            for outcome in FrameOutcome
            if outcome.trailer in counts
        }

    def _answered(self, response: pb.ClassifyResponse, now: float) -> None:
        name, sent_at = self._in_flight.pop(response.request_id)
        answer = FrameAnswer(name, response, now - sent_at)
        self.summary.counts[answer.outcome] += 1
        if answer.outcome is FrameOutcome.ANSWERED:
            self.summary.latencies_s.append(answer.latency_s)
        assert self._started is not None  # set before the first write
        self.summary.elapsed_s = now - self._started
        self._on_answer(answer)
