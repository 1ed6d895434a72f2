"""What the watchdog reads: the calls running and the failures in a row."""

from __future__ import annotations

from recognizer.engine.progress import Progress


def test_calls_are_running_from_start_to_end_and_failures_count_in_a_row() -> None:
    progress: Progress[str] = Progress()
    first, second = progress.started(["a"]), progress.started(["b", "c"])
    assert [call.batch for call in progress.running()] == [["a"], ["b", "c"]]
    progress.ended(second, ok=False)
    progress.ended(first, ok=False)
    assert progress.failures_in_a_row == 2 and progress.running() == []
    progress.ended(progress.started(["d"]), ok=True)
    assert progress.failures_in_a_row == 0
    progress.ended(progress.started(["e"]), ok=False)
    progress.recovered()
    assert progress.failures_in_a_row == 0
