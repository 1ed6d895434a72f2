"""The container image, built and run for real with podman (`make image-test`; minutes).

Built as deploy/image/build.py --local builds it on a machine without a registry: a
Debian base made by mmdebstrap, runc, and this machine's pip configuration. The running
container classifies a real photo through grpcurl and through the Python client, takes
its settings from the environment, answers its HEALTHCHECK, runs as a user that is not
root, and drains when `podman stop` sends SIGTERM. Only with --image: CI does not run it.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2

from recognizer.client import Client, error_status
from support import ESPRESSO, PHOTOS, dev_tool

ROOT = Path(__file__).parents[2]
BUILD = ROOT / "deploy" / "image" / "build.py"
CONSTRAINTS = ROOT / "deploy" / "image" / "constraints.txt"
TAG = "localhost/recognizer:image-test"
CONTAINER = "recognizer-image-test"
START_TIMEOUT_S = 300
PODMAN_ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "deploy" / "image" / "containers.conf")}


@pytest.fixture(scope="module", autouse=True)
def only_when_asked(request: pytest.FixtureRequest) -> None:
    if not request.config.getoption("--image"):
        pytest.skip("builds a container image for minutes: make image-test")


def podman(*args: str, timeout: float = 120, check: bool = True) -> str:
    result = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, env=PODMAN_ENV
    )
    if check and result.returncode:
        raise AssertionError(f"podman {' '.join(args)}: {result.returncode}\n{result.stderr}")
    return result.stdout.strip()


@pytest.fixture(scope="module")
def image(request: pytest.FixtureRequest) -> str:
    build_args = [f"--build-arg={arg}" for arg in request.config.getoption("--image-build-arg")]
    started = time.monotonic()
    subprocess.run(
        [sys.executable, str(BUILD), "--local", "--tag", TAG, "--target", "cpu", *build_args],
        check=True,
        timeout=3600,
    )
    size = int(podman("image", "inspect", TAG, "--format", "{{.Size}}"))
    print(f"\nbuilt {TAG} in {time.monotonic() - started:.0f} s: {size / 1e9:.2f} GB")
    return TAG


@pytest.fixture(scope="module")
def container(image: str) -> Iterator[dict[str, str]]:
    """The image running, with a setting from the environment; its addresses."""
    podman("rm", "--force", "--ignore", CONTAINER)
    ulimits = ulimit_flags()
    started = time.monotonic()
    podman(
        "run", "--detach", "--name", CONTAINER, *ulimits,
        "--publish", "127.0.0.1::50051", "--publish", "127.0.0.1::9090",
        "--env", "RECOGNIZER_DEFAULT_TOP_K=3",
        image,
    )  # fmt: skip
    try:
        healthy = wait_healthy()
        print(f"\nhealthy {healthy - started:.0f} s after `podman run`")
        yield {
            "grpc": podman("port", CONTAINER, "50051/tcp"),
            "metrics": podman("port", CONTAINER, "9090/tcp"),
        }
    finally:
        podman("rm", "--force", "--ignore", CONTAINER, timeout=60, check=False)


def ulimit_flags() -> list[str]:
    """The --ulimit flags deploy/image/build.py gives podman (no higher than ours)."""
    spec = importlib.util.spec_from_file_location("deploy_image_build", BUILD)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    flags: list[str] = module.ulimit_flags()
    return flags


def logs() -> str:
    """The container's log (the server logs to stderr)."""
    return subprocess.run(
        ["podman", "logs", CONTAINER],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=PODMAN_ENV,
        timeout=60,
    ).stdout


