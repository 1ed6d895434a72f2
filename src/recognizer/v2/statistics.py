"""Per-model statistics of the v2 requests a door answered (Triton's statistics extension).

perf_analyzer reads them before and after each measurement to report where the server
spent a request's time. A request's queue, input (decoding) and inference times are its
slowest image's; output is the time spent writing its answer. Execution and inference
counts are the model's batches and the images in them, whichever door sent them (the
engine keeps those); request counts and times are this door's. On the event loop only.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from recognizer.engine.types import Classification


@dataclass(slots=True)
class Duration:
    """How many, and how long they took in all (nanoseconds)."""

    count: int = 0
    ns: int = 0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.ns += round(seconds * 1e9)


@dataclass(slots=True)
class Tally:
    """One model's requests: successes and failures, and the parts of the successes' time."""

    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    last_inference_ms: int = 0


class Statistics:
    """The tallies of the served models, by name."""

    def __init__(self) -> None:
        self._models: defaultdict[str, Tally] = defaultdict(Tally)

    def get(self, model: str) -> Tally:
        return self._models[model]

    def succeeded(
        self,
        model: str,
        results: Sequence[Classification],
        started: float,
        output_s: float,
    ) -> None:
        """A request answered: begun at `started` (time.monotonic()), its answer written in
        `output_s` seconds."""
        tally = self._models[model]
        tally.success.add(time.monotonic() - started)
        tally.queue.add(max(result.timing.queue_s for result in results))
        tally.compute_input.add(max(result.timing.preprocess_s for result in results))
        tally.compute_infer.add(max(result.timing.inference_s for result in results))
        tally.compute_output.add(output_s)
        tally.last_inference_ms = round(time.time() * 1000)

    def failed(self, model: str, started: float) -> None:
        self._models[model].fail.add(time.monotonic() - started)
