"""A memory budget for decoding: bytes that images being decoded may hold at once.

Decoding is admitted by what it will cost, not by count: a decoding thread estimates an
image's cost from its header and waits until the budget has room, so whatever mix of
legal images arrives, decoded pixels never hold more than the budget. Waiting is first
come, first served (a large image is not overtaken for ever by small ones), and an image
costing more than the whole budget is decoded alone. A waiter whose caller gives up
stops waiting.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

POLL_S = 0.05  # how often a waiter checks whether its caller gave up


class MemoryBudget:
    """Thread-safe: `acquire` blocks until the bytes fit; `release` gives them back."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the budget must be at least one byte")
        self.limit = limit
        self._used = 0
        self._waiting: deque[object] = deque()
        self._changed = threading.Condition()

    @property
    def used(self) -> int:
        return self._used

    def acquire(self, nbytes: int, give_up: Callable[[], bool]) -> int | None:
        """Wait for room for `nbytes` (at most the whole budget); returns the bytes held, to
        release, or None if `give_up()` came true while waiting."""
        nbytes = min(nbytes, self.limit)
        turn = object()
        with self._changed:
            self._waiting.append(turn)
            while self._waiting[0] is not turn or self._used + nbytes > self.limit:
                if give_up():
                    self._waiting.remove(turn)
                    self._changed.notify_all()
                    return None
                self._changed.wait(POLL_S)
            self._waiting.popleft()
            self._used += nbytes
            self._changed.notify_all()
        return nbytes

    def release(self, nbytes: int) -> None:
        with self._changed:
            self._used -= nbytes
            self._changed.notify_all()