def wait_healthy() -> float:
    """Run the image's HEALTHCHECK (`recognizer health`) until it passes; when it did."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        result = subprocess.run(
            ["podman", "healthcheck", "run", CONTAINER],
            capture_output=True,
            text=True,
            env=PODMAN_ENV,
            timeout=60,
        )
        if result.returncode == 0:
            return time.monotonic()
        state = podman("inspect", CONTAINER, "--format", "{{.State.Status}}")
        assert state == "running", logs()
        assert time.monotonic() < deadline, logs()
        time.sleep(2)


def test_every_python_package_in_the_image_is_pinned(image: str) -> None:
    listed = podman(
        "run", "--rm", *ulimit_flags(), "--entrypoint", "pip", image, "list", "--format", "json"
    )  # fmt: skip
    pins = dict(
        line.split("==")
        for line in CONSTRAINTS.read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    installed = {
        re.sub(r"[-_.]+", "-", package["name"]).lower(): package["version"]
        for package in json.loads(listed)
    }
    assert installed.pop("recognizer") == "0.1.0"
    assert installed.pop("pip")  # the venv's own, from the base image's Python
    for name, version in installed.items():
        assert pins.get(name) == version.split("+")[0], f"{name}=={version} is not pinned"


def test_it_runs_as_a_user_that_is_not_root(container: dict[str, str]) -> None:
    assert podman("inspect", CONTAINER, "--format", "{{.Config.User}}") == "10001:10001"
    assert podman("exec", CONTAINER, "id", "-u") == "10001"
    status = podman("exec", CONTAINER, "cat", "/proc/1/status")
    uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)", status, re.MULTILINE)
    assert uids and uids.groups() == ("10001", "10001")  # the server itself, PID 1
    assert "recognizer serve" in podman("exec", CONTAINER, "cat", "/proc/1/cmdline").replace(
        "\0", " "
    )


def test_grpcurl_classifies_a_photo_through_the_published_port(
    container: dict[str, str],
) -> None:
    grpcurl = dev_tool("grpcurl")
    photo = PHOTOS["coffee"].read_bytes()
    request = json.dumps({"image": base64.b64encode(photo).decode(), "language": "en"})
    answer = subprocess.run(
        [grpcurl, "-plaintext", "-d", "@", container["grpc"], "recognizer.v1.Recognizer/Classify"],
        input=request,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    labels = json.loads(answer)["labels"]
    assert labels[0]["class_id"] == ESPRESSO and labels[0]["label"] == "espresso"
    assert len(labels) == 3  # RECOGNIZER_DEFAULT_TOP_K=3, from the environment


def test_the_python_client_classifies_a_photo_and_sees_health(
    container: dict[str, str],
) -> None:
    with Client(container["grpc"]) as client:
        response = client.classify(PHOTOS["coffee"], top_k=1)
        assert response.labels[0].class_id == ESPRESSO
        assert response.labels[0].label == "浓缩咖啡"
        assert client.health("efficientnet-lite0") == "SERVING"
        (model,) = client.list_models().models
        assert model.name == "efficientnet-lite0"


def test_metrics_are_published(container: dict[str, str]) -> None:
    with urllib.request.urlopen(f"http://{container['metrics']}/metrics", timeout=10) as page:
        text = page.read().decode()
    assert re.search(
        r'recognizer_requests_total\{code="OK",model="efficientnet-lite0",transport="grpc"\}', text
    )


def test_podman_stop_drains_calls_in_flight_and_exits_zero(
    container: dict[str, str],
) -> None:
    codes: list[grpc.StatusCode] = []
    reasons: list[str] = []
    done = threading.Event()

    def steady_load() -> None:
        with Client(container["grpc"], timeout=30) as client:
            while not done.is_set():
                try:
                    client.classify(PHOTOS["cat"])
                    codes.append(grpc.StatusCode.OK)
                except grpc.RpcError as error:
                    codes.append(error.code())
                    if error.code() == grpc.StatusCode.UNAVAILABLE:
                        reasons.append(reason(error))
                        done.set()

    loader = threading.Thread(target=steady_load)
    loader.start()
    time.sleep(3)
    stopped = time.monotonic()
    podman("stop", "--time", "30", CONTAINER, timeout=60)
    stop_s = time.monotonic() - stopped
    done.set()
    loader.join(timeout=60)
    print(f"\npodman stop took {stop_s:.1f} s")
    assert codes.count(grpc.StatusCode.OK) > 0
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, codes
    assert podman("inspect", CONTAINER, "--format", "{{.State.ExitCode}}") == "0"
    # Refused while draining (with the reason), or after the port closed (no details).
    assert set(reasons) <= {"SHUTTING_DOWN", ""}, reasons
    log = logs()
    assert "draining" in log and "stopped" in log


def reason(error: grpc.RpcError) -> str:
    """The ErrorInfo reason of a failed call, or "" when it has none."""
    status = error_status(error)
    for detail in status.details if status else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return str(info.reason)
    return ""
