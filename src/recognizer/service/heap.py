"""Giving the C heap's free memory back to the system after a burst of calls ends.

Thousands of calls held at once (health watches, idle streams) leave what gRPC and Python
freed of them in glibc's heaps, which keep it for reuse: resident memory stayed at the
burst's peak (4,096 watches: 232 MiB before, 354 MiB after, and still after 20 s).
glibc's `malloc_trim` returns the free pages (to 275 MiB there). It is called, on a thread
of its own as it walks the heaps under their locks, once the calls in progress have fallen
by TRIM_AFTER_ENDED from their highest since the last trim. Where the C library is not
glibc, nothing is trimmed.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

TRIM_AFTER_ENDED = 128  # calls ended since their peak that make a trim worth its walk
LOOK_EVERY_S = 1.0


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, or None where the C library has none. Looked up among the
    symbols the process has loaded: ctypes.util.find_library would run ldconfig at start-up."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def release_free_memory() -> bool:
    """Give the heaps' free pages back to the system; False where that cannot be done."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


class TrimAfterBursts:
    """Says when to trim, from the count of calls in progress looked at now and then."""

    def __init__(self, after_ended: int = TRIM_AFTER_ENDED) -> None:
        self._after_ended = after_ended
        self._highest = 0  # calls in progress, at most, since the last trim

    def due(self, in_progress: int) -> bool:
        """Whether a trim is due, now that `in_progress` calls are; if so, counted as done."""
        self._highest = max(self._highest, in_progress)
        if self._highest - in_progress < self._after_ended:
            return False
        self._highest = in_progress
        return True


async def trim_after_bursts(in_progress: Callable[[], int]) -> None:
    """Run until cancelled: trim the heaps after each burst of calls has ended."""
    if _TRIM is None:
        return
    policy = TrimAfterBursts()
    while True:
        await asyncio.sleep(LOOK_EVERY_S)
        if policy.due(in_progress()):
            await asyncio.to_thread(release_free_memory)
            logger.debug("gave the heaps' free memory back after a burst of calls")
