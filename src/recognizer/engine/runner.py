"""One served model's resources: its fair-share queue places, batch queue, the calls it
has in flight and their progress, its health, and statistics.

Batches leave the queue for the backend as fast as it has room for them: a runtime that
schedules its own calls (OpenVINO) takes `slots` of them at once and says when each is
done; any other backend is called from `slots` worker threads. One dispatcher thread per
model takes each batch when a slot is free, so batches grow in our fair queue rather than
wait in the runtime's. What happens to a request on its way through is in lifecycle.py.
"""

from __future__ import annotations

import functools
import itertools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, cast

import numpy as np

from recognizer.config.schema import EngineSettings
from recognizer.engine import sizing
from recognizer.engine.backends import (
    Backend,
    CapturesGraphs,
    DecodesOnDevice,
    HoldsRuntime,
    RowErrors,
    SchedulesCalls,
    TopK,
)
from recognizer.engine.backends.throughput import measure_throughput
from recognizer.engine.batching import BatchQueue
from recognizer.engine.progress import Progress
from recognizer.engine.shares import FairShares
from recognizer.engine.tuning import CPU_BATCH_SIZE, GPU_BATCH_LIMIT, tune_batch_size
from recognizer.engine.types import Health, ModelStatus
from recognizer.engine.workers import WorkerThreads
from recognizer.errors import ModelUnavailableError
from recognizer.models.jpeg import DeviceInput, blank_jpeg, read_jpeg_header
from recognizer.models.spec import ModelSpec

if TYPE_CHECKING:  # the jobs' type only: a runner is given its work (Engine)
    from recognizer.engine.lifecycle import Job

logger = logging.getLogger(__name__)

_LOADS = itertools.count(1)

RowsTopK = tuple[np.ndarray, np.ndarray, RowErrors]
"""A batch's top-k (scores, class ids) and each row's error (a JPEG its device could not
decode), or None."""
Done = Callable[[RowsTopK | BaseException], None]


class Speed:
    """A model's seconds per image, learned from its calls, and what RetryInfo makes of
    it. Apart from the runner, so that the fair shares, which ask it, hold no reference
    back to the runner: a retired runner, and its backend, are freed when it is dropped,
    not at the collector's next full pass (which took 250 ms here)."""

    def __init__(self, slots: int) -> None:
        self._slots = slots
        self._lock = threading.Lock()  # calls end, and are learnt from, concurrently
        self._seconds_per_item = 0.01

    def estimate(self, seconds_per_item: float) -> None:
        with self._lock:
            self._seconds_per_item = seconds_per_item

    def learn(self, seconds_per_item: float) -> None:
        with self._lock:
            self._seconds_per_item = 0.9 * self._seconds_per_item + 0.1 * seconds_per_item

    def retry_after(self, requests: int) -> float:
        """How long `requests` queued requests should take to clear, given recent speed."""
        with self._lock:
            seconds_per_item = self._seconds_per_item
        return min(max(requests * seconds_per_item / self._slots, 0.05), 10.0)


