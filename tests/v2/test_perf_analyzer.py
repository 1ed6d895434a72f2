"""PyPI's perf_analyzer (the real binary, as `make install` sets it up) runs to completion
against recognizer over Triton's gRPC protocol, unary and streaming, with an input data
file of the shipped photos, and reads the server's statistics."""

from __future__ import annotations

import base64
import csv
import json
import struct
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from support import ServerThread, dev_tool

MODEL = "efficientnet-lite0"


@pytest.fixture(scope="module")
def input_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Each shipped photo a step: a BYTES element in base64, its 4-byte length first."""
    folder = Path(str(resources.files("recognizer.models") / "data" / "photos"))
    photos = sorted(folder.glob("*.jpg"))
    steps = []
    for photo in photos:
        data = photo.read_bytes()
        element = base64.b64encode(struct.pack("<I", len(data)) + data).decode()
        steps.append({"IMAGE": {"content": {"b64": element}, "shape": [1]}})
    path = tmp_path_factory.mktemp("perf") / "input.json"
    path.write_text(json.dumps({"data": steps}))
    return path


@pytest.mark.parametrize("mode", [[], ["--streaming"]], ids=["unary", "streaming"])
def test_perf_analyzer_measures_recognizer(
    default_server: ServerThread, input_data: Path, tmp_path: Path, mode: list[str]
) -> None:
    report = tmp_path / "report.csv"
    result = subprocess.run(
        [
            dev_tool("perf_analyzer"),
            "-m",
            MODEL,
            "-u",
            default_server.address,
            "-i",
            "grpc",
            "--service-kind=triton",
            "--input-data",
            str(input_data),
            "--concurrency-range",
            "2",
            "--measurement-mode",
            "count_windows",
            "--measurement-request-count",
            "20",
            "--stability-percentage",
            "100",
            "--max-trials",
            "3",
            "-f",
            str(report),
            *mode,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Successful request count" in result.stdout  # it read ModelStatistics
    with report.open(newline="") as file:
        (row,) = csv.DictReader(file)
    assert int(row["Concurrency"]) == 2
    assert float(row["Inferences/Second"]) > 0
    assert int(row["p99 latency"]) > 0
