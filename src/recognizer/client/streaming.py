"""One ClassifyStream session: frames sent on their schedule, answers timed as they arrive.

Why grpc.aio: the stream is bidirectional, and neither direction may wait for the
other. A sender task sleeps until each frame is due, counted from one start time so
that delays never add up, and awaits `write`, which is where flow control holds it
back when the server falls behind in every-frame mode; meanwhile the reader loop
stamps each answer the moment it arrives. Both run on one event loop, so the
bookkeeping needs no thread locks, and frames are produced (decoded, encoded) in a worker
thread, one ahead of the send, so producing never delays a timestamp. The blocking API
would run the sender as a request generator on gRPC's own thread, where an exception
from the source turns into a cancelled call.

A stream that breaks off (its replica drains or dies) is opened again and the frames it
left unanswered are sent again on the new one, which lands on another replica; the
frames are idempotent, so sending one twice costs only time. One asyncio lock orders
the writes, so that the new stream gets those frames before any new one.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

import grpc

from recognizer.client.clients import AsyncClient
from recognizer.outcomes import FrameOutcome
from recognizer.v1 import recognizer_pb2 as pb

Call = grpc.aio.StreamStreamCall[pb.ClassifyRequest, pb.ClassifyResponse]
REOPENS = 3
_REOPEN_BACKOFF_S = 0.1
_REOPEN_BACKOFF_MAX_S = 2.0


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
    code: grpc.StatusCode = grpc.StatusCode.OK  # of the last stream
    details: str = ""
    source_error: Exception | None = None  # why frames stopped coming early, if they did
    reopened: int = 0  # streams opened again after one broke off

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
    reopens: int = REOPENS,
) -> StreamSummary:
    """Send `frames` over a ClassifyStream, calling `on_answer` with each answer.

    `options` go on the first request. Setting `stop` stops sending, and so does an
    exception from `frames` (kept in the summary); either way the frames already sent
    are still answered. The stream's status and the server's trailing counts (summed
    over the streams it took) are put in the summary, not raised.

    A stream that breaks off is opened again, at most `reopens` times in a row (a stream
    that answered a frame before breaking earns them back), after 0.1 s, then twice as
    long each time up to 2 s. It broke off if it ended with UNAVAILABLE (its replica is
    draining, stopped or unreachable) or with INTERNAL and no trailers, which is how
    gRPC reports a stream that a proxy reset because its replica died (Envoy resets it
    with INTERNAL_ERROR). The frames it had not answered are sent first on the new
    stream, in the order they were sent, and `options` with the first of them; their
    latency still counts from their first send.
    """
    session = _Session(client, on_answer, options)
    with ThreadPoolExecutor(1, thread_name_prefix="frames") as producer:
        sender = asyncio.create_task(session.send(iter(frames), producer, stop or asyncio.Event()))
        try:
            await session.receive(reopens)
        finally:
            sender.cancel()  # it is done, unless the stream ended before the frames did
            session.call.cancel()
            await asyncio.wait({sender})
    if not sender.cancelled() and (error := sender.exception()) is not None:
        raise error
    return session.summary


@dataclass(slots=True)
class _Pending:
    """A frame sent and not answered yet: kept whole, to be sent again if its stream breaks."""

    name: str
    request: pb.ClassifyRequest
    sent_at: float
    written: bool = False  # whether some stream has taken it (counted in `sent`)


class _Session:
    """The current stream, the frames in flight by request_id, and what has been counted.

    Writes go one at a time under `_writing`, so that a new stream gets the unanswered
    frames before any new one, and each frame is written to each stream at most once.
    """

    def __init__(
        self,
        client: AsyncClient,
        on_answer: Callable[[FrameAnswer], object],
        options: pb.StreamOptions | None,
    ) -> None:
        self._client = client
        self._on_answer = on_answer
        self._options = options
        self.call: Call = client.open_stream()
        self.summary = StreamSummary()
        self._in_flight: dict[str, _Pending] = {}
        self._started: float | None = None  # when the first frame was sent
        self._writing = asyncio.Lock()
        self._fresh = True  # nothing written to `call` yet: the next write carries options
        self._half_closed = False  # the sender is done: a new stream is half-closed too
        self._replaced = asyncio.Event()  # set when `call` is replaced or has ended for good

    async def send(
        self,
        frames: Iterator[OutgoingFrame],
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
                if not await self._send(frame):
                    return
            async with self._writing:
                self._half_closed = True
                await self._close_writing()
        finally:
            stopped.cancel()
            # A frame produced ahead but not sent is dropped, and so is the source's error.
            if not produced.cancel() and not produced.cancelled():
                produced.exception()  # retrieved, so that asyncio does not log it

    async def _send(self, frame: OutgoingFrame) -> bool:
        """Send a new frame; False if the stream has ended for good (receive says how)."""
        async with self._writing:
            call, replaced = self.call, self._replaced
            sent_at = time.perf_counter()
            if self._started is None:
                self._started = sent_at
            # Registered before the write: its answer may be read before the write returns.
            pending = _Pending(frame.name, frame.request, sent_at)
            self._in_flight[frame.request.request_id] = pending
            if await self._write(pending):
                return True
        # The stream broke: receive() either sends this frame again on a new stream, with
        # the others unanswered, or ends.
        await replaced.wait()
        if self.call is call:
            del self._in_flight[frame.request.request_id]
            return False
        return True

    async def _write(self, pending: _Pending) -> bool:
        """Write a frame to the current stream (holding `_writing`); False if it has ended."""
        request = pending.request
        if self._fresh and self._options is not None:
            request = pb.ClassifyRequest()
            request.CopyFrom(pending.request)
            request.stream_options.CopyFrom(self._options)
        try:
            await self.call.write(request)
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            return False
        self._fresh = False
        if not pending.written:
            pending.written = True
            self.summary.sent += 1
        return True

    async def receive(self, reopens: int) -> None:
        """Read answers until the stream ends, opening it again while it breaks off; then keep
        the last stream's status and the trailing counts."""
        left = reopens
        while True:
            call, answers = self.call, self._answers()
            try:
                async for response in call:
                    self._answered(response, time.perf_counter())
            except grpc.aio.AioRpcError:
                pass  # read below, like the status of a stream that ended well
            code = await call.code()
            trailers = await call.trailing_metadata() or ()
            self._count_trailers(dict(trailers))
            left = reopens if self._answers() > answers else left
            unfinished = bool(self._in_flight) or not self._half_closed
            if not (left and unfinished and _broke_off(code, trailed=bool(trailers))):
                self.summary.code = code
                self.summary.details = await call.details() or ""
                self._replaced.set()  # the stream has ended for good: a waiting sender stops
                return
            await asyncio.sleep(
                min(_REOPEN_BACKOFF_S * 2 ** (reopens - left), _REOPEN_BACKOFF_MAX_S)
            )
            left -= 1
            await self._reopen()

    async def _reopen(self) -> None:
        """Open a new stream and send it the frames not answered, before any new frame."""
        async with self._writing:
            self.call = self._client.open_stream()
            self._fresh = True
            self.summary.reopened += 1
            replaced, self._replaced = self._replaced, asyncio.Event()
            replaced.set()
            for pending in list(self._in_flight.values()):
                if not await self._write(pending):
                    return  # this stream broke too: receive() reads why
            if self._half_closed:
                await self._close_writing()

    async def _close_writing(self) -> None:
        """Half-close the current stream; if it has broken, receive() reads why."""
        with suppress(grpc.aio.AioRpcError):
            await self.call.done_writing()

    def _answers(self) -> int:
        return sum(self.summary.counts.values())

    def _count_trailers(self, trailers: dict[str, str | bytes]) -> None:
        counts = self.summary.server_counts
        for outcome in FrameOutcome:
            if outcome.trailer in trailers:
                counts[outcome] = counts.get(outcome, 0) + int(trailers[outcome.trailer])

    def _answered(self, response: pb.ClassifyResponse, now: float) -> None:
        pending = self._in_flight.pop(response.request_id)
        answer = FrameAnswer(pending.name, response, now - pending.sent_at)
        self.summary.counts[answer.outcome] += 1
        if answer.outcome is FrameOutcome.ANSWERED:
            self.summary.latencies_s.append(answer.latency_s)
        assert self._started is not None  # set before the first write
        self.summary.elapsed_s = now - self._started
        self._on_answer(answer)


def _broke_off(code: grpc.StatusCode, *, trailed: bool) -> bool:
    """Whether a stream ended because its replica went away, not because of what it sent:
    UNAVAILABLE, or INTERNAL without the trailers every answer of our server carries
    (gRPC's report of a stream reset by a proxy)."""
    return code is grpc.StatusCode.UNAVAILABLE or (code is grpc.StatusCode.INTERNAL and not trailed)
