"""The `recognizer` command and the clients/ examples, run as real processes."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from certificates import Pki
from fakes import solid_png
from images import open_image
from model_files import SEED_NAMES, Built
from recognizer.cli.main import build_parser
from recognizer.client import Client, error_status
from recognizer.v1 import recognizer_pb2 as pb
from recognizer.v1 import recognizer_pb2_grpc as pb_grpc
from support import PHOTOS, ServeProcess
from videos import write_video

ROOT = Path(__file__).parents[2]
FAKE = [sys.executable, str(ROOT / "tests" / "serve_fake.py")]
HTTP_SERVING = re.compile(r"serving HTTP on (http://[\d.]+:\d+)/")


@pytest.fixture(scope="module")
def served() -> Iterator[ServeProcess]:
    process = ServeProcess("--max-batch-size", "4")
    try:
        process.address  # noqa: B018 - waits until SERVING
        yield process
    finally:
        process.stop()


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


TOKEN = "q9Xc1kF0b7WvN2yH4tLm8a"


@pytest.fixture(scope="module")
def secured(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """`recognizer serve` with TLS (flags) and tokens (the environment)."""
    tokens = tmp_path_factory.mktemp("tokens") / "tokens"
    tokens.write_text(f"shop:{TOKEN}\n", encoding="utf-8")
    process = ServeProcess(
        "--tls-cert",
        str(pki.server[0]),
        "--tls-key",
        str(pki.server[1]),
        "--max-batch-size",
        "4",
        env={"RECOGNIZER_TOKENS_FILE": str(tokens)},
    )
    try:
        process.address  # noqa: B018 - waits until SERVING
        yield process
    finally:
        process.stop()


def test_serve_says_how_it_is_secured(secured: ServeProcess) -> None:
    secured.address  # noqa: B018 - waits until SERVING
    log = "".join(secured.log)
    assert re.search(r"serving recognizer\.v1\.Recognizer on 127\.0\.0\.1:\d+ \(TLS, tokens\)", log)
    assert "TLS certificate CN=recognizer, valid until" in log
    assert "plaintext" not in log


def test_classify_takes_the_ca_and_the_token_by_flag_or_variable(
    secured: ServeProcess, pki: Pki
) -> None:
    command = (sys.executable, "-m", "recognizer", "classify", "--server", secured.address)
    image = str(PHOTOS["coffee"])
    flagged = run(*command, "--ca", str(pki.ca), "--token", TOKEN, image, "--top-k", "1")
    assert flagged.returncode == 0, flagged.stderr
    assert "浓缩咖啡" in flagged.stdout
    from_env = run(*command, image, env={"RECOGNIZER_CA": str(pki.ca), "RECOGNIZER_TOKEN": TOKEN})
    assert from_env.returncode == 0, from_env.stderr
    anonymous = run(*command, "--ca", str(pki.ca), image)
    assert anonymous.returncode == 1
    assert "UNAUTHENTICATED: this server needs credentials" in anonymous.stderr
    half = run(*command, "--ca", str(pki.ca), "--cert", str(pki.client[0]), image)
    assert half.returncode == 2 and "a client certificate needs its key" in half.stderr
    plain = run(*command, "--token", TOKEN, "--server", "10.1.2.3:50051", image)
    assert plain.returncode == 2 and "a token goes only over TLS" in plain.stderr


def test_the_examples_connect_with_tls_and_a_token(
    secured: ServeProcess, pki: Pki, tmp_path: Path
) -> None:
    flags = ("--server", secured.address, "--ca", str(pki.ca))
    example = (sys.executable, "clients/classify_backend.py", str(PHOTOS["coffee"]), *flags)
    backend = run(*example, "--token", TOKEN)
    assert backend.returncode == 0, backend.stderr
    assert "espresso" in backend.stdout.splitlines()[0]
    (tmp_path / "coffee.png").write_bytes(PHOTOS["coffee"].read_bytes())
    folder = run(
        sys.executable,
        "clients/stream_folder.py",
        str(tmp_path),
        *flags,
        env={"RECOGNIZER_TOKEN": TOKEN},
    )
    assert folder.returncode == 0, folder.stderr
    assert folder.stdout.startswith("coffee.png: 浓缩咖啡")
    refused = run(*example)
    assert refused.returncode == 1 and refused.stderr.startswith("UNAUTHENTICATED: ")
    assert "reason CREDENTIALS_MISSING" in refused.stderr


def test_classify_prints_a_table_of_labels(served: ServeProcess) -> None:
    result = run(
        sys.executable,
        "-m",
        "recognizer",
        "classify",
        "--server",
        served.address,
        str(PHOTOS["coffee"]),
        str(PHOTOS["cat"]),
        "--top-k",
        "3",
    )
    assert result.returncode == 0, result.stderr
    assert "浓缩咖啡" in result.stdout
    assert re.search(r"1\s+967\s+浓缩咖啡\s+0\.9\d+", result.stdout)
    assert result.stdout.count("efficientnet-lite0") == 2


def test_classify_in_english_and_reports_a_bad_file(served: ServeProcess, tmp_path: Path) -> None:
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not a jpeg")
    result = run(
        sys.executable,
        "-m",
        "recognizer",
        "classify",
        "--server",
        served.address,
        "--language",
        "en",
        str(PHOTOS["motorcycle"]),
        str(junk),
    )
    assert result.returncode == 1
    assert "moped" in result.stdout
    assert "junk.jpg: INVALID_ARGUMENT: image is not a supported format" in result.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["classify", "cat.jpg", "--top-k", "-1"], "--top-k: -1 is not between 0 and 1000000"),
        (["stream", "clip.mp4", "--top-k", "-1"], "--top-k: must be above zero: -1"),
    ],
)
def test_a_negative_top_k_is_a_usage_error(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_the_backend_example_classifies_through_the_generated_stubs(served: ServeProcess) -> None:
    result = run(
        sys.executable,
        "clients/classify_backend.py",
        str(PHOTOS["coffee"]),
        "--server",
        served.address,
    )
    assert result.returncode == 0, result.stderr
    assert "espresso" in result.stdout.splitlines()[0]


def test_the_backend_example_prints_what_the_error_details_say(
    served: ServeProcess, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n")
    result = run(
        sys.executable, "clients/classify_backend.py", str(broken), "--server", served.address
    )
    assert result.returncode == 1
    assert result.stderr.startswith("INVALID_ARGUMENT: ")
    assert "reason IMAGE_" in result.stderr and "field image: " in result.stderr


def test_the_stream_example_streams_a_folder(served: ServeProcess, tmp_path: Path) -> None:
    for name in ("cat", "coffee"):
        (tmp_path / f"{name}.png").write_bytes(PHOTOS[name].read_bytes())
    (tmp_path / "zz-broken.png").write_bytes(b"\x89PNG\r\n")
    (tmp_path / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # not an image: not sent
    (tmp_path / "notes.txt").write_text("not an image either", encoding="utf-8")
    result = run(
        sys.executable,
        "clients/stream_folder.py",
        str(tmp_path),
        "--server",
        served.address,
    )
    assert result.returncode == 1  # one frame failed
    lines = result.stdout.splitlines()
    assert lines[0].startswith("cat.png: ") and lines[1].startswith("coffee.png: 浓缩咖啡")
    assert lines[2].startswith("zz-broken.png: error") and len(lines) == 3


def test_the_video_example_streams_a_video_with_latencies(
    served: ServeProcess, tmp_path: Path
) -> None:
    photo = np.asarray(open_image(PHOTOS["coffee"].read_bytes()).convert("RGB"))
    clip = write_video(tmp_path / "coffee.mp4", [photo] * 5, fps=20, codec="h264")
    result = run(
        sys.executable,
        "clients/stream_video.py",
        str(clip),
        "--server",
        served.address,
        "--language",
        "en",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 5
    for index, line in enumerate(lines):
        assert re.fullmatch(rf"frame {index}: espresso \(0\.\d\d\), [\d.]+ ms", line), line


def test_settings_come_from_the_environment() -> None:
    process = ServeProcess(env={"RECOGNIZER_MAX_BATCH_SIZE": "3"})
    try:
        with Client(process.address) as client:
            assert client.list_models().models[0].max_batch_size == 3
    finally:
        assert process.stop() == 0


def test_sigterm_drains_finishes_calls_in_flight_and_exits_zero() -> None:
    process = ServeProcess("--grace-period", "20")
    process.address  # noqa: B018 - waits until SERVING
    image = PHOTOS["coffee"].read_bytes()
    outcomes: list[tuple[float, grpc.StatusCode, str]] = []
    stop = threading.Event()

    def caller() -> None:
        with Client(process.address) as client:
            while not stop.is_set():
                try:
                    response = client.classify(image, top_k=1, language="en")
                    outcomes.append(
                        (time.monotonic(), grpc.StatusCode.OK, response.labels[0].label)
                    )
                except grpc.RpcError as error:
                    status = error_status(error)
                    outcomes.append(
                        (time.monotonic(), error.code(), status.message if status else "")
                    )
                    return

    callers = [threading.Thread(target=caller) for _ in range(6)]
    for thread in callers:
        thread.start()
    time.sleep(1.5)
    signalled = time.monotonic()
    assert process.stop() == 0
    stop.set()
    for thread in callers:
        thread.join(timeout=30)
    codes = {code for _, code, _ in outcomes}
    assert codes <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, outcomes
    assert all(label == "espresso" for _, code, label in outcomes if code == grpc.StatusCode.OK)
    assert any(when > signalled and code == grpc.StatusCode.OK for when, code, _ in outcomes)
    log = "".join(process.log)
    assert "draining" in log and "stopped" in log


def test_sigterm_waits_the_drain_delay_serving_while_health_says_not_serving() -> None:
    process = ServeProcess("--drain-delay", "3", program=[*FAKE, "works"])
    with grpc.insecure_channel(process.address) as channel:
        stub = pb_grpc.RecognizerStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        process.process.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        time.sleep(0.5)
        status = health.Check(health_pb2.HealthCheckRequest(service="")).status
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        answer = stub.Classify(pb.ClassifyRequest(image=solid_png((0, 0, 200)), top_k=1))
        assert answer.labels[0].class_id == 2  # still served, within the delay
        assert process.process.poll() is None
    assert process.wait() == 0
    assert time.monotonic() - signalled >= 3
    assert "still serving for 3.0s" in "".join(process.log)


def test_a_server_whose_every_model_hangs_exits_with_status_3() -> None:
    process = ServeProcess(
        "--stall-timeout", "0.5", "--unhealthy-exit", "1", program=[*FAKE, "hangs"]
    )
    with Client(process.address) as client:
        with pytest.raises(grpc.RpcError) as hung:
            client.classify(solid_png((0, 0, 200)))
        assert hung.value.code() == grpc.StatusCode.UNAVAILABLE
    assert process.wait() == 3
    log = "".join(process.log)
    assert "NOT_SERVING" in log and "giving up, for a restart" in log


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (("--model", "no-such-model"), 1, "unknown model 'no-such-model'"),
        (("--device", "cuda:7"), 1, "cuda:7"),
        (("--max-batch-size", "0"), 2, "--max-batch-size: input should be greater than or equal"),
        (("--max-message-mb", "4096"), 2, "--max-message-mb: input should be less than 2048"),
    ],
)
def test_start_up_errors_exit_non_zero_with_a_clear_message(
    args: tuple[str, ...], status: int, message: str
) -> None:
    if args == ("--device", "cuda:7"):
        import torch

        if torch.cuda.device_count() > 7:
            pytest.skip("this machine has a cuda:7")
    process = ServeProcess(*args)
    assert process.wait() == status
    log = "".join(process.log)
    assert "cannot start" in log and message in log
    assert "Traceback" not in log


def test_a_busy_port_is_a_start_up_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = subprocess.run(
            [sys.executable, "-m", "recognizer", "serve", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert process.returncode == 1
    assert f"cannot start: cannot listen on 127.0.0.1:{port}" in process.stderr


def test_serve_with_an_http_port_serves_both_and_drains_both_on_sigterm() -> None:
    process = ServeProcess("--http-port", "0", "--grace-period", "20")
    process.address  # noqa: B018 - waits until SERVING, which HTTP reaches first
    match = HTTP_SERVING.search("".join(process.log))
    assert match, "".join(process.log)
    url = match.group(1)
    assert "<title>recognizer</title>" in httpx.get(f"{url}/", timeout=30).text
    image = PHOTOS["coffee"].read_bytes()
    outcomes: list[tuple[float, int, str]] = []

    def caller() -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            while True:
                response = client.post(
                    "/v1/classify?top_k=1&language=en",
                    content=image,
                    headers={"Content-Type": "image/png"},
                )
                body = response.json()
                label = body["labels"][0]["label"] if response.status_code == 200 else ""
                outcomes.append((time.monotonic(), response.status_code, label))
                if response.status_code != 200:
                    return

    callers = [threading.Thread(target=caller) for _ in range(4)]
    for thread in callers:
        thread.start()
    with Client(process.address) as client:
        assert client.classify(image, top_k=1, language="en").labels[0].label == "espresso"
    time.sleep(1.5)
    signalled = time.monotonic()
    assert process.stop() == 0
    for thread in callers:
        thread.join(timeout=30)
    assert {code for _, code, _ in outcomes} == {200, 503}, outcomes
    assert all(label == "espresso" for _, code, label in outcomes if code == 200)
    assert any(when > signalled and code == 200 for when, code, _ in outcomes)


def test_a_busy_http_port_is_a_start_up_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = ServeProcess("--http-port", str(port))
        assert process.wait() == 1
    assert f"cannot start: cannot listen for HTTP on 127.0.0.1:{port}" in "".join(process.log)


# Each start-up error as `recognizer serve` reports it: (arguments, exit status, message), all
# run at once. A configuration that cannot be meant exits 2; one that cannot be served, 1.
UNSERVABLE = [
    (("--model", "{tmp}/missing.onnx"), 1, "unknown model '{tmp}/missing.onnx': no such file"),
    (("--model", "{tmp}/weights.h5"), 1, "cannot tell the format of {tmp}/weights.h5"),
    (
        ("--model", "path={r18},architecture=resnet34"),
        1,
        "resnet18.pth does not fit torchvision/resnet34: missing layer1.2.conv1.weight",
    ),
    (
        ("--model", "path={r18},architecture=resnet18,labels.en={tmp}/two.txt"),
        1,
        "{tmp}/two.txt has 2 en labels but resnet18.pth (torchvision/resnet18) has 7 classes",
    ),
    (("--model", "path={r18}"), 2, "{r18} is not TorchScript, so it is taken for a state dict"),
    (
        ("--model", "path={r18},colour=red"),
        2,
        "--model 'path={r18},colour=red': unknown key 'colour'",
    ),
    (
        ("--model", "a/model.pt", "--model", "b/model.onnx"),
        2,
        "more than one model is named 'model'",
    ),
    (("--config", "{tmp}/none.toml"), 2, "cannot read config file {tmp}/none.toml"),
]


def test_models_that_cannot_be_served_stop_start_up_with_a_clear_message(
    torchvision_state_dict: Built, tmp_path: Path
) -> None:
    (tmp_path / "weights.h5").write_bytes(b"HDF")
    (tmp_path / "two.txt").write_text("one\ntwo\n", encoding="utf-8")
    paths = {"tmp": str(tmp_path), "r18": str(torchvision_state_dict.path)}
    processes = [ServeProcess(*(arg.format(**paths) for arg in argv)) for argv, _, _ in UNSERVABLE]
    outcomes = [(process.wait(), "".join(process.log)) for process in processes]
    for (status, log), (argv, expected, message) in zip(outcomes, UNSERVABLE, strict=True):
        assert status == expected, (argv, log)
        assert f"cannot start: {message.format(**paths)}" in log, (argv, log)
        assert "Traceback" not in log, (argv, log)


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (("--tls-cert", "none.pem", "--tls-key", "none.key"), 1, "cannot read --tls-cert none.pem"),
        (("--tokens-file", "{tmp}/tokens"), 2, "{tmp}/tokens, line 1: expected tenant:token"),
    ],
)
def test_bad_certificates_or_tokens_stop_start_up_before_the_models_load(
    tmp_path: Path, args: tuple[str, ...], status: int, message: str
) -> None:
    (tmp_path / "tokens").write_text("no colon here\n", encoding="utf-8")
    process = ServeProcess(*(arg.format(tmp=tmp_path) for arg in args))
    assert process.wait() == status
    log = "".join(process.log)
    assert f"cannot start: {message.format(tmp=tmp_path)}" in log
    assert "loaded" not in log and "Traceback" not in log


def test_a_config_file_serves_its_models(
    torchscript_model: Built, onnx_model: Built, tmp_path: Path
) -> None:
    (tmp_path / "recognizer.toml").write_text(
        f"""
