"""README.md and docs/: every command block is run by a test (or its page says why it cannot
be here), the links between the pages resolve, and the commands no other test runs run here,
as written, against real servers (only addresses changed)."""

from __future__ import annotations

import ast
import base64
import io
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

import pytest
from PIL import Image

import doc_blocks
from doc_blocks import NOT_RUN, ROOT, RUN, command_block, command_blocks, commands, pages
from fakes import colour_model
from recognizer.cli.main import build_parser
from recognizer.config.sources import load_config
from support import ESPRESSO, PHOTOS, ServerThread, dev_tool, run_script
from videos import solid_video


def test_every_command_block_is_run_by_a_test_or_its_page_says_why_not() -> None:
    assert not RUN.keys() & NOT_RUN.keys()
    found = {block.key: block for page in pages() for block in command_blocks(page)}
    assert sorted(found.keys() - RUN.keys() - NOT_RUN.keys()) == [], "blocks no test runs"
    assert sorted((RUN.keys() | NOT_RUN.keys()) - found.keys()) == [], "entries of no block"
    for key, block in found.items():
        expected = "sh" if key in RUN else f"sh {doc_blocks.ELSEWHERE}"
        assert block.info == expected, f"{key} is fenced {block.info!r}, not {expected!r}"


def reads(module: ast.Module) -> set[doc_blocks.Key]:
    """The blocks a test module reads: its calls of command_block and commands, whose
    arguments are constants or names of module-level constants."""
    constants = {
        node.targets[0].id: node.value.value
        for node in module.body
        if isinstance(node, ast.Assign)
        and isinstance(node.targets[0], ast.Name)
        and isinstance(node.value, ast.Constant)
    }
    found = set()
    for node in ast.walk(module):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("command_block", "commands")
        ):
            args = [
                arg.value if isinstance(arg, ast.Constant) else constants.get(arg.id)
                for arg in node.args
                if isinstance(arg, ast.Constant | ast.Name)
            ]
            if len(args) == len(node.args) and len(args) in (2, 3) and None not in args:
                found.add((args[0], args[1], args[2] if len(args) == 3 else 0))
    return found


@pytest.mark.parametrize("key", sorted(RUN), ids=lambda key: f"{key[0]}:{key[1]}:{key[2]}")
def test_the_test_named_for_a_block_reads_it_from_its_page(key: doc_blocks.Key) -> None:
    path, _, name = RUN[key].partition("::")
    module = ast.parse((ROOT / path).read_text(encoding="utf-8"))
    tests = {node.name for node in module.body if isinstance(node, ast.FunctionDef)}
    assert name in tests, f"{path} has no test {name}"
    assert key in reads(module), f"{path} does not read {key}"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(encoding="utf-8"), flags=re.M | re.S)
    return {slug(h.replace("`", "")) for h in re.findall(r"^#{1,6} (.*)$", text, flags=re.M)}


@pytest.mark.parametrize("page", pages())
def test_every_link_of_a_page_resolves(page: str) -> None:
    text = (ROOT / page).read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        path = (ROOT / page).parent / file if file else ROOT / page
        assert path.exists(), f"{page}: {target}"
        if anchor and path.suffix == ".md":
            assert anchor in anchors(path), f"{page}: {target}"


def test_the_readme_names_every_page_and_each_page_leads_back_to_it() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    next_steps = readme[readme.index("## Where to go next") :]
    for page in pages()[1:]:
        assert f"]({page})" in next_steps, page
        title, lead = (ROOT / page).read_text(encoding="utf-8").split("\n\n")[:2]
        assert title.startswith("# "), page
        assert "](../README.md" in lead and lead.count(". ") == 0, f"{page}: {lead}"


# The commands no other test runs.


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def jpeg(name: str) -> bytes:
    buffer = io.BytesIO()
    Image.open(PHOTOS[name]).convert("RGB").save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A folder where the pages' relative paths (.venv/bin/..., benchmarks/) reach this
    checkout's, and photo.jpg is a cup of espresso."""
    for name in (".venv", "benchmarks"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "photo.jpg").write_bytes(jpeg("coffee"))
    return tmp_path


def test_the_quick_start_serves_and_tests() -> None:
    serve, test = commands("README.md", "Quick start")
    assert serve.startswith("make serve ") and test.startswith("make test ")
    if subprocess.run(["make", "-q", "install"], cwd=ROOT, capture_output=True).returncode:
        pytest.skip("make would install into .venv first (CI runs this after `make lint`)")
    port = free_port()
    server = subprocess.Popen(
        ["bash", "-c", serve],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "RECOGNIZER_PORT": str(port), "RECOGNIZER_DRAIN_DELAY": "0"},
    )
    try:
        health = [sys.executable, "-m", "recognizer", "health", "--server", f"127.0.0.1:{port}"]
        deadline = time.monotonic() + 180
        while subprocess.run(health, capture_output=True).returncode:
            assert server.poll() is None and time.monotonic() < deadline, "make serve never served"
            time.sleep(1)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    # The tests `make test` runs, narrowed to one file by the variable the Makefile reads.
    tested = subprocess.run(
        ["bash", "-c", test],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTEST_ARGS": "-q -p no:cacheprovider tests/config/test_schema.py"},
    )
    assert tested.returncode == 0 and " passed" in tested.stdout, tested.stdout + tested.stderr


