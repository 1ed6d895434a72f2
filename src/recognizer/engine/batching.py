"""The queue where requests from every caller meet and leave as batches.

It knows nothing of gRPC, models or asyncio, so it can be driven by plain threads
in tests.

Priority: each item has a class (a higher number goes first). A batch is taken from one
class: the highest waiting, so a live camera's frame is not made to wait behind lower
work, nor slowed by riding in a larger batch with it. Three bounds keep it fair:
- no starvation: a waiting class gets at least one batch in every FAIR_TURNS + 1
  (turns.py);
- headroom: while a higher class is active (it queued an item in the last ACTIVE_S
  seconds, or has a call in flight), lower classes keep at most `calls_at_once - 1` calls
  in flight (at least one), so a frame of the higher class finds the runtime with room
  and starts at once rather than behind a lower batch;
- yielding: while a higher class has a call in flight, no lower batch starts (but for its
  fair turn), so that the higher call shares the cores with as little as can be: on a
  CPU, two calls at once each run slower.

Fairness within a class: waiting items are grouped by caller, and each caller's by flow
(a stream, say, or a single unary call); batches take one item per caller in turn, and
each caller's turns go round its flows. So a caller that queues many items cannot starve
a caller that queues few, nor can one of a caller's streams starve its others. Items of a
batch that failed come back to run alone (`retry_alone`), ahead of the rest.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from recognizer.engine.turns import FairTurns

T = TypeVar("T")

ACTIVE_S = 1.0  # a class that queued nothing for this long leaves no headroom behind it

_Lines = OrderedDict[Hashable, OrderedDict[Hashable, deque[T]]]  # by caller, then flow


class BatchQueue(Generic[T]):
    """A thread-safe queue from which inference workers take batches.

    `next_batch()` blocks until at least one item may be taken, then waits at most
    `max_delay_s` for more of its class and returns between 1 and `max_batch_size`
    items; a full batch returns at once. Items for which `keep(item)` is false are
    dropped as they are taken (a cancelled or expired request), so they never reach the
    model. One worker collects at a time, so batches fill in turn while earlier ones run.
    Items given back by `retry_alone` leave first, each as a batch of its own.
    `calls_at_once` is how many calls the runtime runs at once (None: no headroom is
    kept); each batch taken is a call in flight until `ended(priority)` says it is done.
    After `close()`, workers take what is left, then get an empty list.
    """

    def __init__(
        self,
        *,
        max_batch_size: int,
        max_delay_s: float,
        keep: Callable[[T], bool] = lambda item: True,
        calls_at_once: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        if max_delay_s < 0:
            raise ValueError("max_delay_s must not be negative")
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.calls_at_once = calls_at_once
        self._keep = keep
        self._clock = clock
        self._classes: dict[int, _Lines[T]] = {}
        self._alone: deque[tuple[T, int]] = deque()
        self._size = 0
        self._closed = False
        self._changed = threading.Condition()
        self._collecting = threading.Lock()
        self._last_put: dict[int, float] = {}
        self._in_flight: Counter[int] = Counter()
        self._turns = FairTurns()
        self._lower_turn = False  # the batch being taken is not the highest class waiting

    def __len__(self) -> int:
        return self._size

    def put(self, item: T, flow: Hashable, caller: Hashable = "", priority: int = 0) -> None:
        """Add an item to its flow's line; never blocks (admission control is the caller's)."""
        with self._changed:
            if self._closed:
                raise RuntimeError("the queue is closed")
            flows = self._classes.setdefault(priority, OrderedDict()).setdefault(
                caller, OrderedDict()
            )
            flows.setdefault(flow, deque()).append(item)
            self._last_put[priority] = self._clock()
            self._size += 1
            self._changed.notify()

    def retry_alone(self, items: list[T], priority: int = 0) -> None:
        """Give back the items of a failed batch: each leaves next, in a batch of its own,
        so one bad item fails alone. Never blocks; allowed after close()."""
        with self._changed:
            self._alone.extend((item, priority) for item in items)
            self._size += len(items)
            self._changed.notify()

    def ended(self, priority: int = 0) -> None:
        """A batch of this class taken from the queue has finished its call."""
        with self._changed:
            self._in_flight[priority] -= 1
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
            chosen = 0
            self._lower_turn = False
            while len(batch) < self.max_batch_size:
                if not batch and self._alone:
                    item, priority = self._alone.popleft()
                    self._size -= 1
                    if self._keep(item):
                        self._in_flight[priority] += 1
                        return [item]
                    continue
                if not batch:
                    choice, wait_s = self._choose()
                    if choice is None:
                        if self._closed and not self._size:
                            break
                        self._changed.wait(wait_s)
                        continue
                    chosen = choice
                self._take_into(batch, chosen)
                if len(batch) >= self.max_batch_size or (self._closed and not self._size):
                    break
                if not batch:
                    continue
                if deadline is None:
                    deadline = self._clock() + self.max_delay_s
                remaining = deadline - self._clock()
                if remaining <= 0 or not self._changed.wait(remaining):
                    self._take_into(batch, chosen)
                    break
            if batch:
                self._taken(chosen)
        return batch

    def _choose(self) -> tuple[int | None, float | None]:
        """The class the next batch is taken from, or None and how long to wait before
        asking again (None: until something changes)."""
        waiting = sorted((p for p, lines in self._classes.items() if lines), reverse=True)
        if not waiting:
            return None, None
        candidates, fair = self._turns.candidates(waiting)
        now = self._clock()
        for turn, priority in enumerate(candidates):
            fair_turn = fair and turn == 0
            yields = not fair_turn and self._higher_in_flight(priority)
            if self._has_room(priority, now) and not yields:
                self._lower_turn = priority != waiting[0]
                return priority, None
        return None, self._headroom_expires_in(waiting[0], now)

    def _active_above(self, priority: int, now: float) -> list[int]:
        """The classes above `priority` that are active: queued lately, or in flight."""
        return [
            p
            for p in set(self._last_put) | set(+self._in_flight)
            if p > priority
            and (self._in_flight[p] > 0 or now - self._last_put.get(p, -ACTIVE_S) < ACTIVE_S)
        ]

    def _higher_in_flight(self, priority: int) -> bool:
        """Whether a class above `priority` has a call in flight (when headroom is kept)."""
        return self.calls_at_once is not None and any(
            count > 0 for p, count in self._in_flight.items() if p > priority
        )

    def _has_room(self, priority: int, now: float) -> bool:
        """Whether a batch of this class may be taken without eating a higher class's
        headroom."""
        if self.calls_at_once is None or not self._active_above(priority, now):
            return True
        top = max(self._active_above(priority, now))
        below_top = sum(count for p, count in self._in_flight.items() if p < top)
        return below_top < max(self.calls_at_once - 1, 1)

    def _headroom_expires_in(self, priority: int, now: float) -> float | None:
        """How long until the classes above `priority` that keep headroom stop doing so, if
        only time will end it (None: a call of theirs must end first)."""
        active = self._active_above(priority, now)
        if any(self._in_flight[p] > 0 for p in active):
            return None
        return max(self._last_put[p] + ACTIVE_S - now for p in active)

    def _taken(self, priority: int) -> None:
        """Count a batch of this class as taken: in flight, and a turn in the fair rotation."""
        self._in_flight[priority] += 1
        lower_waiting = any(p < priority and lines for p, lines in self._classes.items())
        self._turns.taken(priority, lower_turn=self._lower_turn, lower_waiting=lower_waiting)

    def _take_into(self, batch: list[T], priority: int) -> None:
        """Move items of one class into the batch, one caller at a time, each taking its
        flows in turn."""
        callers = self._classes.get(priority)
        while callers and len(batch) < self.max_batch_size:
            caller, flows = callers.popitem(last=False)
            flow, line = flows.popitem(last=False)
            item = line.popleft()
            self._size -= 1
            if line:
                flows[flow] = line
            if flows:
                callers[caller] = flows
            if self._keep(item):
                batch.append(item)
