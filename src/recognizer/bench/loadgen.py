"""The client loops of one load-generating process, on one asyncio event loop.

Three shapes of load:
- closed loop: `concurrency` callers, each sending its next request when the last is
  answered; latency is measured from the send.
- open loop: requests sent on a fixed schedule, `rate` per second, whether or not the
  server keeps up; latency is measured from the scheduled send time, so queueing on
  either side shows in it rather than silently lowering the load (coordinated omission).
- streams: `streams` ClassifyStream calls, each sending `fps` frames per second on a
  fixed schedule (or, at 0 fps, as fast as answered, a few frames ahead). A frame's
  error is counted by its code; a stream that fails ends, and its unanswered frames
  are counted as failed with the stream's status.

Requests sent during the warm-up are answered but not measured. Every run is bounded:
it stops sending after its duration (MAX_DURATION_S at most) or request count
(MAX_REQUESTS at most), and gives calls in flight `timeout_s` to finish.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, MutableSequence
from dataclasses import dataclass, field, replace
from typing import Literal

import grpc

from recognizer.bench import BenchError
from recognizer.bench.stats import Outcome, ProcessUsage, Results
from recognizer.bench.workload import RequestCycle, Workload
from recognizer.client.channel import Credentials, open_aio_channel
from recognizer.client.clients import MESSAGE_OPTIONS
from recognizer.v1 import recognizer_pb2 as pb
from recognizer.v1 import recognizer_pb2_grpc as pb_grpc

MAX_DURATION_S = 3600.0
MAX_REQUESTS = 1_000_000
MAX_IN_FLIGHT = 4096  # open loop, per process: beyond this, sends wait (and count late)
STREAM_WINDOW = 8  # unpaced streams: frames sent ahead of their answers
CONNECT_TIMEOUT_S = 10.0
_POLICIES = {
    "every": pb.STREAM_POLICY_EVERY_FRAME,
    "latest": pb.STREAM_POLICY_LATEST_FRAME,
}
_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}

Policy = Literal["every", "latest"]
Send = Callable[[], Awaitable[Outcome]]


@dataclass(frozen=True, kw_only=True)
class Load:
    """What to send, to where, and how hard; `split` shares it among client processes.

    Streams when `streams` is set, else an open loop when `rate` is set, else a closed
    loop of `concurrency` callers. `requests` (measured requests) wins over `duration_s`.
    `phase_s` and `stream_spacing_s` place this share's sends within the whole schedule.
    """

    target: str
    workload: Workload
    credentials: Credentials = field(default_factory=Credentials)
    concurrency: int = 1
    rate: float = 0.0
    streams: int = 0
    fps: float = 0.0
    policy: Policy = "every"
    warmup_s: float = 0.0
    duration_s: float = 10.0
    requests: int | None = None
    timeout_s: float = 30.0
    phase_s: float = 0.0
    stream_spacing_s: float = 0.0

    @property
    def kind(self) -> Literal["closed", "open", "stream"]:
        return "stream" if self.streams else "open" if self.rate else "closed"

    def split(self, parts: int) -> list[Load]:
        """Share the load among `parts` processes; together they send what this one would."""
        most = {"closed": self.concurrency, "stream": self.streams}.get(self.kind, parts)
        if not 1 <= parts <= most:
            raise BenchError(f"{parts} processes cannot share {most} callers or streams")
        shares = []
        for index in range(parts):
            requests = None if self.requests is None else _portion(self.requests, parts, index)
            if self.kind == "open":
                share = replace(self, rate=self.rate / parts, phase_s=index / self.rate)
            elif self.kind == "stream":
                spacing = 1 / (self.streams * self.fps) if self.fps else 0.0
                first = sum(_portion(self.streams, parts, i) for i in range(index))
                share = replace(
                    self,
                    streams=_portion(self.streams, parts, index),
                    phase_s=first * spacing,
                    stream_spacing_s=spacing,
                )
            else:
                share = replace(self, concurrency=_portion(self.concurrency, parts, index))
            shares.append(replace(share, requests=requests))
        return shares


class Progress:
    """Measured answers and errors, in slots a progress bar elsewhere can read."""

    def __init__(self, counters: MutableSequence[int], slot: int) -> None:
        self._counters = counters
        self._answers, self._errors = 2 * slot, 2 * slot + 1

    def add(self, outcome: Outcome) -> None:
        self._counters[self._answers] += 1
        if outcome.code != "OK":
            self._counters[self._errors] += 1


class Recorder:
    """One process's timeline (warm-up, end, request quota) and what it measured.

    `requests` (measured requests) wins over `duration_s`; either way, a run measures
    MAX_DURATION_S and MAX_REQUESTS at most.
    """

    def __init__(
        self,
        start: float,
        *,
        warmup_s: float,
        duration_s: float,
        requests: int | None,
        progress: Progress | None = None,
    ) -> None:
        self.start = start
        self.measure_from = start + warmup_s
        duration_s = MAX_DURATION_S if requests is not None else min(duration_s, MAX_DURATION_S)
        self.stop_at = self.measure_from + duration_s
        self._quota = MAX_REQUESTS if requests is None else requests
        self._progress = progress
        self.results = Results(
            measure_from=self.measure_from,
            sending_ends=self.stop_at if requests is None else None,
        )

    def admit(self, at: float) -> bool:
        """Whether a request may be sent at `at`: before the end, and within the quota."""
        if at >= self.stop_at or self._quota <= 0:
            return False
        if at >= self.measure_from:
            self._quota -= 1
        return True

    def record(self, sent_at: float, outcome: Outcome) -> None:
        if sent_at < self.measure_from:
            return
        done_at = time.monotonic()
        self.results.record(done_at - sent_at, done_at, outcome)
        if self._progress:
            self._progress.add(outcome)


async def run_share(
    load: Load, *, progress: Progress, ready: Callable[[], float] = time.monotonic
) -> Results:
    """Connect, build the requests, then run this process's share of the load.

    `ready` is called (in a thread) once everything is set up and returns the
    time.monotonic() instant at which to start, so processes start together.
    """
    # No service config: the bench counts every refusal, so nothing is retried or balanced.
    channel = open_aio_channel(load.target, load.credentials, options=MESSAGE_OPTIONS)
    async with channel:
        await _connect(channel, load.target)
        stub = pb_grpc.RecognizerStub(channel)
        requests = RequestCycle(load.workload.requests(), unique=load.workload.unique)
        start = await asyncio.to_thread(ready)
        await _sleep_until(start)
        cpu_started, wall_started = time.process_time(), time.monotonic()
        recorder = Recorder(
            start,
            warmup_s=load.warmup_s,
            duration_s=load.duration_s,
            requests=load.requests,
            progress=progress,
        )
        if load.kind == "stream":
            await _streams(stub, requests, load, recorder)
        else:

            async def send() -> Outcome:
                return await _classify(stub, next(requests), load.timeout_s)

            if load.kind == "open":
                await open_loop(send, recorder, rate=load.rate, phase_s=load.phase_s)
            else:
                await closed_loop(send, recorder, callers=load.concurrency)
        usage = ProcessUsage(time.process_time() - cpu_started, time.monotonic() - wall_started)
    recorder.results.usage.append(usage)
    return recorder.results


async def _connect(channel: grpc.aio.Channel, target: str) -> None:
    """Wait for the connection; a refused or failed one is an error at once, not a retry."""
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            state = channel.get_state(try_to_connect=True)
            while state != grpc.ChannelConnectivity.READY:
                if state == grpc.ChannelConnectivity.TRANSIENT_FAILURE:
                    raise BenchError(f"cannot connect to {target}")
                await channel.wait_for_state_change(state)
                state = channel.get_state(try_to_connect=True)
    except TimeoutError:
        raise BenchError(f"cannot connect to {target} within {CONNECT_TIMEOUT_S:.0f} s") from None


async def closed_loop(send: Send, recorder: Recorder, *, callers: int) -> None:
    """`callers` callers, each sending again as soon as it is answered."""

    async def caller() -> None:
        while recorder.admit(sent_at := time.monotonic()):
            recorder.record(sent_at, await send())

    async with asyncio.TaskGroup() as group:
        for _ in range(callers):
            group.create_task(caller())


async def open_loop(send: Send, recorder: Recorder, *, rate: float, phase_s: float = 0.0) -> None:
    """Send `rate` requests a second on a fixed schedule; latency counts from the schedule."""
    slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    async def one(scheduled: float) -> None:
        try:
            recorder.record(scheduled, await send())
        finally:
            slots.release()

    async with asyncio.TaskGroup() as group:
        index = 0
        while recorder.admit(scheduled := recorder.start + phase_s + index / rate):
            index += 1
            await _sleep_until(scheduled)
            await slots.acquire()
            group.create_task(one(scheduled))


async def _classify(
    stub: pb_grpc.RecognizerStub, request: pb.ClassifyRequest, timeout_s: float
) -> Outcome:
    try:
        response: pb.ClassifyResponse = await stub.Classify(request, timeout=timeout_s)
    except grpc.aio.AioRpcError as error:
        return Outcome(error.code().name)
    return Outcome("OK", response.timing.batch_size, response.timing.cache_hit)


async def _streams(
    stub: pb_grpc.RecognizerStub, requests: RequestCycle, load: Load, recorder: Recorder
) -> None:
    async with asyncio.TaskGroup() as group:
        for index in range(load.streams):
            phase = load.phase_s + index * load.stream_spacing_s
            group.create_task(_stream(stub, requests, load, recorder, phase))


async def _stream(
    stub: pb_grpc.RecognizerStub,
    requests: RequestCycle,
    load: Load,
    recorder: Recorder,
    phase_s: float,
) -> None:
    """One ClassifyStream: frames on schedule (or a window ahead), answers matched in order."""
    sent: deque[float] = deque()
    window = asyncio.Semaphore(STREAM_WINDOW)

    async def frames() -> AsyncIterator[pb.ClassifyRequest]:
        for index in range(MAX_REQUESTS):
            if load.fps:
                at = recorder.start + phase_s + index / load.fps
                if not recorder.admit(at):
                    return
                await _sleep_until(at)
            else:
                await window.acquire()
                if not recorder.admit(at := time.monotonic()):
                    return
            request = next(requests)
            if index == 0:
                request = _with_policy(request, load.policy)
            sent.append(at)
            yield request

    # Bounded like everything else: the run's end, plus time for the last answers.
    timeout = max(recorder.stop_at - time.monotonic(), 0.0) + load.timeout_s
    call = stub.ClassifyStream(frames(), timeout=timeout)
    try:
        async for response in call:
            recorder.record(sent.popleft(), _frame_outcome(response))
            window.release()
    except grpc.aio.AioRpcError as error:
        while sent:  # the stream failed: its unanswered frames fail with it
            recorder.record(sent.popleft(), Outcome(error.code().name))


def _with_policy(request: pb.ClassifyRequest, policy: Policy) -> pb.ClassifyRequest:
    first = pb.ClassifyRequest()
    first.CopyFrom(request)
    first.stream_options.policy = _POLICIES[policy]
    return first


def _frame_outcome(response: pb.ClassifyResponse) -> Outcome:
    if response.HasField("error"):
        return Outcome(_CODE_NAMES.get(response.error.code, "UNKNOWN"))
    timing = response.timing
    return Outcome("OK", timing.batch_size, timing.cache_hit, skipped=response.skipped)


async def _sleep_until(instant: float) -> None:
    delay = instant - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


def _portion(total: int, parts: int, index: int) -> int:
    """The index-th of `parts` near-equal integer portions of `total`."""
    return total // parts + (index < total % parts)
