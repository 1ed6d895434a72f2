"""`recognizer bench` on the command line: the report, the JSON document, errors, refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from certificates import Pki
from fakes import colour_model, solid_png
from recognizer.bench.loadgen import Load
from recognizer.bench.stats import Outcome, Results
from recognizer.cli.main import main
from recognizer.config.schema import SecuritySettings
from support import ServerThread

TOKEN = "q9Xc1kF0b7WvN2yH4tLm8a"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with ServerThread([colour_model()], max_batch_size=4) as running:
        yield running


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("images")
    for name, colour in (("red", (200, 0, 0)), ("green", (0, 200, 0))):
        (folder / f"{name}.png").write_bytes(solid_png(colour))
    return folder


def bench(server: ServerThread, folder: Path, *args: str) -> int:
    return main(["bench", "--server", server.address, "--images", str(folder), *args])


def test_the_report_states_the_load_the_server_and_the_results(
    server: ServerThread, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench(server, folder, "--concurrency", "3", "--requests", "30", "--warmup", "0") == 0
    report = capsys.readouterr().out
    assert f"{server.address}: Classify, closed loop, 3 callers; 2 encoded images" in report
    assert "server       colours on cpu with torch, batches of up to 4" in report
    assert "answered     30 in " in report and "30 OK, 0 errors" in report
    assert "latency ms   p50 " in report and "batch sizes  1: " in report


def test_an_unknown_model_is_counted_as_not_found_not_a_crash(
    server: ServerThread, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = bench(server, folder, "--model", "nope", "--requests", "20", "--warmup", "0")
    assert status == 1  # nothing succeeded
    report = capsys.readouterr().out
    assert "0 OK, 20 errors" in report and "errors       NOT_FOUND 20" in report


def test_json_goes_to_a_file_beside_the_report(
    server: ServerThread, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "run.json"
    args = ("--rate", "200", "--duration", "0.3", "--warmup", "0.0975", "--unique", "--top-k", "2")
    assert bench(server, folder, *args, "--json", str(path)) == 0
    assert "throughput" in capsys.readouterr().out
    summary = json.loads(path.read_text())
    assert set(summary) == {
        "schema",
        "setup",
        "server",
        "elapsed_s",
        "requests",
        "throughput_rps",
        "latency_ms",
        "status_codes",
        "batch_sizes",
        "mean_batch_size",
        "cache_hits",
        "client",
    }
    assert summary["schema"] == "recognizer-bench/1"
    setup = summary["setup"]
    assert (setup["loop"], setup["rpc"], setup["rate"], setup["duration_s"]) == (
        "open",
        "Classify",
        200,
        0.3,
    )
    assert (setup["unique"], setup["top_k"], setup["processes"]) == (True, 2, 1)
    assert summary["server"]["model"] == "colours"
    assert summary["requests"] == {"answered": 60, "ok": 60, "errors": 0, "skipped": 0}
    assert summary["status_codes"] == {"OK": 60}
    assert set(summary["latency_ms"]) == {"min", "mean", "p50", "p90", "p95", "p99", "max"}
    assert sum(summary["batch_sizes"].values()) == 60
    assert summary["client"]["processes"] == 1 and summary["client"]["cpu_s"] > 0


def test_json_to_stdout_moves_the_report_to_stderr(
    server: ServerThread, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("--streams", "2", "--fps", "40", "--policy", "latest", "--duration", "0.245")
    assert bench(server, folder, *args, "--warmup", "0", "--json", "-") == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert (summary["setup"]["rpc"], summary["setup"]["policy"]) == ("ClassifyStream", "latest")
    assert summary["requests"]["ok"] == 20
    assert "2 ClassifyStream calls, 40 fps each, policy latest" in err


def test_processes_share_the_load(
    server: ServerThread, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("--processes", "2", "--concurrency", "2", "--requests", "20", "--warmup", "0")
    assert bench(server, folder, *args, "--json", "-") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["requests"]["ok"] == 20 and summary["client"]["processes"] == 2


def test_a_batch_load_runs_beside_a_camera_and_is_reported_apart(
    server: ServerThread, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ("--streams", "1", "--fps", "15", "--duration", "1.5", "--warmup", "0.2")
    beside = ("--beside-concurrency", "3", "--beside-priority", "low", "--unique")
    assert bench(server, folder, *args, *beside, "--json", "-") == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["setup"]["rpc"] == "ClassifyStream" and summary["setup"]["priority"] is None
    assert summary["requests"]["ok"] > 0
    batch = summary["beside"]
    assert batch["setup"]["rpc"] == "Classify" and batch["setup"]["concurrency"] == 3
    assert batch["setup"]["priority"] == "low" and batch["requests"]["ok"] > 0
    assert "beside it:" in captured.err and "Classify, closed loop, 3 callers" in captured.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--duration", "4000"), "4000 is not between 0.001 and 3600"),
        (("--requests", "0"), "0 is not between 1 and 1000000"),
        (("--concurrency", "2000"), "2000 is not between 1 and 1024"),
        (("--rate", "5", "--streams", "2"), "not allowed with argument"),
        (("--priority", "urgent"), "invalid choice: 'urgent'"),
    ],
)
def test_flags_out_of_bounds_are_usage_errors(
    server: ServerThread,
    folder: Path,
    capsys: pytest.CaptureFixture[str],
    args: tuple[str, ...],
    message: str,
) -> None:
    with pytest.raises(SystemExit) as exited:
        bench(server, folder, *args)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_a_run_whose_every_frame_was_skipped_fails(
    server: ServerThread,
    folder: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def all_skipped(load: Load, *, processes: int) -> Results:
        results = Results(measure_from=0.0)
        for _ in range(5):
            results.record(0.01, 1.0, Outcome(skipped=True))
        return results

    monkeypatch.setattr("recognizer.bench.processes.run_load", all_skipped)
    assert bench(server, folder, "--streams", "1", "--policy", "latest") == 1
    assert "5 OK, 0 errors, 5 skipped" in capsys.readouterr().out


def test_loads_that_cannot_run_are_refused_before_sending(
    server: ServerThread, folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench(server, folder, "--fps", "10") == 2
    assert "--fps and --policy need --streams" in capsys.readouterr().err
    assert bench(server, folder, "--processes", "3", "--concurrency", "2") == 1
    assert "3 processes cannot share 2 callers or streams" in capsys.readouterr().err
    assert bench(server, folder, "--beside-priority", "low") == 2
    assert "--beside-priority needs --beside-concurrency" in capsys.readouterr().err
    assert bench(server, folder, "--beside-concurrency", "2", "--requests", "9") == 2
    assert "a load beside runs for a --duration" in capsys.readouterr().err


def test_an_unreachable_server_or_missing_images_are_errors(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "--server", "127.0.0.1:1", "--images", str(folder)]) == 1
    assert "cannot reach 127.0.0.1:1: UNAVAILABLE" in capsys.readouterr().err
    assert main(["bench", "--images", str(tmp_path / "none")]) == 1
    assert "no such file or folder" in capsys.readouterr().err


def test_the_load_generator_never_imports_torch() -> None:
    check = (
        "import sys, recognizer.cli.main, recognizer.bench.processes; print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr


def test_a_bench_runs_over_tls_with_a_token_from_several_processes(
    pki: Pki, folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tokens").write_text(f"shop:{TOKEN}\n", encoding="utf-8")
    security = SecuritySettings(
        tls_cert=pki.server[0], tls_key=pki.server[1], tokens_file=tmp_path / "tokens"
    )
    with ServerThread([colour_model()], security=security) as running:
        command = ["bench", "--server", running.address, "--images", str(folder)]
        load = ["--processes", "2", "--concurrency", "2", "--requests", "10", "--warmup", "0"]
        secure = ["--ca", str(pki.ca), "--token", TOKEN]
        assert main([*command, *load, *secure, "--json", "-"]) == 0
        assert json.loads(capsys.readouterr().out)["requests"]["ok"] == 10
        assert main([*command, *load, "--ca", str(pki.ca)]) == 1
    assert "UNAUTHENTICATED: this server needs credentials" in capsys.readouterr().err
