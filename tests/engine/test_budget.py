"""The decoding memory budget, driven by plain threads: room, order, giving up."""

from __future__ import annotations

import threading
import time

from recognizer.engine.budget import MemoryBudget


def test_holders_never_exceed_the_budget() -> None:
    budget = MemoryBudget(100)
    peak, lock = [0], threading.Lock()

    def work() -> None:
        held = budget.acquire(40, give_up=lambda: False)
        assert held == 40
        with lock:
            peak[0] = max(peak[0], budget.used)
        time.sleep(0.01)
        budget.release(held)

    threads = [threading.Thread(target=work) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert 40 <= peak[0] <= 80 and budget.used == 0


def test_more_than_the_whole_budget_waits_for_everything_else_then_runs_alone() -> None:
    budget = MemoryBudget(100)
    small = budget.acquire(30, give_up=lambda: False)
    assert small == 30
    got: list[int | None] = []
    waiter = threading.Thread(target=lambda: got.append(budget.acquire(10**9, lambda: False)))
    waiter.start()
    time.sleep(0.1)
    assert not got  # waiting for the small one
    budget.release(small)
    waiter.join(5)
    assert got == [100] and budget.used == 100


def test_waiters_are_served_in_order_so_a_large_one_is_not_starved() -> None:
    budget = MemoryBudget(100)
    first = budget.acquire(60, lambda: False)
    assert first is not None
    order: list[str] = []

    def take(name: str, nbytes: int) -> None:
        held = budget.acquire(nbytes, lambda: False)
        assert held is not None
        order.append(name)
        budget.release(held)

    large = threading.Thread(target=take, args=("large", 90))
    large.start()
    time.sleep(0.1)
    small = threading.Thread(target=take, args=("small", 10))  # would fit now, but comes later
    small.start()
    time.sleep(0.1)
    assert order == []
    budget.release(first)
    large.join(5)
    small.join(5)
    assert order == ["large", "small"]


def test_a_waiter_whose_caller_gave_up_stops_waiting() -> None:
    budget = MemoryBudget(10)
    held = budget.acquire(10, lambda: False)
    assert held is not None
    gave_up = threading.Event()
    result: list[int | None] = []
    waiter = threading.Thread(target=lambda: result.append(budget.acquire(5, gave_up.is_set)))
    waiter.start()
    gave_up.set()
    waiter.join(5)
    assert result == [None]
    budget.release(held)
    assert budget.acquire(10, lambda: False) == 10  # nobody left in the line
