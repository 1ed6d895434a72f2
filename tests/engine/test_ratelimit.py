"""Per-caller token buckets: bursts, a steady rate, retry hints, and a map that stays small."""

from __future__ import annotations

import pytest

from recognizer.engine.ratelimit import PRUNE_AT, RateLimiter
from recognizer.errors import RateLimitedError


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_the_rate_and_a_hint_saying_when_the_next_token_comes() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=2, burst=3, clock=clock)
    for _ in range(3):
        limiter.take("a")
    with pytest.raises(RateLimitedError) as refused:
        limiter.take("a")
    assert refused.value.retry_after_s == pytest.approx(0.5)
    assert refused.value.reason == "RATE_LIMITED"
    clock.now += 0.5
    limiter.take("a")
    with pytest.raises(RateLimitedError):
        limiter.take("a")


def test_callers_have_buckets_of_their_own() -> None:
    limiter = RateLimiter(rate=1, burst=1, clock=Clock())
    limiter.take("a")
    limiter.take("b")
    with pytest.raises(RateLimitedError):
        limiter.take("a")


def test_refused_requests_spend_nothing() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=1, burst=1, clock=clock)
    limiter.take("a")
    for _ in range(10):
        with pytest.raises(RateLimitedError):
            limiter.take("a")
    clock.now += 1
    limiter.take("a")


def test_refilled_buckets_are_forgotten() -> None:
    clock = Clock()
    limiter = RateLimiter(rate=10, burst=1, clock=clock)
    for caller in range(PRUNE_AT - 1):
        limiter.take(str(caller))
    clock.now += 1  # every bucket has refilled
    limiter.take("last")
    assert len(limiter) <= 1
