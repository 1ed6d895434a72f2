"""What a model's inference workers are doing, as the watchdog needs to know it.

Each backend call is recorded from `started()` to `ended()` (on whatever threads submit
and complete it); the watchdog reads a snapshot: the calls running and since when (with
their jobs, so a hung call's callers can be answered), and how many calls in a row have
failed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Running(Generic[T]):
    """A backend call in progress: when it started, and the batch it runs."""

    since: float
    batch: Sequence[T]


class Progress(Generic[T]):
    """Thread-safe: the engine records its calls, the watchdog reads them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[int, Running[T]] = {}  # by id of the Running
        self._failures = 0

    def started(self, batch: Sequence[T]) -> Running[T]:
        """Record a backend call that has started; give the result to `ended()`."""
        call = Running(time.monotonic(), batch)
        with self._lock:
            self._running[id(call)] = call
        return call

    def ended(self, call: Running[T], *, ok: bool) -> None:
        """Record the end of a call; a failed one counts towards failures in a row."""
        with self._lock:
            del self._running[id(call)]
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