class ModelRunner:
    """Runs requests for one model, so a slow model never holds up another.

    Admission holds a place in `shares` from the moment a request is accepted until it
    is answered or its caller gives up; over `max_queued_requests`, requests are refused
    at once with OverloadedError, fairly between callers (engine/shares.py). A job given
    up while queued stays in the queue until a worker reaches and drops it, so under a
    storm of cancellations the queue can briefly hold more jobs than the limit.

    The batch size, whether set, the CPU's default or measured on a GPU, never exceeds
    the model's own `spec.max_batch_size`. `health` is the watchdog's verdict, changed on
    the event loop only. `decoder` is the backend when it decodes JPEGs on its device
    (--device-decode), else None. `slots` is how many calls run at once; `room` counts the
    free ones.
    """

    def __init__(
        self,
        spec: ModelSpec,
        backend: Backend,
        settings: EngineSettings,
        *,
        keep: Callable[[Job], bool],
        version: int = 1,
    ) -> None:
        self.spec = spec
        self.version = version
        self._load = next(_LOADS)  # which load of the model this is, in the cache's keys
        self.backend = backend
        self.settings = settings
        self.decoder: DecodesOnDevice | None = None
        if isinstance(backend, DecodesOnDevice) and sizing.device_decode(settings, backend.device):
            self.decoder = backend
        self._scheduler = (  # the runtime schedules the calls (the decoder needs threads)
            backend if isinstance(backend, SchedulesCalls) and self.decoder is None else None
        )
        self.slots = (
            self._scheduler.slots
            if self._scheduler is not None
            else sizing.worker_threads(settings.inference_workers, backend.device)
        )
        self.room = threading.Semaphore(self.slots)
        self._workers: WorkerThreads[RowsTopK] | None = None
        self._dispatcher: threading.Thread | None = None
        self.queue: BatchQueue[Job] = BatchQueue(
            max_batch_size=self._capped(settings.max_batch_size or 1),
            max_delay_s=sizing.batch_delay_s(settings, backend.device),
            keep=keep,
            # Calls running at once, not slots: a frame of a higher class must find one free.
            calls_at_once=self._scheduler.streams if self._scheduler is not None else self.slots,
        )
        self.speed = Speed(self.slots)
        self.shares: FairShares[Job] = FairShares(
            spec.name, settings.max_queued_requests, self.speed.retry_after
        )
        self.progress: Progress[Job] = Progress()
        self.health = Health.SERVING
        self._stats = threading.Lock()  # calls end, and record their batches, concurrently
        self._batch_sizes: Counter[int] = Counter()
        self._inference_s = 0.0

    @property
    def cached_as(self) -> str:
        """The model in this runner's cache keys: a new version, or a version's file
        replaced under the same number, never answers from an older load's entries."""
        return f"{self.spec.name}:{self.version}:{self._load}"

    @property
    def pending(self) -> int:
        """Requests accepted and not yet answered."""
        return self.shares.total

    @property
    def max_batch_size(self) -> int:
        return self.queue.max_batch_size

    def status(self) -> ModelStatus:
        with self._stats:
            batch_sizes, inference_s = dict(self._batch_sizes), self._inference_s
        return ModelStatus(
            spec=self.spec,
            version=self.version,
            backend=self.backend.name,
            device=self.backend.device,
            precision=self.backend.precision,
            quantization_check=self.backend.quantization_check,
            max_batch_size=self.max_batch_size,
            pending=self.pending,
            serving=self.health.serving,
            batch_sizes=batch_sizes,
            inference_s=inference_s,
        )

    def warm_up(self) -> None:
        """Run the model once at every batch size it will see, choosing the size if unset."""
        if self.settings.max_batch_size is None:
            on_cpu = self.backend.device == "cpu"
            self.queue.max_batch_size = self._capped(CPU_BATCH_SIZE) if on_cpu else self._tuned()
        if isinstance(self.backend, CapturesGraphs):
            self.backend.capture_graphs(self.max_batch_size)
        for batch_size in sorted({1, self.max_batch_size}):
            started = time.monotonic()
            self._run_blank(batch_size)
        if self._scheduler is not None:
            self._warm_slots()
        # A first estimate (high, if this was its first call) for RetryInfo.
        self.speed.estimate((time.monotonic() - started) / self.max_batch_size)

    def _warm_slots(self) -> None:
        """Run a blank batch on every one of the runtime's requests, so that none of them
        sets itself up on a caller's time."""
        assert self._scheduler is not None
        size = self.spec.preprocessing.crop
        pixels = np.zeros((self.max_batch_size, size, size, 3), dtype=np.uint8)
        ended = threading.Semaphore(0)
        failures: list[BaseException] = []

        def done(result: TopK | BaseException) -> None:
            if isinstance(result, BaseException):
                failures.append(result)
            ended.release()

        for _ in range(self.slots):
            self._scheduler.submit(pixels, 1, done)
        for _ in range(self.slots):
            ended.acquire()
        if failures:
            raise failures[0]

    def probe(self) -> None:
        """Run the model once on a blank image; raises if it fails (the watchdog's test)."""
        self._run_blank(1)

    def _run_blank(self, batch_size: int) -> None:
        """The model on blank pixels, and on a blank JPEG where the backend decodes them."""
        size = self.spec.preprocessing.crop
        self.backend(np.zeros((batch_size, size, size, 3), dtype=np.uint8), 1)
        jpeg = read_jpeg_header(blank_jpeg(size), self.settings.max_image_pixels)
        if self.decoder is not None and jpeg is not None:
            self.decoder.classify_rows([jpeg] * batch_size, 1)

    def _tuned(self) -> int:
        """The batch size measured best on this device (engine/tuning.py)."""
        throughput = functools.partial(
            measure_throughput,
            self.backend,
            self.spec.preprocessing.crop,
            workers=self.slots,
            seconds=0.4,
        )
        chosen, rates = tune_batch_size(throughput, limit=self._capped(GPU_BATCH_LIMIT))
        logger.info(
            "%s: batch size %d chosen; images/s by batch size: %s",
            self.spec.name,
            chosen,
            ", ".join(f"{batch}: {rate:.0f}" for batch, rate in rates.items()),
        )
        return chosen

    def start(self, dispatch: Callable[[ModelRunner], None]) -> None:
        """Start the dispatcher thread, running `dispatch` on this runner (lifecycle.py's),
        and the worker threads, for a backend that needs them."""
        name = self.spec.name
        if self._scheduler is None:
            self._workers = WorkerThreads(self.slots, name=f"infer-{name}")
        self._dispatcher = threading.Thread(
            target=dispatch, args=(self,), name=f"dispatch-{name}", daemon=True
        )
        self._dispatcher.start()
        logger.info(
            "%s: batches of up to %d, waiting at most %.1f ms to fill, %d in flight (%s);"
            " JPEGs decoded %s",
            name,
            self.max_batch_size,
            self.queue.max_delay_s * 1000,
            self.slots,
            "scheduled by the runtime" if self._workers is None else "on worker threads",
            "by Pillow" if self.decoder is None else f"on {self.backend.device}",
        )

    def submit(self, rows: Sequence[DeviceInput], top_k: int, done: Done) -> None:
        """Run the model on a batch's rows, on the runtime's schedule or a worker thread;
        `done` gets the top-k and each row's error, or the exception the call raised."""
        if self._scheduler is not None:
            pixels = np.stack(cast(Sequence[np.ndarray], rows))  # no decoder: all pixels
            self._scheduler.submit(pixels, top_k, functools.partial(_without_row_errors, done))
        else:
            assert self._workers is not None, "submit() before start()"
            self._workers.submit(functools.partial(self._call, rows, top_k), done)

    def _call(self, rows: Sequence[DeviceInput], top_k: int) -> RowsTopK:
        """The backend called on a worker thread, decoding the JPEGs first where it does."""
        if self.decoder is not None:
            return self.decoder.classify_rows(rows, top_k)
        scores, class_ids = self.backend(np.stack(cast(Sequence[np.ndarray], rows)), top_k)
        return scores, class_ids, [None] * len(rows)

    def stop(self, timeout: float) -> None:
        """Finish what is queued and in flight, then stop, waiting at most `timeout` seconds.

        A call still running after that is left to it: Python cannot stop a thread, and
        the threads are daemons, which do not keep the process alive.
        """
        self.queue.close()
        deadline = time.monotonic() + timeout
        if self._dispatcher is not None:
            self._dispatcher.join(timeout)
            if self._dispatcher.is_alive():
                logger.error("%s: a model call is still running; leaving it behind", self.spec.name)
        if self._workers is not None:
            self._workers.stop(max(deadline - time.monotonic(), 0.0))

    def close(self) -> None:
        """Free the backend's runtime, once stopped with no call left in flight (a retired
        version: the server's last models are left to the process's exit)."""
        if isinstance(self.backend, HoldsRuntime):
            self.backend.close()

    def wait_for_calls(self) -> None:
        """Block until no call is in flight (the dispatcher, once the queue is drained)."""
        for _ in range(self.slots):
            self.room.acquire()
        for _ in range(self.slots):
            self.room.release()

    def refuse_if_unavailable(self) -> None:
        """Refuse requests while the watchdog finds the model broken."""
        if not self.health.serving:
            raise ModelUnavailableError(self.spec.name, self.health.value)

    def record_batch(self, size: int, inference_s: float) -> None:
        """When a call ends: count a batch the model ran, and learn its speed."""
        with self._stats:
            self._batch_sizes[size] += 1
            self._inference_s += inference_s
        self.speed.learn(inference_s / size)

    def _capped(self, batch_size: int) -> int:
        cap = self.spec.max_batch_size
        return batch_size if cap is None else min(batch_size, cap)


def _without_row_errors(done: Done, result: TopK | BaseException) -> None:
    """A runtime's top-k as the engine takes it: no row failed to decode."""
    if isinstance(result, BaseException):
        done(result)
    else:
        scores, class_ids = result
        done((scores, class_ids, [None] * len(scores)))
