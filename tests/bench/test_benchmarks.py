"""The scripts in benchmarks/: each starts, the seed baseline answers, the pieces add up.

The benchmarks themselves take minutes; here each script's --help runs, the seed
baseline serves one real upload and is loaded briefly, and the limit's pipeline and the
comparison's arithmetic run on stand-ins.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
from PIL import Image

from recognizer.bench.stats import Outcome, ProcessUsage, Results, summarize
from support import ESPRESSO, PHOTOS, load_script

BENCHMARKS = Path(__file__).parents[2] / "benchmarks"
SCRIPTS = (
    "images.py",
    "limit.py",
    "seed_baseline.py",
    "compare.py",
    "streams.py",
    "scaleout.py",
    "footprint.py",
    "triton_peer.py",
    "gpu.py",
    "faults.py",
    "perf_analyzer.py",
    "reload.py",
)


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_script_explains_itself(script: str) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ")


def test_the_image_set_is_six_photos_as_640x480_jpegs(tmp_path: Path) -> None:
    paths = load_script("images").make_images(tmp_path / "set")
    assert [path.name for path in paths] == [
        "chelsea.jpg",
        "coffee.jpg",
        "astronaut.jpg",
        "motorcycle_left.jpg",
        "rocket.jpg",
        "grace_hopper.jpg",
    ]
    for path in paths:
        with Image.open(path) as image:
            assert (image.format, image.size, image.mode) == ("JPEG", (640, 480), "RGB")


@pytest.fixture(scope="module")
def seed_url() -> Iterator[str]:
    """The seed baseline app served by uvicorn on a free loopback port, in a thread."""
    import uvicorn

    app = load_script("seed_baseline").create_app(workers=2)
    listener = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/predict"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        listener.close()


def test_the_seed_baseline_classifies_a_multipart_upload(seed_url: str) -> None:
    seed = load_script("seed_baseline")
    headers, body = seed.multipart(PHOTOS["coffee"])
    response = httpx.post(seed_url, content=body, headers=headers)
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert len(predictions) == 5
    assert (predictions[0]["class_id"], predictions[0]["label"]) == (ESPRESSO, "espresso")
    assert predictions[0]["score"] > 0.9
    scores = [prediction["score"] for prediction in predictions]
    assert scores == sorted(scores, reverse=True)


def test_the_http_load_generator_measures_the_seed_baseline(seed_url: str) -> None:
    seed = load_script("seed_baseline")
    images = (str(PHOTOS["coffee"]), str(PHOTOS["cat"]))
    results = asyncio.run(seed.run_http_load(seed_url, images, concurrency=2, requests=4))
    assert results.codes == {"OK": 4} and len(results.latencies_s) == 4
    missing = asyncio.run(seed.run_http_load(seed_url + "/nothing", images, requests=2))
    assert missing.codes == {"HTTP 404": 2}


def test_the_limit_pipeline_runs_whole_batches_with_the_next_one_prepared() -> None:
    limit = load_script("limit")
    batches: list[tuple[int, ...]] = []

    def call(pixels: np.ndarray) -> None:
        batches.append(pixels.shape)
        time.sleep(0.001)

    def prepare(data: bytes) -> np.ndarray:
        return np.full((4, 4, 3), data[0], dtype=np.uint8)

    with ThreadPoolExecutor(2) as pool:
        rate = limit.pipeline_rate(
            prepare,
            call,
            [b"\1", b"\2"],
            pool,
            batch_size=3,
            workers=2,
            warmup_s=0.05,
            duration_s=0.2,
        )
        alone = limit.preprocess_rate(prepare, [b"\1"], pool, 2, 0.02, 0.1)
    assert rate > 0 and alone > 0
    assert set(batches) == {(3, 4, 4, 3)}


def summary(throughput: float, p50: float, p99: float, **setup: Any) -> dict[str, Any]:
    """A `recognizer bench` document with the given throughput and latencies."""
    results = Results(measure_from=0.0)
    count = round(throughput)
    for index in range(count):
        latency = p99 if index == count - 1 else p50
        results.record(latency / 1000, (index + 1) / count, Outcome())
    results.usage.append(ProcessUsage(0.1, 1.0))
    return summarize(results, setup={"target": "t", "load": "l", **setup})


def test_the_comparison_states_its_claims_as_ratios(tmp_path: Path) -> None:
    compare = load_script("compare")
    results: dict[str, Any] = {
        "machine": {"cpu": "test CPU", "cpu_count": 2, "commit": "abc"},
        "quick": True,
        "limit": {"images_per_s": 200.0, "best_batch_size": 4},
        "recognizer": {
            "sweep": {
                "1": summary(100, 10, 12, concurrency=1),
                "4": summary(160, 20, 40, concurrency=4),
            },
            "half_load": summary(80, 11, 30, rate=80.0),
        },
        "baseline": {
            "sweep": {
                "1": summary(20, 50, 60, concurrency=1),
                "4": summary(40, 100, 200, concurrency=4),
            },
            "half_load": summary(20, 60, 150, rate=20.0),
        },
        "plan": {"round_concurrency": 4},
        "all_rounds": [
            {
                "limit": {"images_per_s": limit},
                "recognizer": summary(ours, 20, 40, concurrency=4),
                "baseline": summary(theirs, 100, 200, concurrency=4),
            }
            for limit, ours, theirs in ((200, 160, 40), (180, 171, 30), (100, 60, 20), (9, 9, 9))
        ],
        "round_load": [
            {"load_before": load, "load_after": 2.1, "other_cores": other, "steal_cores": 0.0}
            for load, other in ((0.4, 0.01), (1.2, 0.02), (1.0, 0.1), (3.5, 1.2))
        ],
    }
    for load in results["round_load"]:
        load["quotable"] = load["load_before"] <= compare.quiet_load() and (
            load["other_cores"] <= compare.OTHER_CORES
        )
    results["rounds"] = [  # main() quotes the rounds measured alone
        one
        for one, load in zip(results["all_rounds"], results["round_load"], strict=True)
        if load["quotable"]
    ]
    assert len(results["rounds"]) == 3
    results["ratios"] = compare.ratios(results)
    assert results["ratios"] == {
        "recognizer_over_whole_job_limit": None,  # no benchmark_app in these rounds
        "recognizer_over_limit": 0.8,  # the rounds' ratios are 0.8, 0.95 and 0.6
        "recognizer_over_baseline": 4.0,  # 4.0, 5.7 and 3.0
        "recognizer_half_load_p99_over_idle_p50": 3.0,
        "baseline_half_load_p99_over_idle_p50": 3.0,
    }
    table = compare.report(results)
    assert table.count("NOT QUOTED") == 1 and "3.5/2.1, 1.2, 0.0  NOT QUOTED" in table
    assert "recognizer / limit     0.80" in table
    assert "recognizer / baseline  4.00" in table
    compare.plot(results, tmp_path / "compare.png")
    assert (tmp_path / "compare.png").stat().st_size > 10_000


def test_the_cpu_account_tells_our_cpu_from_other_processes() -> None:
    compare = load_script("compare")
    account = compare.CpuAccount()
    # Two busy children, one a core: counted as others', they alone would make about 2
    # cores; the machine's own noise (about 1 core at worst on a shared one) stays below.
    busy = [sys.executable, "-c", "sum(range(40_000_000))"]
    children = [subprocess.Popen(busy) for _ in range(2)]
    assert [child.wait(timeout=120) for child in children] == [0, 0]
    spent = account.end()
    assert spent["other_cores"] >= 0 and spent["steal_cores"] >= 0
    assert spent["other_cores"] < 1.3  # the busy children were ours, and are not counted


def test_the_scale_out_report_gives_ratios_and_the_proxys_cost() -> None:
    scaleout = load_script("scaleout")

    def run(rps: float, p50: float, envoy_cpu_s: float | None = None) -> dict[str, Any]:
        document: dict[str, Any] = {
            "throughput_rps": rps,
            "latency_ms": {"p50": p50, "p99": 2 * p50},
            "requests": {"answered": 1000, "errors": 0},
        }
        if envoy_cpu_s is not None:
            document["envoy_cpu_s"] = envoy_cpu_s
        return document

    results = {
        "pinning": {"load": None, "envoy": None, "replicas": None},
        "runs": {
            "envoy x1": run(100, 40, 0.05),
            "envoy x1 c1": run(60, 16.5),
            "direct c1": run(65, 15.0),
            "envoy x2": run(190, 42, 0.1),
            "envoy x3": run(270, 44, 0.15),
        },
    }
    lines = scaleout.report(results).splitlines()
    assert lines[1].split() == ["1", "100.0", "1.00", "40.0", "80.0", "0", "50", "us"]
    assert lines[3].split()[:3] == ["3", "270.0", "2.70"]
    assert "+1.50 ms" in lines[4]
    assert lines[5].startswith("not pinned")
    pinned = scaleout.Pinning.plan(replicas=1, cores_per_replica=1)
    if len(os.sched_getaffinity(0)) >= 3:
        assert pinned.replica(0) is not None and pinned.load != pinned.envoy
    else:
        assert pinned.replica(0) is None


def test_the_comparison_rates_int8_and_triton_in_the_same_rounds() -> None:
    compare = load_script("compare")
    rounds = [
        {
            "limit": {"images_per_s": 70.0, "whole_job_limit_images_per_s": whole},
            "recognizer": summary(ours, 20, 300, concurrency=16),
            "baseline": summary(20, 100, 900, concurrency=16),
            "limit_int8": {"images_per_s": 100.0, "whole_job_limit_images_per_s": whole8},
            "recognizer_int8": summary(int8, 20, p99, concurrency=16),
            "triton": summary(triton, 100, 1000, concurrency=16),
        }
        for whole, ours, whole8, int8, p99, triton in (
            (80.0, 60.0, 120.0, 90.0, 200.0, 30.0),
            (100.0, 70.0, 150.0, 99.0, 240.0, 40.0),
            (90.0, 50.0, 100.0, 90.0, 350.0, 36.0),
        )
    ]
    idle = {"sweep": {"1": summary(10, 10, 12, concurrency=1)}, "half_load": None}
    ratios = compare.ratios({"rounds": rounds, "recognizer": idle, "baseline": idle})
    assert ratios["recognizer_over_whole_job_limit"] == 0.7  # 0.75, 0.7 and 0.556
    assert ratios["recognizer_int8_over_recognizer"] == 1.5  # 1.5, 1.414 and 1.8
    assert ratios["recognizer_int8_over_triton"] == 2.5  # 3.0, 2.475 and 2.5
    assert ratios["recognizer_int8_over_whole_job_limit"] == 0.75  # 0.75, 0.66 and 0.9
    assert ratios["recognizer_int8_p99_over_recognizer_p99"] == 0.8  # 0.667, 0.8 and 1.167
    assert ratios["recognizer_over_triton"] == 1.75  # 2.0, 1.75 and 1.389


def test_the_gpu_script_prints_its_table_on_the_cpu(tmp_path: Path) -> None:
    """The GPU benchmark's quick mode: every measurement, on the CPU, in seconds."""
    images = tmp_path / "images"
    load_script("images").make_images(images)
    script = [sys.executable, str(BENCHMARKS / "gpu.py"), "--images", str(images)]
    result = subprocess.run(
        [*script, "--device", "cpu", "--quick", "--json", str(tmp_path / "gpu.json")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "| model | batch | model alone |" in result.stdout
    (row,) = json.loads((tmp_path / "gpu.json").read_text())["rows"]
    assert row["model"] == "efficientnet-lite0"
    assert row["check"].startswith("ok: top-1 equal on 6/6 photos")
    for measured in ("model_alone", "in_process", "service", "seed"):
        assert row[measured] > 0, measured
    assert row["service_errors"] == 0 and row["failures"] == []
    assert row["service_batch_sizes"] and row["half_load_p99_ms"] > 0


@pytest.mark.parametrize(("model", "classes"), [("resnet-50", 1000), ("resnest101e-54k", 54_092)])
def test_the_gpu_scripts_random_models_have_their_shapes(model: str, classes: int) -> None:
    loaded, built_from = load_script("gpu").build_model(model)
    assert loaded.spec.num_classes == classes
    assert "SUBSTITUTE" not in built_from  # timm, a dependency, has ResNeSt-101e
    with torch.inference_mode():
        assert loaded.network.eval()(torch.zeros(1, 3, 224, 224)).shape == (1, classes)


def test_the_front_end_ceiling_runs_every_scenario_against_a_model_that_costs_nothing(
    tmp_path: Path,
) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "frontend.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    results = json.loads((tmp_path / "frontend.json").read_text())
    scenarios = load_script("frontend").SCENARIOS
    assert set(results["scenarios"]) == set(scenarios)
    for found in results["scenarios"].values():
        assert found["throughput_rps"] > 0 and found["errors"] == 0
        assert 0 < found["server_cores"] <= os.cpu_count()  # type: ignore[operator]
    assert "per core" in done.stdout


def test_perf_analyzer_quick_measures_recognizer_unary_and_streaming(tmp_path: Path) -> None:
    """--quick against `recognizer serve` (the Triton peer needs its own venv: left out)."""
    result = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "perf_analyzer.py"),
            "--quick",
            "--out",
            str(tmp_path),
            "--triton-python",
            str(tmp_path / "no-triton"),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "perf_analyzer.json").read_text())
    runs = list(results["best"].values())
    assert {(run["server"], run["mode"], run["concurrency"]) for run in runs} == {
        ("recognizer", "unary", 2),
        ("recognizer", "streaming", 2),
    }
    assert all(run["throughput"] > 0 and run["p99_ms"] >= run["p50_ms"] > 0 for run in runs)
    assert "recognizer   streaming" in result.stdout


def test_the_reload_benchmark_switches_versions_under_load_and_loses_no_call(
    tmp_path: Path,
) -> None:
    """--quick: a real network reloaded through the admin API while `recognizer bench`
    runs; its numbers mean nothing, its counts do."""
    out = tmp_path / "reload.json"
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / "reload.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(out.read_text())["summary"]
    assert summary["reloads"] >= 1
    assert summary["steady"]["errors"] == summary["switching"]["errors"] == 0
    assert len(summary["rss_mib_after_each_phase"]) == 2
