"""Per-caller rate limits: a token bucket for each caller, over every model.

A caller may send `burst` requests at once and `rate` a second after that; a request over
the limit is refused with RateLimitedError, whose `retry_after_s` is when the next token
comes. A full bucket is the same as none, so buckets that have refilled are dropped from
time to time, and the map stays as large as the set of recently active callers.

Only the event loop calls it, so it needs no lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from recognizer.errors import RateLimitedError

PRUNE_AT = 1024  # buckets kept before full ones are swept out


class RateLimiter:
    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("the rate must be positive and the burst at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # caller: (tokens, when counted)
        self._prune_at = PRUNE_AT

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, caller: str) -> None:
        """Spend one of the caller's tokens, or raise RateLimitedError."""
        now = self._clock()
        tokens = self._tokens(caller, now)
        if tokens < 1:
            self._buckets[caller] = (tokens, now)
            raise RateLimitedError(
                f"this caller is over its rate limit of {self.rate:g} requests a second"
                f" (bursts of {self.burst})",
                retry_after_s=(1 - tokens) / self.rate,
            )
        self._buckets[caller] = (tokens - 1, now)
        if len(self._buckets) >= self._prune_at:
            self._prune(now)

    def _tokens(self, caller: str, now: float) -> float:
        tokens, counted = self._buckets.get(caller, (self.burst, now))
        return min(self.burst, tokens + (now - counted) * self.rate)

    def _prune(self, now: float) -> None:
        """Forget callers whose buckets have refilled."""
        full = [caller for caller in self._buckets if self._tokens(caller, now) >= self.burst]
        for caller in full:
            del self._buckets[caller]
        self._prune_at = max(PRUNE_AT, 2 * len(self._buckets))
