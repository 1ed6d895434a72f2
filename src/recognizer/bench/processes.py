"""Run a load from one or several client processes, with a progress bar, and merge the results.

A Python client tops out near one core (its event loop holds the GIL), which a fast
server outruns; `processes` spawns that many client processes to share the load, so
the generator is not what is measured. They are spawned, not forked (gRPC does not
survive a fork), set up (connect, read and decode the images), and then started at
the same instant. Each reports the CPU it used, so the report can say whether the
generator was saturated. Several loads may run at once (`run_loads`: a camera beside a
batch job), each from processes of its own, all started at the same instant.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import threading
import time
from collections.abc import MutableSequence, Sequence
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from types import TracebackType
from typing import Any, cast

from tqdm import tqdm

from recognizer.bench import BenchError
from recognizer.bench.loadgen import MAX_DURATION_S, Load, Progress, run_share
from recognizer.bench.stats import Results

SETUP_TIMEOUT_S = 60.0
START_SLACK_S = 0.2  # between the last process being ready and the common start
FINISH_SLACK_S = 30.0


def run_load(load: Load, *, processes: int = 1) -> Results:
    """Run `load` shared among `processes` client processes (1: this one) and merge results."""
    shares = load.split(processes)
    if len(shares) == 1:
        counters = [0, 0]
        with ProgressBar(load, counters):
            results = asyncio.run(run_share(shares[0], progress=Progress(counters, 0)))
        return Results.merge([results])
    return run_loads([(load, processes)])[0]


def run_loads(loads: Sequence[tuple[Load, int]]) -> list[Results]:
    """Run every load at once, each shared among its number of client processes (spawned,
    however few), started at one instant; the first load's length bounds the run. Returns
    each load's merged results."""
    owners = [number for number, (load, processes) in enumerate(loads) for _ in range(processes)]
    shares = [share for load, processes in loads for share in load.split(processes)]
    load = loads[0][0]
    context = multiprocessing.get_context("spawn")
    shared_counters = cast(MutableSequence[int], context.Array("q", 2 * len(shares), lock=False))
    messages: multiprocessing.Queue[tuple[str, int, Any]] = context.Queue()
    go, start = context.Event(), context.Value("d", 0.0, lock=False)
    children = [
        context.Process(
            target=_child,
            args=(share, index, shared_counters, messages, go, start),
            name=f"bench-client-{index}",
            daemon=True,
        )
        for index, share in enumerate(shares)
    ]
    for child in children:
        child.start()
    try:
        _receive(messages, "ready", children, SETUP_TIMEOUT_S)
        start.value = time.monotonic() + START_SLACK_S
        go.set()
        budget = load.warmup_s + (MAX_DURATION_S if load.requests is not None else load.duration_s)
        with ProgressBar(load, shared_counters):
            parts = _receive(messages, "done", children, budget + load.timeout_s)
    except BaseException:
        for child in children:  # a failed or interrupted run stops sending at once
            child.terminate()
        raise
    finally:
        for child in children:
            child.join(timeout=FINISH_SLACK_S)
            if child.is_alive():
                child.terminate()
                child.join()
    return [
        Results.merge([part for (index, part) in parts if owners[index] == number])
        for number in range(len(loads))
    ]


def _receive(
    messages: multiprocessing.Queue[tuple[str, int, Any]],
    kind: str,
    children: Sequence[BaseProcess],
    within_s: float,
) -> list[Any]:
    """(index, payload) of one message of `kind` per child; a child's error is raised here."""
    payloads: list[tuple[int, Any]] = []
    deadline = time.monotonic() + within_s + FINISH_SLACK_S
    while len(payloads) < len(children):
        try:
            got, index, payload = messages.get(timeout=1.0)
        except queue.Empty:
            if dead := [child.name for child in children if child.exitcode not in (None, 0)]:
                raise BenchError(f"{', '.join(dead)} died before it was {kind}") from None
            if time.monotonic() > deadline:
                raise BenchError(f"client processes were not {kind} in time") from None
            continue
        if got == "error":
            raise BenchError(f"client process {index}: {payload}")
        payloads.append((index, payload))
    return payloads


def _child(
    load: Load,
    index: int,
    counters: MutableSequence[int],
    messages: multiprocessing.Queue[tuple[str, int, Any]],
    go: Event,
    start: Any,
) -> None:
    """A client process: set up, say so, wait for the common start, run, send the results."""

    def ready() -> float:
        messages.put(("ready", index, None))
        if not go.wait(SETUP_TIMEOUT_S + FINISH_SLACK_S):
            raise BenchError("the other client processes never became ready")
        return float(start.value)

    try:
        results = asyncio.run(run_share(load, progress=Progress(counters, index), ready=ready))
    except KeyboardInterrupt:
        return
    except Exception as error:  # the parent reports it, with the process it came from
        messages.put(("error", index, str(error) if isinstance(error, BenchError) else repr(error)))
    else:
        messages.put(("done", index, results))


class ProgressBar:
    """A progress bar on stderr (when it is a terminal), updated from the counters by a thread.

    It counts seconds for a timed run and measured requests for a counted one.
    """

    def __init__(self, load: Load, counters: Sequence[int]) -> None:
        self._counters = counters
        self._counted = load.requests is not None
        total = load.requests if load.requests is not None else load.warmup_s + load.duration_s
        self._bar = tqdm(
            total=total,
            unit="req",
            disable=None,  # on a terminal only
            leave=False,
            bar_format=None if self._counted else "{l_bar}{bar}| {elapsed}<{remaining}{postfix}",
        )
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="bench-progress", daemon=True)

    def __enter__(self) -> ProgressBar:
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._bar.close()

    def _poll(self) -> None:
        while not self._stop.wait(0.25):
            answers, errors = sum(self._counters[0::2]), sum(self._counters[1::2])
            elapsed = time.monotonic() - self._started
            self._bar.n = answers if self._counted else min(round(elapsed, 1), self._bar.total)
            self._bar.set_postfix_str(f"{answers} answers, {errors} errors", refresh=False)
            self._bar.refresh()
