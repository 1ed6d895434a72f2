"""Percentiles, merging, the summary document and the report rendered from it."""

from __future__ import annotations

from recognizer.bench.stats import (
    Outcome,
    ProcessUsage,
    Results,
    latency_summary,
    render,
    summarize,
)

SETUP = {"target": "127.0.0.1:1", "load": "Classify, closed loop, 2 callers; 1 encoded images"}


def test_percentiles_are_nearest_rank_in_milliseconds() -> None:
    summary = latency_summary([ms / 1000 for ms in range(100, 0, -1)])
    assert summary == {
        "min": 1.0,
        "mean": 50.5,
        "p50": 50.0,
        "p90": 90.0,
        "p95": 95.0,
        "p99": 99.0,
        "max": 100.0,
    }
    assert latency_summary([0.004])["p99"] == 4.0
    assert set(latency_summary([]).values()) == {None}


def test_errors_and_skipped_frames_are_counted_but_not_timed() -> None:
    results = Results(measure_from=10.0)
    results.record(0.010, 10.5, Outcome("OK", batch_size=2, cache_hit=True))
    results.record(0.020, 11.0, Outcome("OK", batch_size=1))
    results.record(0.001, 11.5, Outcome("OK", skipped=True))
    results.record(0.002, 12.0, Outcome("NOT_FOUND"))
    assert results.latencies_s == [0.010, 0.020]
    assert results.codes == {"OK": 3, "NOT_FOUND": 1}
    assert (results.skipped, results.cache_hits, results.last_done) == (1, 1, 12.0)
    assert results.batch_sizes == {1: 1, 2: 1}


def test_results_of_processes_merge() -> None:
    first, second = Results(measure_from=5.0), Results(measure_from=4.0)
    first.record(0.01, 6.0, Outcome(batch_size=4))
    second.record(0.02, 7.0, Outcome("UNAVAILABLE"))
    first.usage.append(ProcessUsage(cpu_s=1.0, wall_s=2.0))
    second.usage.append(ProcessUsage(cpu_s=0.5, wall_s=2.0))
    merged = Results.merge([first, second])
    assert (merged.measure_from, merged.last_done) == (4.0, 7.0)
    assert merged.codes == {"OK": 1, "UNAVAILABLE": 1}
    assert merged.latencies_s == [0.01] and merged.batch_sizes == {4: 1}
    assert len(merged.usage) == 2


def test_the_summary_states_throughput_errors_batches_and_client_cpu() -> None:
    results = Results(measure_from=0.0)
    for index in range(8):
        results.record(0.005, 0.25 * (index + 1), Outcome(batch_size=1 + index % 2))
    results.record(0.005, 1.0, Outcome("RESOURCE_EXHAUSTED"))
    results.usage.append(ProcessUsage(cpu_s=1.9, wall_s=2.0))
    summary = summarize(results, setup=SETUP, server={"model": "m"})
    assert summary["schema"] == "recognizer-bench/1"
    assert summary["elapsed_s"] == 2.0 and summary["throughput_rps"] == 4.0
    assert summary["requests"] == {"answered": 9, "ok": 8, "errors": 1, "skipped": 0}
    assert summary["status_codes"] == {"OK": 8, "RESOURCE_EXHAUSTED": 1}
    assert summary["batch_sizes"] == {"1": 4, "2": 4} and summary["mean_batch_size"] == 1.5
    assert summary["client"] == {
        "processes": 1,
        "cpu_s": 1.9,
        "cores": 0.95,
        "busiest_process_cores": 0.95,
    }
    report = render({**summary, "server": None})
    assert "throughput   4.0 classifications/s" in report
    assert "errors       RESOURCE_EXHAUSTED 1" in report
    assert "batch sizes  1: 50%  2: 50%  (mean 1.50)" in report
    assert "may have been the bottleneck: add --processes" in report


def test_the_report_points_out_cache_hits() -> None:
    results = Results(measure_from=0.0)
    results.record(0.001, 1.0, Outcome(cache_hit=True))
    results.usage.append(ProcessUsage(cpu_s=0.1, wall_s=1.0))
    report = render(summarize(results, setup=SETUP))
    assert "cache hits   1 (100%)" in report and "--unique" in report
    assert "bottleneck" not in report


def test_a_timed_run_lasts_at_least_its_sending_window() -> None:
    results = Results(measure_from=1.0, sending_ends=3.0)
    for index in range(4):  # an open loop at 2/s, answered at once
        results.record(0.001, 1.0 + index / 2, Outcome())
    assert summarize(results, setup=SETUP)["throughput_rps"] == 2.0
    merged = Results.merge([results, Results(measure_from=1.0, sending_ends=3.5)])
    assert merged.sending_ends == 3.5
