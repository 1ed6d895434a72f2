"""Fair shares of a queue: a caller alone may fill it; under contention each keeps its share."""

from __future__ import annotations

import pytest

from recognizer.engine.shares import FairShares
from recognizer.errors import OverloadedError


class Request:
    """A claim on a place: its caller, whether it reached the model, and how it ended."""

    def __init__(self, caller: str, *, in_batch: bool = False) -> None:
        self.caller = caller
        self.in_batch = in_batch
        self.error: Exception | None = None

    @property
    def evictable(self) -> bool:
        return not self.in_batch

    def fail(self, error: Exception) -> None:
        self.error = error


def shares(capacity: int) -> FairShares[Request]:
    return FairShares("m", capacity, retry_after=lambda places: places * 0.01)


def fill(queue: FairShares[Request], caller: str, count: int) -> list[Request]:
    requests = [Request(caller) for _ in range(count)]
    for request in requests:
        queue.admit(request)
    return requests


def test_a_caller_alone_may_fill_the_whole_queue_and_no_more() -> None:
    queue = shares(4)
    fill(queue, "flood", 4)
    with pytest.raises(OverloadedError) as refused:
        queue.admit(Request("flood"))
    assert "holds 4 of them, its share being 4" in refused.value.message
    assert refused.value.retry_after_s == pytest.approx(0.04)


def test_a_newcomer_within_its_share_takes_the_newest_place_of_the_largest_holder() -> None:
    queue = shares(4)
    flood = fill(queue, "flood", 4)
    modest = Request("modest")
    queue.admit(modest)
    assert (queue.total, queue.held("flood"), queue.held("modest")) == (4, 3, 1)
    assert [r.error is None for r in flood] == [True, True, True, False]
    evicted = flood[-1].error
    assert isinstance(evicted, OverloadedError) and "over its share of 2" in evicted.message


def test_under_contention_each_caller_keeps_its_share() -> None:
    queue = shares(6)
    fill(queue, "flood", 6)
    fill(queue, "a", 2)
    fill(queue, "b", 2)
    assert (queue.held("flood"), queue.held("a"), queue.held("b")) == (2, 2, 2)
    with pytest.raises(OverloadedError):  # a is at its share: refused, flood keeps its 2
        queue.admit(Request("a"))
    assert queue.held("flood") == 2


def test_requests_already_at_the_model_are_not_evicted() -> None:
    queue = shares(2)
    running = fill(queue, "flood", 2)
    for request in running:
        request.in_batch = True
    with pytest.raises(OverloadedError, match="its limit"):
        queue.admit(Request("modest"))
    assert all(r.error is None for r in running)


def test_released_places_are_free_again_and_releasing_twice_is_harmless() -> None:
    queue = shares(2)
    first, second = fill(queue, "a", 2)
    queue.release(first)
    queue.release(first)
    assert (queue.total, queue.callers) == (1, 1)
    queue.release(second)
    assert (queue.total, queue.callers) == (0, 0)
    fill(queue, "b", 2)


def test_fail_all_answers_every_holder() -> None:
    queue = shares(4)
    requests = fill(queue, "a", 2) + fill(queue, "b", 1)
    assert queue.fail_all(lambda: RuntimeError("broken")) == 3
    assert queue.total == 0 and all(isinstance(r.error, RuntimeError) for r in requests)


def test_more_callers_than_places_still_share_one_each() -> None:
    queue = shares(2)
    fill(queue, "a", 2)
    queue.admit(Request("b"))  # a gives one up
    with pytest.raises(OverloadedError):
        queue.admit(Request("c"))  # everyone holds one: nobody is over the share of 1
    assert (queue.held("a"), queue.held("b")) == (1, 1)
