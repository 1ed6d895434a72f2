"""The contract: generated stubs match proto/, the proto passes buf lint, and it keeps the
released contract (buf breaking)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from grpc_tools import protoc

import recognizer
from support import dev_tool, hatch_build

ROOT = Path(__file__).parents[1]
PROTO = Path("recognizer/v1/recognizer.proto")
# recognizer.v1 as released; proto/breaking/README.md says how it was made and when to update it.
RELEASED = ROOT / "proto" / "breaking" / "recognizer-v1.binpb"


def test_generated_stubs_match_the_proto(tmp_path: Path) -> None:
    fresh = hatch_build().generate_stubs(tmp_path)
    installed = Path(recognizer.__file__).parents[1]
    assert {path.parent.name for path in fresh} == {"v1", "inference"}, "protoc generated nothing"
    for path in fresh:
        current = installed / path.relative_to(tmp_path)
        assert current.exists(), f"{current.name} is missing: run `make proto`"
        assert current.read_bytes() == path.read_bytes(), (
            f"{current.name} is stale: run `make proto`"
        )


def test_the_proto_passes_buf_lint(tmp_path: Path) -> None:
    image = tmp_path / "proto.binpb"
    hatch_build().write_image(image)
    result = subprocess.run(
        [dev_tool("buf"), "lint", str(image), "--path", "recognizer/v1/recognizer.proto"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _buf_breaking(image: Path) -> subprocess.CompletedProcess[str]:
    """buf breaking on our files (not the imports) with buf.yaml's rules: FILE, not WIRE_JSON.

    The Python stubs are a published API: a renamed field (an attribute) or a message moved to
    another file (a module) breaks their users even where the wire and JSON (grpcurl) encodings
    survive. FILE catches those and checks the encodings too.
    """
    return subprocess.run(
        [
            dev_tool("buf"),
            "breaking",
            str(image),
            "--against",
            str(RELEASED),
            "--path",
            "recognizer",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )


def test_the_proto_keeps_the_released_contract(tmp_path: Path) -> None:
    image = tmp_path / "proto.binpb"
    hatch_build().write_image(image)
    result = _buf_breaking(image)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    "change",
    ["uint32 top_k = 15;", "uint32 max_labels = 2;"],
    ids=["renumbered", "renamed"],
)
def test_buf_breaking_fails_a_changed_field(tmp_path: Path, change: str) -> None:
    source = (ROOT / "proto" / PROTO).read_text()
    assert source.count("uint32 top_k = 2;") == 1
    changed = tmp_path / "proto" / PROTO
    changed.parent.mkdir(parents=True)
    changed.write_text(source.replace("uint32 top_k = 2;", change))
    build = hatch_build()
    includes = [tmp_path / "proto"] + [
        path for path in build.proto_include_paths() if path != str(build.PROTO_ROOT)
    ]
    image = tmp_path / "changed.binpb"
    args = [
        "grpc_tools.protoc",
        *(f"--proto_path={path}" for path in includes),
        f"--descriptor_set_out={image}",
        "--include_imports",
        "--include_source_info",
        str(changed),
    ]
    assert protoc.main(args) == 0

    result = _buf_breaking(image)
    assert result.returncode != 0, "buf breaking let the change through"
    assert '"top_k"' in result.stdout, result.stdout + result.stderr