max_batch_size = 3
max_batch_delay_ms = 0

[[models]]
name = "vit"
path = "{onnx_model.path}"

[[models]]
name = "seed"
path = "{torchscript_model.path}"
format = "torchscript"
max_batch_size = 2
""",
        encoding="utf-8",
    )
    process = ServeProcess(
        "--config", str(tmp_path / "recognizer.toml"), env={"RECOGNIZER_MAX_BATCH_SIZE": "4"}
    )
    try:
        with Client(process.address) as client:
            models = client.list_models().models
            assert [(m.name, m.max_batch_size, m.source_format) for m in models] == [
                ("vit", 4, "onnx"),
                ("seed", 2, "torchscript"),
            ]
            response = client.classify(PHOTOS["cat"], model="seed", language="en")
            assert response.labels[0].label in SEED_NAMES["en"]
    finally:
        assert process.stop() == 0


def test_json_logs_parse_line_by_line_with_each_calls_fields_and_no_secret(
    tmp_path: Path,
) -> None:
    """`--log-format json --access-log`: every line the server writes is one JSON object;
    each call through either door has its access line (status, reason, tenant, request id,
    the caller's trace id), the refused ones too; no token and no image's bytes appear."""
    tokens = tmp_path / "tokens"
    tokens.write_text(f"shop:{TOKEN}\n", encoding="utf-8")
    wrong = "N0tTheT0ken" + TOKEN[::-1]
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    traced = f"00-{trace}-00f067aa0ba902b7-01"
    image = PHOTOS["coffee"].read_bytes()
    process = ServeProcess(
        "--log-format", "json", "--access-log", "--http-port", "0", "--tokens-file", str(tokens)
    )
    try:
        url = _http_url(process)
        token = (("authorization", f"Bearer {TOKEN}"), ("traceparent", traced))
        with grpc.insecure_channel(process.address) as channel:
            classify = pb_grpc.RecognizerStub(channel).Classify
            classify(pb.ClassifyRequest(image=image, request_id="order-17"), metadata=token)
            for request, metadata in (
                (pb.ClassifyRequest(image=image), (("authorization", f"Bearer {wrong}"),)),
                (pb.ClassifyRequest(image=b"not an image"), token),
            ):
                with pytest.raises(grpc.RpcError):
                    classify(request, metadata=metadata, timeout=30)
        with httpx.Client(base_url=url, timeout=30) as client:
            sent = {"Content-Type": "image/png", "traceparent": traced}
            answered = client.post(
                "/v1/classify", content=image, headers={**sent, "Authorization": f"Bearer {TOKEN}"}
            )
            refused = client.post(
                "/v1/classify", content=image, headers={**sent, "Authorization": f"Bearer {wrong}"}
            )
            assert (answered.status_code, refused.status_code) == (200, 401)
    finally:
        assert process.stop() == 0
    text = "".join(process.log)
    lines = [json.loads(line) for line in process.log]  # every line, or this fails
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    calls = {
        (line["door"], line["method"], line["status"]): line
        for line in lines
        if line["logger"] == "recognizer.access"
    }
    classified = calls["grpc", "/recognizer.v1.Recognizer/Classify", "OK"]
    assert classified["tenant"] == "shop" and classified["request_id"] == "order-17"
    assert classified["trace_id"] == trace and classified["duration_ms"] > 0
    assert calls["grpc", "/recognizer.v1.Recognizer/Classify", "UNAUTHENTICATED"]["reason"]
    undecodable = calls["grpc", "/recognizer.v1.Recognizer/Classify", "INVALID_ARGUMENT"]
    assert (undecodable["reason"], undecodable["tenant"]) == ("IMAGE_UNDECODABLE", "shop")
    posted = calls["http", "POST /v1/classify", "200"]
    assert (posted["tenant"], posted["trace_id"]) == ("shop", trace)
    assert "tenant" not in calls["http", "POST /v1/classify", "401"]
    assert TOKEN not in text and wrong not in text
    assert base64.b64encode(image[:48]).decode() not in text
    assert "\\x89PNG" not in text and image[:48].hex() not in text


def _http_url(process: ServeProcess) -> str:
    process.address  # noqa: B018 - waits until SERVING, which HTTP reaches first
    match = HTTP_SERVING.search("".join(process.log))
    assert match, "".join(process.log)
    return match.group(1)
