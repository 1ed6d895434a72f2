"""The threads that call synchronous backends: every call's result or error reaches its done."""

from __future__ import annotations

import threading

from recognizer.engine.workers import WorkerThreads


def test_calls_run_on_the_threads_and_report_results_and_errors() -> None:
    workers: WorkerThreads[int] = WorkerThreads(2, name="test")
    results: list[int | BaseException] = []
    names: set[str] = set()
    finished = threading.Semaphore(0)

    def done(result: int | BaseException) -> None:
        results.append(result)
        names.add(threading.current_thread().name)
        finished.release()

    def fail() -> int:
        raise ValueError("bad input")

    for value in range(10):
        workers.submit(lambda value=value: value * 2, done)  # type: ignore[misc]
    workers.submit(fail, done)
    for _ in range(11):
        assert finished.acquire(timeout=10)
    workers.stop(timeout=10)
    assert sorted(result for result in results if isinstance(result, int)) == list(range(0, 20, 2))
    (error,) = [result for result in results if isinstance(result, BaseException)]
    assert isinstance(error, ValueError) and names <= {"test-0", "test-1"}


def test_stop_waits_for_the_calls_submitted_and_leaves_a_stuck_one_behind() -> None:
    workers: WorkerThreads[None] = WorkerThreads(1, name="stuck")
    release = threading.Event()
    workers.submit(release.wait, lambda result: None)  # type: ignore[arg-type]
    workers.stop(timeout=0.1)  # returns although the call has not
    release.set()
