"""`recognizer stream` as a real process, against a server running in the test process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from certificates import Pki
from fakes import colour_model, solid_png
from recognizer.config.schema import SecuritySettings
from support import ServerThread
from videos import solid_video

ROOT = Path(__file__).parents[2]
PICTURES = [(200, 0, 0), (0, 200, 0), (0, 0, 200)]
FRAME_LINE = re.compile(r"^\s+(\d+)\s+(\S+)\s+([\d.]+) ms\s+(.+)$")


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with ServerThread([colour_model()], max_batch_size=4) as running:
        yield running


def recognizer(*args: str) -> list[str]:
    return [sys.executable, "-m", "recognizer", "stream", *args]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        recognizer(*args),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def frame_lines(stdout: str) -> list[tuple[str, str, str]]:
    """(frame, source, answer) of each per-frame line; the latency must be a number."""
    return [m.group(1, 2, 4) for line in stdout.splitlines() if (m := FRAME_LINE.match(line))]


def test_a_folder_streams_with_a_line_per_frame_a_summary_and_a_failure(
    server: ServerThread, tmp_path: Path
) -> None:
    for index, picture in enumerate(PICTURES):
        (tmp_path / f"{index}.png").write_bytes(solid_png(picture))
    (tmp_path / "1b-broken.png").write_bytes(b"\x89PNG\r\n")
    result = run(str(tmp_path), "--server", server.address, "--language", "en")
    assert result.returncode == 1, result.stderr  # a frame failed
    lines = frame_lines(result.stdout)
    assert [(frame, source) for frame, source, _ in lines] == [
        ("0", "0.png"),
        ("1", "1.png"),
        ("2", "1b-broken.png"),
        ("3", "2.png"),
    ]
    answers = [answer for _, _, answer in lines]
    assert re.fullmatch(r"red\s+1\.0000", answers[0]) and answers[3].startswith("blue")
    assert answers[2].startswith("failed: INVALID_ARGUMENT: image is not a supported format")
    summary = result.stdout.split("\n")[-5:]
    assert summary[0].startswith("frames   4 sent, 3 answered, 0 skipped, 1 failed in ")
    assert re.match(r"latency  p50 [\d.]+ ms  p95 [\d.]+ ms  p99 [\d.]+ ms", summary[1])
    assert summary[2] == "server   3 answered, 0 skipped, 1 failed"
    assert summary[3] == "status   OK"


def test_a_video_streams_raw_frames_quietly_and_exits_zero(
    server: ServerThread, tmp_path: Path
) -> None:
    clip = solid_video(tmp_path / "clip.mp4", PICTURES * 2, fps=50)
    result = run(str(clip), "--server", server.address, "--raw-format", "nv12", "-q")
    assert result.returncode == 0, result.stderr
    assert frame_lines(result.stdout) == []
    assert "frames   6 sent, 6 answered, 0 skipped, 0 failed" in result.stdout
    assert "server   6 answered, 0 skipped, 0 failed" in result.stdout


def test_ctrl_c_stops_sending_and_waits_for_the_answers(
    server: ServerThread, tmp_path: Path
) -> None:
    for index in range(50):
        (tmp_path / f"{index}.png").write_bytes(solid_png(PICTURES[index % 3]))
    process = subprocess.Popen(
        recognizer(str(tmp_path), "--server", server.address, "--fps", "10"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if FRAME_LINE.match(line):  # streaming has begun
            break
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "stopping" in stderr
    counts = re.search(r"frames   (\d+) sent, (\d+) answered, 0 skipped, 0 failed", stdout)
    assert counts, stdout
    sent, answered = map(int, counts.groups())
    assert 1 <= sent < 50 and answered == sent


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (("--server", "127.0.0.1:1"), 1, "recognizer stream: UNAVAILABLE"),
        (("--max-frame-age-ms", "50"), 2, "--max-frame-age-ms needs --policy latest"),
        (("--fps", "0"), 2, "must be above zero"),
    ],
)
def test_errors_exit_non_zero_and_say_why(
    tmp_path: Path, args: tuple[str, ...], status: int, message: str
) -> None:
    (tmp_path / "red.png").write_bytes(solid_png(PICTURES[0]))
    result = run(str(tmp_path), *args)
    assert result.returncode == status
    assert message in result.stderr


def test_a_missing_source_exits_one(tmp_path: Path) -> None:
    result = run(str(tmp_path / "missing.mp4"))
    assert result.returncode == 1
    assert "recognizer stream: cannot open" in result.stderr


def test_a_stream_over_tls_with_its_credentials_from_the_environment(
    pki: Pki, tmp_path: Path
) -> None:
    token = "q9Xc1kF0b7WvN2yH4tLm8a"
    (tmp_path / "tokens").write_text(f"shop:{token}\n", encoding="utf-8")
    security = SecuritySettings(
        tls_cert=pki.server[0],
        tls_key=pki.server[1],
        tls_client_ca=pki.ca,
        tokens_file=tmp_path / "tokens",
    )
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "0.png").write_bytes(solid_png(PICTURES[2]))
    environ = {
        "RECOGNIZER_CA": str(pki.ca),
        "RECOGNIZER_CERT": str(pki.client[0]),
        "RECOGNIZER_KEY": str(pki.client[1]),
        "RECOGNIZER_TOKEN": token,
    }
    with ServerThread([colour_model()], security=security) as running:
        args = (str(tmp_path / "frames"), "--server", running.address, "--language", "en")
        result = run(*args, env=environ)
        assert result.returncode == 0, result.stderr
        ((_, _, answer),) = frame_lines(result.stdout)
        assert answer.startswith("blue")
        anonymous = run(*args, env={**environ, "RECOGNIZER_TOKEN": ""})
    assert anonymous.returncode == 1
    assert "status   UNAUTHENTICATED: this server needs credentials" in anonymous.stdout
