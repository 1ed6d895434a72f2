"""Threads that call a synchronous backend, so that the engine submits to every backend alike.

OpenVINO takes calls asynchronously and says when each is done (backends.SchedulesCalls);
ONNX Runtime and PyTorch are called synchronously, so a few threads of ours make the
calls and report each one's end the same way.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

R = TypeVar("R")


class WorkerThreads(Generic[R]):
    """`count` daemon threads running the calls submitted, first come first served; each
    call's result, or the exception it raised, goes to its `done` on the thread that ran
    it. A daemon thread stuck in a call does not keep the process alive."""

    def __init__(self, count: int, *, name: str) -> None:
        self._calls: queue.SimpleQueue[
            tuple[Callable[[], R], Callable[[R | BaseException], None]] | None
        ] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{index}", daemon=True)
            for index in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, call: Callable[[], R], done: Callable[[R | BaseException], None]) -> None:
        """Run `call` on the next free thread; never blocks."""
        self._calls.put((call, done))

    def stop(self, timeout: float) -> None:
        """Let the threads finish the calls submitted, waiting at most `timeout` seconds;
        a thread still in a call after that is left to it (Python cannot stop a thread)."""
        for _ in self._threads:
            self._calls.put(None)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(deadline - time.monotonic(), 0.0))
            if thread.is_alive():
                logger.error("%s is still in a model call; leaving it behind", thread.name)

    def _run(self) -> None:
        while (work := self._calls.get()) is not None:
            call, done = work
            result: R | BaseException
            try:
                result = call()
            except Exception as error:
                result = error
            done(result)
