"""Generate the protobuf and gRPC stubs from proto/ whenever the package is built.

The stubs land in src/recognizer/v1/ (ignored by git), so editable installs,
wheels and `make proto` all use the same generator. Run directly to regenerate them,
or with `--image FILE` to write the descriptor set `buf lint` reads (buf cannot fetch
google/rpc/status.proto from its registry on an offline machine, so it lints this).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

ROOT = Path(__file__).parent
PROTO_ROOT = ROOT / "proto"
PROTO_FILES = sorted(PROTO_ROOT.rglob("*.proto"))
# What protoc writes, relative to its output folder (not the __pycache__/*.pyc beside it).
GENERATED = ("recognizer/v1/*_pb2*.py", "recognizer/v1/*_pb2*.pyi")


def proto_include_paths() -> list[str]:
    """Our protos, grpc_tools' well-known types, and googleapis' google/rpc protos."""
    import google.rpc.status_pb2
    import grpc_tools

    googleapis = Path(google.rpc.status_pb2.__file__).parents[2]
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    return [str(PROTO_ROOT), str(well_known), str(googleapis)]


def run_protoc(*outputs: str) -> None:
    """Run grpc_tools.protoc on every .proto file with the given output flags."""
    from grpc_tools import protoc

    args = [
        "grpc_tools.protoc",
        *(f"--proto_path={path}" for path in proto_include_paths()),
        *outputs,
        *(str(path) for path in PROTO_FILES),
    ]
    if protoc.main(args) != 0:
        raise RuntimeError(f"protoc failed: {' '.join(args)}")


def generate_stubs(out_dir: Path) -> list[Path]:
    """Write the Python message and gRPC stubs into out_dir; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    run_protoc(f"--python_out={out_dir}", f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}")
    return sorted(path for pattern in GENERATED for path in out_dir.glob(pattern))


def write_image(path: Path) -> None:
    """Write a descriptor set of our protos and their imports, with comments, for buf."""
    run_protoc(f"--descriptor_set_out={path}", "--include_imports", "--include_source_info")


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
