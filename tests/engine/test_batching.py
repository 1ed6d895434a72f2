"""The batch queue alone, driven by plain threads: sizes, delays, fairness, filtering, close."""

from __future__ import annotations

import threading
import time

import pytest

from recognizer.engine.batching import ACTIVE_S, BatchQueue
from recognizer.engine.turns import FAIR_TURNS


def test_a_full_batch_returns_without_waiting_for_the_delay() -> None:
    queue: BatchQueue[int] = BatchQueue(max_batch_size=3, max_delay_s=10)
    for item in range(5):
        queue.put(item, flow=item)
    started = time.monotonic()
    assert queue.next_batch() == [0, 1, 2]
    assert time.monotonic() - started < 1
    assert len(queue) == 2


def test_a_partial_batch_waits_at_most_the_delay() -> None:
    queue: BatchQueue[int] = BatchQueue(max_batch_size=8, max_delay_s=0.05)
    queue.put(1, flow=1)
    started = time.monotonic()
    assert queue.next_batch() == [1]
    assert 0.04 <= time.monotonic() - started < 2


def test_items_arriving_during_the_delay_join_the_batch() -> None:
    queue: BatchQueue[int] = BatchQueue(max_batch_size=4, max_delay_s=5)
    queue.put(0, flow=0)

    def feed() -> None:
        for item in (1, 2, 3):
            time.sleep(0.01)
            queue.put(item, flow=item)

    feeder = threading.Thread(target=feed)
    feeder.start()
    started = time.monotonic()
    assert queue.next_batch() == [0, 1, 2, 3]
    assert time.monotonic() - started < 4  # the fourth item woke the waiter, not the delay
    feeder.join()


def test_zero_delay_takes_only_what_is_already_waiting() -> None:
    queue: BatchQueue[int] = BatchQueue(max_batch_size=8, max_delay_s=0)
    queue.put(1, flow=1)
    queue.put(2, flow=2)
    assert queue.next_batch() == [1, 2]


def test_flows_take_turns_so_a_busy_flow_cannot_starve_a_quiet_one() -> None:
    queue: BatchQueue[str] = BatchQueue(max_batch_size=4, max_delay_s=0)
    for frame in range(6):
        queue.put(f"busy-{frame}", flow="busy")
    queue.put("quiet-0", flow="quiet")
    queue.put("unary", flow=object())
    first = queue.next_batch()
    assert first == ["busy-0", "quiet-0", "unary", "busy-1"]
    assert queue.next_batch() == ["busy-2", "busy-3", "busy-4", "busy-5"]


def test_items_of_one_flow_keep_their_order() -> None:
    queue: BatchQueue[int] = BatchQueue(max_batch_size=2, max_delay_s=0)
    for item in range(6):
        queue.put(item, flow="stream")
    batches = [queue.next_batch() for _ in range(3)]
    assert batches == [[0, 1], [2, 3], [4, 5]]


def test_items_refused_by_keep_are_dropped_and_the_batch_is_filled_with_others() -> None:
    queue: BatchQueue[int] = BatchQueue(max_batch_size=2, max_delay_s=0, keep=lambda i: i % 2 == 0)
    for item in range(6):
        queue.put(item, flow=item)
    assert queue.next_batch() == [0, 2]
    assert queue.next_batch() == [4]
    assert len(queue) == 0


def test_close_lets_workers_drain_then_returns_empty_batches() -> None:
    queue: BatchQueue[int] = BatchQueue(max_batch_size=2, max_delay_s=10)
    queue.put(1, flow=1)
    queue.close()
    assert queue.next_batch() == [1]
    assert queue.next_batch() == []
    with pytest.raises(RuntimeError, match="closed"):
        queue.put(2, flow=2)


def test_close_wakes_an_idle_worker() -> None:
    queue: BatchQueue[int] = BatchQueue(max_batch_size=2, max_delay_s=10)
    batches: list[list[int]] = []
    worker = threading.Thread(target=lambda: batches.append(queue.next_batch()))
    worker.start()
    time.sleep(0.05)
    queue.close()
    worker.join(timeout=5)
    assert not worker.is_alive()
    assert batches == [[]]


def test_many_producers_and_workers_deliver_every_item_exactly_once() -> None:
    queue: BatchQueue[int] = BatchQueue(max_batch_size=5, max_delay_s=0.001)
    taken: list[int] = []
    sizes: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        while batch := queue.next_batch():
            with lock:
                taken.extend(batch)
                sizes.append(len(batch))

    def produce(start: int) -> None:
        for item in range(start, start + 500):
            queue.put(item, flow=item % 7)

    workers = [threading.Thread(target=work) for _ in range(3)]
    producers = [threading.Thread(target=produce, args=(n * 500,)) for n in range(4)]
    for thread in workers + producers:
        thread.start()
    for thread in producers:
        thread.join()
    queue.close()
    for thread in workers:
        thread.join(timeout=10)
    assert sorted(taken) == list(range(2000))
    assert max(sizes) <= 5


@pytest.mark.parametrize(("size", "delay"), [(0, 0.0), (1, -1.0)])
def test_invalid_limits_are_refused(size: int, delay: float) -> None:
    with pytest.raises(ValueError):
        BatchQueue(max_batch_size=size, max_delay_s=delay)


