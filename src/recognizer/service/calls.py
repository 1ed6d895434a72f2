"""Each caller's share of the calls and streams the server runs at once, on both ports.

--max-concurrent-rpcs bounds the calls in progress: gRPC calls of every kind (health
watches and streams that send nothing included) and WebSocket streams. They are shared as
a model's queue is (engine/shares.py, longest-queue drop): a caller alone may hold them
all; when they are all held, a caller within its share (the capacity split evenly among
the callers holding calls) still gets in, and the caller holding the most gives up its
newest call, which ends with RESOURCE_EXHAUSTED (TOO_MANY_CALLS); a caller at or over its
share is refused. So no caller, with a token or without, can hold every call: a caller is
the tenant, or else the peer's host, as fair shares count them.

Only the event loop uses it.

Usage:

    with shares.place(caller, end=lambda error: ...):   # or raises TooManyCallsError
        ...                                              # `end` if it must give its place up
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from recognizer.engine.shares import FairShares
from recognizer.errors import OverloadedError, TooManyCallsError

RETRY_AFTER_S = 1.0  # a call's length is unknown: come back in a second


@dataclass(eq=False)
class _Call:
    """One call holding a place (a Claim of FairShares)."""

    caller: str
    end: Callable[[TooManyCallsError], object]
    capacity: int
    evictable: bool = True

    def fail(self, error: Exception) -> None:
        self.end(
            TooManyCallsError(
                f"the server runs {self.capacity} calls at once, its limit, and this caller held"
                " more than its share: its newest call gave its place to a caller within its"
                " share",
                retry_after_s=RETRY_AFTER_S,
            )
        )


class CallShares:
    """The server's calls in progress, by caller."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._shares = FairShares[_Call]("calls", capacity, lambda _: RETRY_AFTER_S)

    @property
    def total(self) -> int:
        return self._shares.total

    def held(self, caller: str) -> int:
        return self._shares.held(caller)

    @contextmanager
    def place(self, caller: str, end: Callable[[TooManyCallsError], object]) -> Iterator[None]:
        """Hold a place for one call of `caller` during the block, or raise TooManyCallsError.
        `end` is called, once, if the call must give its place to another caller."""
        call = _Call(caller, end, self.capacity)
        try:
            self._shares.admit(call)
        except OverloadedError:
            held, share = self.held(caller), self._shares.share(newcomer=caller)
            whose = (
                f"this caller holds {held} of them, its share being {share}"
                if held >= share
                else "no caller holds more than its share"
            )
            raise TooManyCallsError(
                f"the server runs {self.capacity} calls at once, its limit, and {whose}",
                retry_after_s=RETRY_AFTER_S,
            ) from None
        try:
            yield
        finally:
            self._shares.release(call)
