"""Generate the protobuf and gRPC stubs from proto/ whenever the package is built.

The stubs land in src/recognizer/v1/ (ignored by git), so editable installs,
wheels and `make proto` all use the same generator. Triton's inference protocol, vendored
in proto/triton/ (its README says why it is an include root of its own), is generated into
src/recognizer/v2/inference/ the same way, its imports made absolute. Run directly to
regenerate them, or with `--image FILE` to write the descriptor set `buf lint` reads (buf
cannot fetch google/rpc/status.proto from its registry on an offline machine, so it lints
this).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

ROOT = Path(__file__).parent
PROTO_ROOT = ROOT / "proto"
TRITON_ROOT = PROTO_ROOT / "triton"
# Names relative to their include root, as protoc and the descriptors know them.
PROTO_FILES = sorted(str(path.relative_to(PROTO_ROOT)) for path in PROTO_ROOT.rglob("*.proto"))
OWN_FILES = [name for name in PROTO_FILES if not name.startswith("triton/")]
TRITON_FILES = sorted(path.name for path in TRITON_ROOT.glob("*.proto"))
TRITON_PACKAGE = "recognizer.v2.inference"
# What protoc writes, relative to its output folder (not the __pycache__/*.pyc beside it).
GENERATED = (
    "recognizer/v1/*_pb2*.py",
    "recognizer/v1/*_pb2*.pyi",
    "recognizer/v2/inference/*_pb2*.py",
    "recognizer/v2/inference/*_pb2*.pyi",
)


def proto_include_paths() -> list[str]:
    """Our protos, grpc_tools' well-known types, and googleapis' google/rpc protos."""
    import google.rpc.status_pb2
    import grpc_tools

    googleapis = Path(google.rpc.status_pb2.__file__).parents[2]
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    return [str(PROTO_ROOT), str(well_known), str(googleapis)]


def run_protoc(files: list[str], *outputs: str) -> None:
    """Run grpc_tools.protoc on the named .proto files with the given output flags."""
    from grpc_tools import protoc

    args = [
        "grpc_tools.protoc",
        *(f"--proto_path={path}" for path in [*proto_include_paths(), str(TRITON_ROOT)]),
        *outputs,
        *files,
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")


def generate_stubs(out_dir: Path) -> list[Path]:
    """Write the Python message and gRPC stubs into out_dir; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    python = ("--python_out={}", "--pyi_out={}", "--grpc_python_out={}")
    run_protoc(OWN_FILES, *(flag.format(out_dir) for flag in python))
    triton = out_dir.joinpath(*TRITON_PACKAGE.split("."))
    triton.mkdir(parents=True, exist_ok=True)
    run_protoc(TRITON_FILES, *(flag.format(triton) for flag in python))
    _absolute_imports(triton)
    return sorted(path for pattern in GENERATED for path in out_dir.glob(pattern))


def _absolute_imports(folder: Path) -> None:
    """protoc's Python imports Triton's stubs as top-level modules (`import
    model_config_pb2`); ours live in TRITON_PACKAGE. Services-less files get no gRPC stub."""
    modules = "|".join(Path(name).stem + "_pb2" for name in TRITON_FILES)
    top_level = re.compile(rf"^import ({modules}) as (\w+)$", re.MULTILINE)
    for path in folder.glob("*_pb2*.py*"):
        text = path.read_text(encoding="utf-8")
        if path.name.endswith("_pb2_grpc.py") and "class " not in text:
            path.unlink()
            continue
        path.write_text(top_level.sub(rf"from {TRITON_PACKAGE} import \1 as \2", text))


def write_image(path: Path) -> None:
    """Write a descriptor set of our protos and their imports, with comments, for buf."""
    run_protoc(
        [*OWN_FILES, *TRITON_FILES],
        f"--descriptor_set_out={path}",
        "--include_imports",
        "--include_source_info",
    )


class ProtoStubsHook(BuildHookInterface):  # type: ignore[misc]
    """Hatch build hook: stubs are generated, never committed or edited by hand."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        generated = generate_stubs(ROOT / "src")
        build_data["artifacts"].extend(str(path.relative_to(ROOT)) for path in generated)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--image"]:
        write_image(Path(sys.argv[2]))
    else:
        for path in generate_stubs(ROOT / "src"):
            print(path.relative_to(ROOT))