def test_callers_take_turns_before_their_flows_do() -> None:
    queue: BatchQueue[str] = BatchQueue(max_batch_size=4, max_delay_s=0)
    for call in range(6):  # a flood of unary calls: one flow each, one caller
        queue.put(f"flood-{call}", flow=object(), caller="flood")
    queue.put("modest-0", flow=object(), caller="modest")
    queue.put("modest-1", flow=object(), caller="modest")
    assert queue.next_batch() == ["flood-0", "modest-0", "flood-1", "modest-1"]
    assert queue.next_batch() == ["flood-2", "flood-3", "flood-4", "flood-5"]


def test_items_of_a_failed_batch_come_back_first_each_in_a_batch_of_its_own() -> None:
    queue: BatchQueue[int] = BatchQueue(
        max_batch_size=4, max_delay_s=0, keep=lambda item: item != 6
    )
    for item in range(3):
        queue.put(item, flow=item)
    failed = queue.next_batch()
    assert failed == [0, 1, 2]
    queue.put(3, flow=3)
    queue.retry_alone([*failed, 6])  # 6 was abandoned since: it is dropped, not run
    queue.close()  # the retries still leave after close
    assert [queue.next_batch() for _ in range(4)] == [[0], [1], [2], [3]]
    assert queue.next_batch() == [] and len(queue) == 0


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_higher_class_leaves_first_in_batches_of_its_own() -> None:
    queue: BatchQueue[str] = BatchQueue(max_batch_size=4, max_delay_s=0)
    for item in range(3):
        queue.put(f"low-{item}", flow=item, priority=1)
    queue.put("high-0", flow="camera", priority=3)
    queue.put("normal-0", flow="call", priority=2)
    assert queue.next_batch() == ["high-0"]
    assert queue.next_batch() == ["normal-0"]
    assert queue.next_batch() == ["low-0", "low-1", "low-2"]


def test_a_waiting_lower_class_gets_a_batch_after_the_fair_turns_of_higher_ones() -> None:
    queue: BatchQueue[str] = BatchQueue(max_batch_size=1, max_delay_s=0)
    for item in range(2 * FAIR_TURNS + 2):
        queue.put(f"high-{item}", flow="camera", priority=3)
    queue.put("normal", flow="call", priority=2)
    queue.put("low", flow="batch", priority=1)
    taken = [queue.next_batch()[0] for _ in range(2 * FAIR_TURNS + 2)]
    assert taken[FAIR_TURNS] == "normal"  # the lower class waiting longest without a turn
    assert taken[:FAIR_TURNS] == [f"high-{i}" for i in range(FAIR_TURNS)]
    assert taken[2 * FAIR_TURNS + 1] == "low"  # then, FAIR_TURNS later, the other
    assert queue.next_batch() == [f"high-{2 * FAIR_TURNS}"]


def test_a_lower_class_leaves_a_call_free_while_a_higher_one_is_active() -> None:
    clock = Clock()
    queue: BatchQueue[str] = BatchQueue(
        max_batch_size=1, max_delay_s=0, calls_at_once=2, clock=clock
    )
    queue.put("high", flow="camera", priority=3)
    assert queue.next_batch() == ["high"]
    queue.ended(3)
    for item in range(3):
        queue.put(f"low-{item}", flow=item, priority=1)
    assert queue.next_batch() == ["low-0"]  # one call, of two, for the lower class

    taken: list[list[str]] = []
    worker = threading.Thread(target=lambda: taken.append(queue.next_batch()))
    worker.start()
    worker.join(0.2)
    assert taken == []  # the camera was active within ACTIVE_S: its call stays free
    queue.ended(1)  # the low call ends: the next may go
    worker.join(5)
    assert taken == [["low-1"]]

    clock.now += ACTIVE_S  # the camera went quiet: the low class may take every call
    assert queue.next_batch() == ["low-2"]


def test_headroom_ends_by_itself_once_the_higher_class_is_quiet() -> None:
    queue: BatchQueue[str] = BatchQueue(max_batch_size=1, max_delay_s=0, calls_at_once=2)
    queue.put("high", flow="camera", priority=3)
    assert queue.next_batch() == ["high"]
    queue.ended(3)
    queue.put("low-0", flow=0, priority=1)
    queue.put("low-1", flow=1, priority=1)
    assert queue.next_batch() == ["low-0"]
    started = time.monotonic()
    assert queue.next_batch() == ["low-1"]  # no call ended: the camera's quiet freed it
    assert ACTIVE_S * 0.5 <= time.monotonic() - started < ACTIVE_S * 3


def test_a_higher_class_takes_the_free_call_at_once() -> None:
    queue: BatchQueue[str] = BatchQueue(max_batch_size=1, max_delay_s=0, calls_at_once=2)
    queue.put("high-0", flow="camera", priority=3)
    assert queue.next_batch() == ["high-0"]
    queue.ended(3)
    queue.put("low", flow="batch", priority=1)
    assert queue.next_batch() == ["low"]
    queue.put("high-1", flow="camera", priority=3)
    assert queue.next_batch() == ["high-1"]  # the low call still runs: this one did not wait


def test_no_lower_batch_starts_while_a_higher_call_runs() -> None:
    queue: BatchQueue[str] = BatchQueue(max_batch_size=1, max_delay_s=0, calls_at_once=4)
    queue.put("high", flow="camera", priority=3)
    assert queue.next_batch() == ["high"]
    queue.put("low", flow="batch", priority=1)
    taken: list[list[str]] = []
    worker = threading.Thread(target=lambda: taken.append(queue.next_batch()))
    worker.start()
    worker.join(0.2)
    assert taken == []  # three calls free, but the camera's frame has the cores to itself
    queue.ended(3)
    worker.join(5)
    assert taken == [["low"]]
