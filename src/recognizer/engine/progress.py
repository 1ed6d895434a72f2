"""What a model's inference workers are doing, as the watchdog needs to know it.

Each worker wraps its backend calls in `call()`; the watchdog reads a snapshot: the calls
running and since when (with their jobs, so a hung call's callers can be answered), and
how many calls in a row have failed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Running(Generic[T]):
    """A backend call in progress: when it started, and the batch it runs."""

    since: float
    batch: Sequence[T]


class Progress(Generic[T]):
    """Thread-safe: workers record their calls, the watchdog reads them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[int, Running[T]] = {}  # by call
        self._failures = 0

    @contextmanager
    def call(self, batch: Sequence[T]) -> Iterator[None]:
        """Record a backend call for the duration of the block; an exception is a failure."""
        key = id(batch)
        with self._lock:
            self._running[key] = Running(time.monotonic(), batch)
        ok = False
        try:
            yield
            ok = True
        finally:
            with self._lock:
                del self._running[key]
                self._failures = 0 if ok else self._failures + 1

    @property
    def failures_in_a_row(self) -> int:
        return self._failures

    def running(self) -> list[Running[T]]:
        with self._lock:
            return list(self._running.values())

    def recovered(self) -> None:
        """A probe succeeded: the failures so far say nothing about the model any more."""
        with self._lock:
            self._failures = 0
