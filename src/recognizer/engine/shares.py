"""Fair shares of a model's queue: who holds its places, and who gives one up when it is full.

A caller alone may fill the whole queue. When it is full, a caller holding less than its
share (the capacity split evenly among the callers holding places, the newcomer included)
still gets in: the caller holding the most places gives up its newest request that has
not reached the model, which is refused with OverloadedError as if it had come too late.
A caller at or over its share is refused. So a flood from one caller never costs another
caller within its share a request. This is longest-queue drop, which gives every flow
its max-min fair share of a shared buffer.

Only the event loop calls it, so it needs no lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, Protocol, TypeVar

from recognizer.errors import OverloadedError


class Claim(Protocol):
    """A request holding a place: who sent it, whether it may still give its place up."""

    @property
    def caller(self) -> str: ...

    @property
    def evictable(self) -> bool: ...

    def fail(self, error: Exception) -> None:
        """Answer the caller with `error` now, and stop working on the request."""


C = TypeVar("C", bound=Claim)


class FairShares(Generic[C]):
    """The places of one model's queue, by caller.

    `retry_after(requests)` estimates how long `requests` queued requests take to clear,
    for the RetryInfo of a refusal: a caller's own, times the callers it takes turns with.
    """

    def __init__(self, model: str, capacity: int, retry_after: Callable[[int], float]) -> None:
        self.model = model
        self.capacity = capacity
        self._retry_after = retry_after
        self._held: dict[str, dict[C, None]] = {}  # by caller, oldest first
        self.total = 0

    def held(self, caller: str) -> int:
        return len(self._held.get(caller, ()))

    @property
    def callers(self) -> int:
        """Callers holding places now."""
        return len(self._held)

    @contextmanager
    def place(self, claim: C) -> Iterator[None]:
        """Hold a place for the claim during the block, or raise OverloadedError."""
        self.admit(claim)
        try:
            yield
        finally:
            self.release(claim)

    def admit(self, claim: C) -> None:
        caller = claim.caller
        held = self.held(caller)
        if self.total >= self.capacity:
            share = self.share(newcomer=caller)
            if held >= share:
                raise OverloadedError(
                    f"model {self.model!r} has {self.capacity} requests queued, its limit,"
                    f" and this caller holds {held} of them, its share being {share}",
                    retry_after_s=self._retry_after(max(held, 1) * self.callers),
                )
            if not self._make_room(share):
                raise OverloadedError(
                    f"model {self.model!r} has {self.capacity} requests queued, its limit",
                    retry_after_s=self._retry_after(self.total),
                )
        self._held.setdefault(caller, {})[claim] = None
        self.total += 1

    def release(self, claim: C) -> None:
        """Give the claim's place back; releasing twice is harmless."""
        held = self._held.get(claim.caller)
        if held is None or claim not in held:
            return
        del held[claim]
        self.total -= 1
        if not held:
            del self._held[claim.caller]

    def share(self, *, newcomer: str = "") -> int:
        """Places each caller may keep when the queue is full (at least one)."""
        callers = len(self._held) + (newcomer not in self._held)
        return max(1, self.capacity // callers)

    def fail_all(self, error: Callable[[], Exception]) -> int:
        """Fail every claim with a new `error()` (the model stopped working, the server is
        closing); returns how many there were."""
        claims = [claim for held in self._held.values() for claim in held]
        for claim in claims:
            self.release(claim)
            claim.fail(error())
        return len(claims)

    def _make_room(self, share: int) -> bool:
        """Evict the newest evictable claim of the caller holding the most, if over `share`."""
        largest = max(self._held.values(), key=len)
        if len(largest) <= share:
            return False
        victim = next((claim for claim in reversed(largest) if claim.evictable), None)
        if victim is None:
            return False
        held = len(largest)
        self.release(victim)
        victim.fail(
            OverloadedError(
                f"model {self.model!r} is full and this caller held {held} of its"
                f" {self.capacity} places, over its share of {share}: its newest request"
                " gave its place to a caller within its share",
                retry_after_s=self._retry_after(held * self.callers),
            )
        )
        return True