def test_recognizer_classify_works(default_server: ServerThread, checkout: Path) -> None:
    block = command_block("README.md", "The command line")
    output = run_script(block, checkout, RECOGNIZER_SERVER=default_server.address)
    chinese, english = output.split("photo.jpg  (")[1:]
    assert chinese.count("\n") == 2 + 5 and "浓缩咖啡" in chinese
    assert english.count("\n") == 2 + 3 and "espresso" in english
    assert f" {ESPRESSO} " in chinese and f" {ESPRESSO} " in english


def test_perf_analyzer_runs(default_server: ServerThread, checkout: Path) -> None:
    steps = []
    for photo in sorted(
        Path(str(resources.files("recognizer.models") / "data" / "photos")).glob("*.jpg")
    )[:4]:
        data = photo.read_bytes()
        element = base64.b64encode(len(data).to_bytes(4, "little") + data).decode()
        steps.append({"IMAGE": {"content": {"b64": element}, "shape": [1]}})
    (checkout / "images.json").write_text(json.dumps({"data": steps}))
    dev_tool("perf_analyzer")
    block = command_block("docs/triton.md", "perf_analyzer")
    script = block.replace("127.0.0.1:50051", default_server.address).rstrip("\n")
    # Short measurements: a few requests a window, not perf_analyzer's 5 s windows.
    quick = " --measurement-mode count_windows --measurement-request-count 8"
    output = run_script(script + quick + " --stability-percentage 100 --max-trials 3", checkout)
    # The sweep's levels, 1, 4, 7, ... (on a busy machine it may stop before 16).
    levels = re.findall(r"^Concurrency: (\d+), throughput: [\d.]+ infer/sec", output, re.M)
    assert levels[:2] == ["1", "4"], output


def test_recognizer_stream_runs(default_server: ServerThread, tmp_path: Path) -> None:
    solid_video(tmp_path / "clip.mp4", [(200, 40, 40), (40, 200, 40)] * 6, size=(96, 64))
    (tmp_path / "frames").mkdir()
    for index, name in enumerate(("coffee", "cat", "hopper")):
        (tmp_path / "frames" / f"frame_{index * 5}.jpg").write_bytes(jpeg(name))
    block = command_block("docs/streaming.md", "recognizer stream")
    output = run_script(block, tmp_path, RECOGNIZER_SERVER=default_server.address)
    assert output.count("status   OK") == 4
    assert "frames   12 sent, 12 answered" in output and "frames   3 sent, 3 answered" in output
    assert output.index("frame_5.jpg") < output.index("frame_10.jpg")


def test_a_stream_over_grpcurl(
    default_server: ServerThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "frame1.jpg").write_bytes(jpeg("coffee"))
    (tmp_path / "frame2.jpg").write_bytes(jpeg("cat"))
    block = command_block("docs/streaming.md", "With grpcurl")
    script = block.replace("localhost:50051", default_server.address)
    monkeypatch.setenv(
        "PATH", os.pathsep.join([os.path.dirname(dev_tool("grpcurl")), os.environ["PATH"]])
    )
    output = run_script(script, tmp_path)
    assert '"requestId": "1"' in output or '"request_id": "1"' in output
    assert "recognizer-frames-answered: 2" in output


def serve_config(line: str) -> list[dict[str, object]]:
    """The models a `recognizer serve` line configures, read as `recognizer serve` reads it."""
    argv = shlex.split(line, comments=True)
    assert argv[:2] == ["recognizer", "serve"]
    config = load_config(vars(build_parser().parse_args(argv[1:])), {})
    return [model.model_dump(exclude_defaults=True) for model in config.models]


def test_the_model_flags_configure_their_models() -> None:
    lines = commands("docs/models.md", "--model")
    assert len(lines) == 4
    builtin, directory, named, several = (serve_config(line) for line in lines)
    assert builtin == [{"path": "efficientnet-lite0", "name": "efficientnet-lite0"}]
    wanwu = "./cv_resnest101_general_recognition"
    assert directory == [{"path": wanwu, "name": "cv_resnest101_general_recognition"}]
    assert named == [{"path": wanwu, "name": "wanwu"}]
    seed, r50 = several
    assert seed["name"] == "seed" and seed["channel_order"] == "BGR"
    assert seed["activation"] == "sigmoid" and seed["max_batch_size"] == 16
    assert r50["name"] == "r50" and r50["architecture"] == "resnet50"


def test_wanwu_serves_and_classifies(checkout: Path) -> None:
    serve, classify = commands("docs/models.md", "万物识别 (ModelScope general recognition)")
    (model,) = serve_config(serve)
    assert model["name"] == "wanwu"
    # The classify line, against a server serving a model of that name.
    with ServerThread([colour_model("wanwu")]) as running:
        output = run_script(classify, checkout, RECOGNIZER_SERVER=running.address)
    assert output.startswith("photo.jpg  (wanwu,") and output.count("\n") == 2 + 3


def test_recognizer_bench_measures(default_server: ServerThread, checkout: Path) -> None:
    make_images, bench = commands("docs/operating.md", "Measuring it")
    run_script(make_images, checkout)
    assert len(list((checkout / "bench-images").glob("*.jpg"))) == 6
    # bench reads its server from --server alone.
    output = run_script(f"{bench} --server {default_server.address}", checkout)
    assert " OK, 0 errors" in output and "classifications/s" in output
