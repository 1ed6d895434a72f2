"""The TypeScript client package (clients/typescript): its locked dependencies install, buf
generates its stubs from proto/ (buf.gen.yaml), it compiles, and its example classifies
real photos against a real server, one call each and over a stream."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from support import PHOTOS, ServerThread, dev_tool, hatch_build

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "clients" / "typescript"


def run(command: list[str], cwd: Path, timeout: float = 300) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_typescript_client_builds_and_classifies(
    default_server: ServerThread, tmp_path: Path
) -> None:
    npm = shutil.which("npm")
    assert npm, "the TypeScript client needs Node 20 and npm"
    run([npm, "ci", "--no-audit", "--no-fund"], PACKAGE)
    image = tmp_path / "proto.binpb"
    hatch_build().write_image(image)
    shutil.rmtree(PACKAGE / "src" / "gen", ignore_errors=True)
    run([dev_tool("buf"), "generate", str(image), "--path", "recognizer/v1/recognizer.proto"], ROOT)
    assert (PACKAGE / "src" / "gen" / "recognizer" / "v1" / "recognizer_pb.ts").exists()
    run([npm, "run", "build"], PACKAGE)

    coffee, cat = PHOTOS["coffee"], PHOTOS["cat"]
    example = ["node", "dist/example.js", default_server.address, str(coffee), str(cat)]
    output = run([*example, "--language", "en"], PACKAGE)
    lines = output.splitlines()
    assert lines[0] == "models: efficientnet-lite0"
    assert lines[1].startswith(f"{coffee}: 967 espresso ")
    assert lines[3].startswith(f"stream {coffee}: 967 espresso ")
    assert len(lines) == 5
