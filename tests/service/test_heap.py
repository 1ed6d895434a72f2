"""Giving free heap memory back: when a trim is due, and that a trim returns freed memory
to the system (on glibc, which this machine and the image run)."""

from __future__ import annotations

import sys

import psutil
import pytest

from recognizer.service.heap import TrimAfterBursts, release_free_memory


def test_a_trim_is_due_once_calls_fall_far_enough_from_their_peak() -> None:
    policy = TrimAfterBursts(after_ended=100)
    assert [policy.due(calls) for calls in (0, 50, 150, 120, 60)] == [False] * 5
    assert policy.due(50)  # 100 below the peak of 150
    assert not policy.due(40)  # the peak is counted again from the trim
    assert [policy.due(calls) for calls in (300, 250, 200)] == [False, False, True]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_memory_goes_back_to_the_system() -> None:
    process = psutil.Process()
    blocks = [bytes(1024) for _ in range(100_000)]  # 100 MiB from malloc, not pymalloc
    kept = bytes(1024)  # allocated after them: the heap's top cannot shrink past it
    del blocks
    before = process.memory_info().rss
    assert release_free_memory()
    assert before - process.memory_info().rss > 50 << 20
    del kept
