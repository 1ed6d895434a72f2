"""The README's curl examples, run as written (only the address changed) against a real server."""

from __future__ import annotations

import io
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from support import ESPRESSO, PHOTOS, ServerThread

README = Path(__file__).parents[2] / "README.md"


def readme_commands() -> list[str]:
    """The commands of the sh block under "### curl", continuation lines joined."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### curl") :]
    block = section[section.index("```sh\n") + 6 : section.index("```\n", 6)]
    return [command for command in block.replace("\\\n", "").splitlines() if command.strip()]


COMMANDS = readme_commands()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding photo.jpg, a cup of espresso."""
    folder = tmp_path_factory.mktemp("curl")
    buffer = io.BytesIO()
    Image.open(PHOTOS["coffee"]).convert("RGB").save(buffer, "JPEG", quality=90)
    (folder / "photo.jpg").write_bytes(buffer.getvalue())
    return folder


def test_the_readme_has_curl_examples_for_each_way_to_send_an_image() -> None:
    assert len(COMMANDS) >= 5
    assert any("--data-binary @photo.jpg" in c for c in COMMANDS)
    assert any("-F image=@photo.jpg" in c for c in COMMANDS)
    assert any("application/json" in c for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_a_readme_curl_example_works_as_written(
    default_server: ServerThread, folder: Path, command: str
) -> None:
    address = default_server.http_url.removeprefix("http://")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command.replace("localhost:8080", address)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=folder,
    )
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    path = re.search(r"localhost:8080(/[\w/]+)", command)
    assert path
    match path.group(1):
        case "/v1/classify":
            top_k = int(m.group(1)) if (m := re.search(r"top_k\W+(\d+)", command)) else 5
            assert len(answer["labels"]) == top_k
            assert answer["labels"][0]["class_id"] == ESPRESSO
            english = re.search(r"language\W+en", command)
            assert answer["labels"][0]["label"] == ("espresso" if english else "浓缩咖啡")
        case "/v1/models":
            assert answer["models"][0]["name"] == "efficientnet-lite0"
        case "/readyz":
            assert answer["status"] == "SERVING"
        case other:
            pytest.fail(f"no check for {other}")
