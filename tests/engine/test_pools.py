"""The priority thread pool alone: higher classes first, arrival order within one, lower
classes' fair turns, futures, asyncio's executor, shutdown."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from recognizer.engine.pools import MAX_HOLD_S, PriorityThreads
from recognizer.engine.turns import FAIR_TURNS


def test_waiting_work_runs_by_class_then_by_arrival() -> None:
    pool = PriorityThreads(1, name="test")
    busy, ran = threading.Event(), []
    pool.submit(busy.wait, 5)  # the only thread is busy: the rest waits
    futures = [
        pool.submit_at(priority, ran.append, name)
        for priority, name in (
            (1, "low-0"),
            (3, "high-0"),
            (2, "normal"),
            (1, "low-1"),
            (3, "high-1"),
        )
    ]
    busy.set()
    for future in futures:
        future.result(timeout=5)
    assert ran == ["high-0", "high-1", "normal", "low-0", "low-1"]
    pool.shutdown()


def test_lower_work_gets_its_fair_turn_behind_a_queue_of_higher_work() -> None:
    # A high request is in progress throughout: normal work is held, but for its fair turn.
    pool = PriorityThreads(1, name="test", held=lambda priority: priority < 3)
    running, busy, ran = threading.Event(), threading.Event(), list[str]()

    def work() -> bool:
        running.set()
        return busy.wait(5)

    pool.submit_at(3, work)
    assert running.wait(5)  # the only thread is busy: the rest waits
    futures = [pool.submit_at(3, ran.append, f"high-{i}") for i in range(3 * FAIR_TURNS)]
    futures.append(pool.submit_at(2, ran.append, "normal"))
    started = time.monotonic()
    busy.set()
    for future in futures:
        future.result(timeout=5)
    assert ran.index("normal") == FAIR_TURNS  # after FAIR_TURNS high ones, not all of them
    assert time.monotonic() - started < MAX_HOLD_S  # and its turn is not held
    pool.shutdown()


def test_a_future_carries_the_result_or_the_error() -> None:
    pool = PriorityThreads(2, name="test")
    assert pool.submit_at(2, pow, 2, 10).result(timeout=5) == 1024
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 / 0).result(timeout=5)
    pool.shutdown()


def test_asyncio_runs_blocking_work_on_it() -> None:
    pool = PriorityThreads(1, name="test")

    async def main() -> str:
        return await asyncio.get_running_loop().run_in_executor(pool, str.upper, "ok")

    assert asyncio.run(main()) == "OK"
    pool.shutdown()


def test_shutdown_finishes_what_was_submitted_then_refuses_more() -> None:
    pool = PriorityThreads(1, name="test")
    ran: list[int] = []
    for number in range(5):
        pool.submit(ran.append, number)
    pool.shutdown(wait=True)
    assert ran == [0, 1, 2, 3, 4]
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(ran.append, 5)


def test_shutdown_may_cancel_what_has_not_started() -> None:
    pool = PriorityThreads(1, name="test")
    running, busy = threading.Event(), threading.Event()

    def work() -> bool:
        running.set()
        return busy.wait(5)

    started = pool.submit(work)
    assert running.wait(5)
    waiting = pool.submit(print, "never")
    threading.Timer(0.1, busy.set).start()
    pool.shutdown(wait=True, cancel_futures=True)
    assert started.result() is True and waiting.cancelled()


def test_held_work_waits_for_the_higher_class_or_its_longest_hold() -> None:
    higher_at_work = threading.Event()
    higher_at_work.set()
    pool = PriorityThreads(1, name="test", held=lambda priority: higher_at_work.is_set())
    started = time.monotonic()
    assert pool.submit_at(1, time.monotonic).result(timeout=5) - started >= MAX_HOLD_S * 0.9
    submitted = time.monotonic()
    waiting = pool.submit_at(1, time.monotonic)
    time.sleep(MAX_HOLD_S / 4)
    higher_at_work.clear()
    pool.wake()  # the higher class is done: held work runs now, before its longest hold
    assert waiting.result(timeout=5) - submitted < MAX_HOLD_S * 0.75
    pool.shutdown()
