"""The queue where requests from every caller meet and leave as batches.

It knows nothing of gRPC, models or asyncio, so it can be driven by plain threads
in tests. Fairness: waiting items are grouped by caller, and each caller's by flow (a
stream, say, or a single unary call); batches take one item per caller in turn, and
each caller's turns go round its flows. So a caller that queues many items cannot
starve a caller that queues few, nor can one of a caller's streams starve its others.
Items of a batch that failed come back to run alone (`retry_alone`), ahead of the rest.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class BatchQueue(Generic[T]):
    """A thread-safe queue from which inference workers take batches.

    `next_batch()` blocks until at least one item is waiting, then waits at most
    `max_delay_s` for more and returns between 1 and `max_batch_size` items; a full
    batch returns at once. Items for which `keep(item)` is false are dropped as they
    are taken (a cancelled or expired request), so they never reach the model.
    One worker collects at a time, so batches fill in turn while earlier ones run.
    Items given back by `retry_alone` leave first, each as a batch of its own.
    After `close()`, workers take what is left, then get an empty list.
    """

    def __init__(
        self,
        *,
        max_batch_size: int,
        max_delay_s: float,
        keep: Callable[[T], bool] = lambda item: True,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if max_delay_s < 0:
            raise ValueError("max_delay_s must not be negative")
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self._keep = keep
        self._callers: OrderedDict[Hashable, OrderedDict[Hashable, deque[T]]] = OrderedDict()
        self._alone: deque[T] = deque()
        self._size = 0
        self._closed = False
        self._changed = threading.Condition()
        self._collecting = threading.Lock()

    def __len__(self) -> int:
        return self._size

    def put(self, item: T, flow: Hashable, caller: Hashable = "") -> None:
        """Add an item to its flow's line; never blocks (admission control is the caller's)."""
        with self._changed:
            if self._closed:
                raise RuntimeError("the queue is closed")
            flows = self._callers.setdefault(caller, OrderedDict())
            flows.setdefault(flow, deque()).append(item)
            self._size += 1
            self._changed.notify()

    def retry_alone(self, items: list[T]) -> None:
        """Give back the items of a failed batch: each leaves next, in a batch of its own,
        so one bad item fails alone. Never blocks; allowed after close()."""
        with self._changed:
            self._alone.extend(items)
            self._size += len(items)
            self._changed.notify()

    def close(self) -> None:
        """Refuse new items and wake every waiting worker."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def next_batch(self) -> list[T]:
        """Block for the next batch; an empty list means the queue is closed and drained."""
        batch: list[T] = []
        with self._collecting, self._changed:
            deadline: float | None = None
            while len(batch) < self.max_batch_size:
                if not batch and self._alone:
                    item = self._alone.popleft()
                    self._size -= 1
                    if self._keep(item):
                        return [item]
                    continue
                self._take_into(batch)
                if len(batch) >= self.max_batch_size or (self._closed and not self._size):
                    break
                if not batch:
                    self._changed.wait()
                    continue
                if deadline is None:
                    deadline = time.monotonic() + self.max_delay_s
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._changed.wait(remaining):
                    self._take_into(batch)
                    break
        return batch

    def _take_into(self, batch: list[T]) -> None:
        """Move items into the batch, one caller at a time, each taking its flows in turn."""
        while self._callers and len(batch) < self.max_batch_size:
            caller, flows = self._callers.popitem(last=False)
            flow, line = flows.popitem(last=False)
            item = line.popleft()
            self._size -= 1
            if line:
                flows[flow] = line
            if flows:
                self._callers[caller] = flows
            if self._keep(item):
                batch.append(item)
