"""The contract: generated stubs match proto/, and the proto passes buf lint."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import recognizer.v1
from support import dev_tool

ROOT = Path(__file__).parents[1]


def _hatch_build():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("hatch_build", ROOT / "hatch_build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_stubs_match_the_proto(tmp_path: Path) -> None:
    fresh = _hatch_build().generate_stubs(tmp_path)
    installed = Path(recognizer.v1.__file__).parent
    assert fresh, "protoc generated nothing"
    for path in fresh:
        current = installed / path.relative_to(tmp_path / "recognizer" / "v1")
        assert current.exists(), f"{current.name} is missing: run `make proto`"
        assert current.read_bytes() == path.read_bytes(), (
            f"{current.name} is stale: run `make proto`"
        )


def test_the_proto_passes_buf_lint(tmp_path: Path) -> None:
    image = tmp_path / "proto.binpb"
    _hatch_build().write_image(image)
    result = subprocess.run(
        [dev_tool("buf"), "lint", str(image), "--path", "recognizer/v1/recognizer.proto"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
