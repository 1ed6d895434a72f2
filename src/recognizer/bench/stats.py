"""What a load test measured: raw results per client process, merged into a summary.

The summary is a plain dict (the `--json` document) and the text report is rendered from
it, so the two can never disagree. Latency percentiles are nearest-rank over the answered
requests (errors and skipped frames are counted, not timed); throughput is answered
classifications (answers with labels) per second from the end of the warm-up to the
last answer, or to the end of a timed run if that is later.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SCHEMA = "recognizer-bench/1"
PERCENTILES = (50, 90, 95, 99)
# A client process using this many cores (its CPU time over wall time, summed over its
# threads, so it can exceed 1) may be what limits the run.
SATURATED_CORES = 0.9


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one request ended: "OK" or a status code name, and what the server said of it."""

    code: str = "OK"
    batch_size: int = 0
    cache_hit: bool = False
    skipped: bool = False


@dataclass(frozen=True, slots=True)
class ProcessUsage:
    """CPU seconds a client process used while the load ran, and the wall seconds it ran."""

    cpu_s: float
    wall_s: float


@dataclass
class Results:
    """The requests one client process measured (sent after the warm-up); picklable.

    Times are time.monotonic() instants, which are comparable across processes.
    `sending_ends` is when a timed run stopped sending: its elapsed time is at least that.
    """

    measure_from: float
    sending_ends: float | None = None
    latencies_s: list[float] = field(default_factory=list)
    codes: Counter[str] = field(default_factory=Counter)
    batch_sizes: Counter[int] = field(default_factory=Counter)
    cache_hits: int = 0
    skipped: int = 0
    last_done: float | None = None
    usage: list[ProcessUsage] = field(default_factory=list)

    def record(self, latency_s: float, done_at: float, outcome: Outcome) -> None:
        self.codes[outcome.code] += 1
        self.last_done = done_at if self.last_done is None else max(self.last_done, done_at)
        if outcome.code != "OK":
            return
        if outcome.skipped:
            self.skipped += 1
            return
        self.latencies_s.append(latency_s)
        if outcome.batch_size:
            self.batch_sizes[outcome.batch_size] += 1
        self.cache_hits += outcome.cache_hit

    @classmethod
    def merge(cls, parts: Iterable[Results]) -> Results:
        parts = list(parts)
        merged = cls(
            measure_from=min(part.measure_from for part in parts),
            sending_ends=max((p.sending_ends for p in parts if p.sending_ends), default=None),
        )
        for part in parts:
            merged.latencies_s.extend(part.latencies_s)
            merged.codes.update(part.codes)
            merged.batch_sizes.update(part.batch_sizes)
            merged.cache_hits += part.cache_hits
            merged.skipped += part.skipped
            merged.usage.extend(part.usage)
        merged.last_done = max((p.last_done for p in parts if p.last_done), default=None)
        return merged


def summarize(
    results: Results, *, setup: Mapping[str, Any], server: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The run as a JSON-ready dict: setup, counts, throughput, latency, batches, client CPU."""
    answered = sum(results.codes.values())
    ok = results.codes["OK"]
    ends = [time for time in (results.last_done, results.sending_ends) if time is not None]
    elapsed = max(ends) - results.measure_from if results.last_done else 0.0
    timed = len(results.latencies_s)
    cpu_s = sum(usage.cpu_s for usage in results.usage)
    wall_s = max((usage.wall_s for usage in results.usage), default=0.0)
    return {
        "schema": SCHEMA,
        "setup": dict(setup),
        "server": dict(server) if server else None,
        "elapsed_s": round(elapsed, 6),
        "requests": {
            "answered": answered,
            "ok": ok,
            "errors": answered - ok,
            "skipped": results.skipped,
        },
        "throughput_rps": round(timed / elapsed, 3) if elapsed > 0 else 0.0,
        "latency_ms": latency_summary(results.latencies_s),
        "status_codes": dict(sorted(results.codes.items(), key=lambda item: -item[1])),
        "batch_sizes": {str(size): n for size, n in sorted(results.batch_sizes.items())},
        "mean_batch_size": _mean_batch(results.batch_sizes),
        "cache_hits": results.cache_hits,
        "client": {
            "processes": len(results.usage),
            "cpu_s": round(cpu_s, 3),
            "cores": round(cpu_s / wall_s, 3) if wall_s else 0.0,
            "busiest_process_cores": round(
                max((u.cpu_s / u.wall_s for u in results.usage if u.wall_s), default=0.0), 3
            ),
        },
    }


def latency_summary(latencies_s: list[float]) -> dict[str, float | None]:
    """min, mean, nearest-rank p50/p90/p95/p99 and max, in milliseconds; None when empty."""
    keys = ["min", "mean", *(f"p{p}" for p in PERCENTILES), "max"]
    if not latencies_s:
        return dict.fromkeys(keys)
    ordered = np.sort(np.asarray(latencies_s, dtype=np.float64)) * 1000
    ranks = [max(math.ceil(p / 100 * len(ordered)) - 1, 0) for p in PERCENTILES]
    values = [ordered[0], ordered.mean(), *(ordered[rank] for rank in ranks), ordered[-1]]
    return {key: round(float(value), 3) for key, value in zip(keys, values, strict=True)}


def render(summary: Mapping[str, Any]) -> str:
    """The human-readable report of a summary."""
    requests, latency, client = summary["requests"], summary["latency_ms"], summary["client"]
    setup, server = summary["setup"], summary["server"]
    lines = [f"{setup['target']}: {setup['load']}"]
    if server:
        lines.append(
            f"server       {server['model']} on {server['device']} with {server['backend']},"
            f" batches of up to {server['max_batch_size']}"
        )
    lines += [
        f"answered     {requests['answered']} in {summary['elapsed_s']:.2f} s:"
        f" {requests['ok']} OK, {requests['errors']} errors"
        + (f", {requests['skipped']} skipped" if requests["skipped"] else ""),
        f"throughput   {summary['throughput_rps']:.1f} classifications/s",
    ]
    if latency["p50"] is not None:
        lines.append(
            "latency ms   "
            + "  ".join(f"{key} {latency[key]:.1f}" for key in ("p50", "p90", "p95", "p99", "max"))
            + f"  (mean {latency['mean']:.1f})"
        )
    errors = {code: n for code, n in summary["status_codes"].items() if code != "OK"}
    if errors:
        lines.append("errors       " + "  ".join(f"{code} {n}" for code, n in errors.items()))
    batches = summary["batch_sizes"]
    if batches:
        total = sum(batches.values())
        lines.append(
            "batch sizes  "
            + "  ".join(f"{size}: {100 * n / total:.0f}%" for size, n in batches.items())
            + f"  (mean {summary['mean_batch_size']:.2f})"
        )
    if summary["cache_hits"]:
        share = summary["cache_hits"] / max(requests["ok"] - requests["skipped"], 1)
        lines.append(
            f"cache hits   {summary['cache_hits']} ({100 * share:.0f}%): the cache answered"
            " these, not the model (--unique sends every image once)"
        )
    lines.append(
        f"client CPU   {client['processes']} process(es) used {client['cores']:.2f} cores;"
        f" the busiest {client['busiest_process_cores']:.2f}"
    )
    if client["busiest_process_cores"] >= SATURATED_CORES:
        lines.append(
            "             the load generator may have been the bottleneck: add --processes"
        )
    return "\n".join(lines)


def _mean_batch(sizes: Counter[int]) -> float | None:
    total = sum(sizes.values())
    return round(sum(size * n for size, n in sizes.items()) / total, 3) if total else None
