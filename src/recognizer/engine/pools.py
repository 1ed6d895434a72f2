"""Thread pools that run a higher priority class's work first.

A request's class must hold before it reaches the batch queue too: a live camera's frame
waiting behind a batch job's sixteen images for a decoding thread would lose, there, all
that the batch queue's order gives it. So the engine's hashing and decoding pools take
work by class (higher first), first come first served within one; and, where the engine
says a higher class is at work (`held`), lower work waits for it, MAX_HOLD_S at most, so
that its decoding does not take the cores a camera's frame is being run on. Lower work
still gets its fair turn (turns.py), unheld: two hundred frames waiting to be decoded
must not hold a lower class's one image for the time they all take.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

from recognizer.engine.turns import FairTurns

P = ParamSpec("P")
R = TypeVar("R")

MAX_HOLD_S = 0.1  # the longest lower work waits for a higher class's to end

_Work = tuple[
    float, Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]
]  # (submitted at, future, fn, args, kwargs)


class PriorityThreads(Executor):
    """`threads` daemon threads running the work submitted, the highest `priority` first
    but for lower classes' fair turns, first come first served within a class.

    `submit` (class 0, as asyncio's run_in_executor uses it) and `submit_at` return a
    Future; `shutdown` lets the threads finish what was submitted, then stop them.
    `held(priority)` says whether work of that class should wait now (for MAX_HOLD_S at
    most); `wake()` is called when that may have changed.
    """

    def __init__(
        self, threads: int, *, name: str, held: Callable[[int], bool] | None = None
    ) -> None:
        self._held = held
        self._waiting: dict[int, deque[_Work]] = {}  # by class, oldest first
        self._turns = FairTurns()
        self._changed = threading.Condition()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{index}", daemon=True)
            for index in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        return self.submit_at(0, fn, *args, **kwargs)

    def submit_at(
        self, priority: int, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> Future[R]:
        """Run `fn(*args, **kwargs)` after the work of higher classes waiting, and of its
        own that came before it."""
        future: Future[R] = Future()
        with self._changed:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            work: _Work = (time.monotonic(), future, fn, args, kwargs)
            self._waiting.setdefault(priority, deque()).append(work)
            self._changed.notify()
        return future

    def wake(self) -> None:
        """Look again at whether waiting work is held."""
        with self._changed:
            self._changed.notify_all()

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._changed:
            self._closed = True
            if cancel_futures:
                for line in self._waiting.values():
                    for work in line:
                        work[1].cancel()
            self._changed.notify_all()
        if wait:
            for thread in self._threads:
                thread.join()

    def _next(self) -> _Work | None:
        """The next work to run, once it is not held; None once closed and done. Called
        with the lock held."""
        while True:
            waiting = sorted((p for p, line in self._waiting.items() if line), reverse=True)
            if waiting:
                candidates, fair_turn = self._turns.candidates(waiting)
                priority = candidates[0]
                line = self._waiting[priority]
                held_for = 0.0
                if not fair_turn and self._held is not None and self._held(priority):
                    held_for = line[0][0] + MAX_HOLD_S - time.monotonic()
                if held_for <= 0:
                    lower_waiting = any(p < priority for p in waiting)
                    self._turns.taken(priority, lower_turn=fair_turn, lower_waiting=lower_waiting)
                    return line.popleft()
                self._changed.wait(held_for)
            elif self._closed:
                return None
            else:
                self._changed.wait()

    def _run(self) -> None:
        while True:
            with self._changed:
                work = self._next()
            if work is None:
                return
            _, future, fn, args, kwargs = work
            del work
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as error:
                future.set_exception(error)
            else:
                future.set_result(result)
            del future, fn, args, kwargs  # hold nothing of the work between calls
