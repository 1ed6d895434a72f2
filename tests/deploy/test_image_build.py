"""deploy/image/build.py: the podman command line it builds, without running podman."""

from __future__ import annotations

import importlib.util
import itertools
import resource
from pathlib import Path
from types import ModuleType

import pytest

BUILD = Path(__file__).parents[2] / "deploy" / "image" / "build.py"


@pytest.fixture(scope="module")
def build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_image_build", BUILD)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_plain_build_is_podman_build_of_the_checkout(build: ModuleType) -> None:
    command = build.build_command("recognizer", "gpu", ["A=1"], local=False)
    assert command == [
        "podman", "build", "--format", "docker", "--tag", "recognizer", "--target", "gpu",
        "--build-arg", "A=1", str(build.ROOT),
    ]  # fmt: skip


def test_ulimits_stay_under_the_callers_hard_limits(build: ModuleType) -> None:
    flags = build.ulimit_flags()
    values = dict(flag.split("=") for flag in flags[1::2])
    for name, limit in (("nofile", resource.RLIMIT_NOFILE), ("nproc", resource.RLIMIT_NPROC)):
        soft, hard = (int(value) for value in values[name].split(":"))
        ours = resource.getrlimit(limit)[1]
        assert soft == hard
        assert ours == resource.RLIM_INFINITY or hard <= ours


def test_the_machines_pip_settings_are_passed_with_the_paths_they_need(
    build: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("torch<=2.14.1\n")
    cert = tmp_path / "ca.pem"
    cert.write_text("stand-in\n")
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv(
        "PIP_EXTRA_INDEX_URL", f"file://{tmp_path}/mirror/simple https://x.test/simple"
    )
    monkeypatch.setenv("PIP_CONSTRAINT", str(constraints))
    monkeypatch.setenv("PIP_CERT", str(cert))
    monkeypatch.setattr(build, "ulimit_flags", lambda: [])
    command = build.build_command("t", "cpu", [], local=True)
    pairs = list(itertools.pairwise(command))
    assert ("--build-arg", f"PIP_FIND_LINKS={wheels}") in pairs
    assert ("--build-arg", f"PIP_CONSTRAINT={constraints}") in pairs
    assert ("--volume", f"{wheels}:{wheels}:ro") in pairs
    assert ("--volume", f"{constraints}:{constraints}:ro") in pairs
    # An index's pages link to the files beside them: the folder above is mounted.
    assert ("--volume", f"{tmp_path}/mirror:{tmp_path}/mirror:ro") in pairs
    assert ("--secret", f"id=pip-cert,src={cert}") in pairs
    assert ("--build-arg", f"BASE={build.LOCAL_BASE}") in pairs
    volumes = [value for flag, value in pairs if flag == "--volume"]
    assert len(volumes) == 3  # nothing for the index that is not on this machine
