"""The command blocks of README.md and docs/*.md, and which test runs each.

A block is named by its page, the heading it sits under (backticks dropped) and its place
among that heading's command blocks (0 for the first). Blocks fenced ```sh are run by a
test, which reads them with `command_block` or `commands`; blocks fenced ```sh elsewhere
need what this machine lacks, and their pages say so. tests/test_docs.py checks that the
two registries below name every command block of the pages and nothing else, and that
each test named here reads its block from the page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[1]
COMMAND_LANGUAGES = {"sh", "bash", "shell", "console", "zsh"}
ELSEWHERE = "elsewhere"

Key = tuple[str, str, int]

# (page, heading, n) -> the test that runs that block as written (only addresses changed).
RUN: dict[Key, str] = {
    ("README.md", "Quick start", 0): "tests/test_docs.py::test_the_quick_start_serves_and_tests",
    ("README.md", "The command line", 0): "tests/test_docs.py::test_recognizer_classify_works",
    ("README.md", "grpcurl", 0): "tests/transport/test_grpcurl.py::test_the_readme_commands_work",
    (
        "README.md",
        "curl",
        0,
    ): "tests/http/test_curl.py::test_a_readme_curl_example_works_as_written",
    ("docs/triton.md", "perf_analyzer", 0): "tests/test_docs.py::test_perf_analyzer_runs",
    (
        "docs/streaming.md",
        "recognizer stream",
        0,
    ): "tests/test_docs.py::test_recognizer_stream_runs",
    ("docs/streaming.md", "With grpcurl", 0): "tests/test_docs.py::test_a_stream_over_grpcurl",
    ("docs/models.md", "--model", 0): (
        "tests/test_docs.py::test_the_model_flags_configure_their_models"
    ),
    ("docs/models.md", "万物识别 (ModelScope general recognition)", 0): (
        "tests/test_docs.py::test_wanwu_serves_and_classifies"
    ),
    ("docs/operating.md", "Measuring it", 0): "tests/test_docs.py::test_recognizer_bench_measures",
    ("docs/security.md", "Certificates", 0): (
        "tests/test_running_securely.py::test_the_tls_and_token_setup_works_as_written"
    ),
    ("docs/security.md", "TLS and tokens", 0): (
        "tests/test_running_securely.py::test_the_tls_and_token_setup_works_as_written"
    ),
    ("docs/security.md", "TLS and tokens", 1): (
        "tests/test_running_securely.py::test_the_tls_and_token_setup_works_as_written"
    ),
    ("docs/security.md", "TLS and tokens", 2): (
        "tests/http/test_curl.py::test_a_readme_curl_example_over_tls_with_a_token_works_as_written"
    ),
    ("docs/security.md", "TLS and tokens", 3): (
        "tests/test_running_securely.py::test_the_tls_and_token_setup_works_as_written"
    ),
    ("docs/security.md", "mTLS", 0): "tests/test_running_securely.py::test_mtls_works_as_written",
    ("docs/security.md", "mTLS", 1): (
        "tests/http/test_curl.py::test_a_readme_curl_example_over_mtls_works_as_written"
    ),
}

# (page, heading, n) -> why no test runs it here (the page says so beside the block).
NOT_RUN: dict[Key, str] = {
    ("README.md", "On a CPU-only machine", 0): "installs from PyTorch's index, over the network",
    ("docs/clients.md", "Other languages", 0): "needs Go's protoc-gen-go and protoc-gen-go-grpc",
    ("docs/streaming.md", "recognizer stream", 1): "needs a camera",
    ("docs/tracing.md", "Turning it on", 0): "installs from the package index, over the network",
    ("docs/tracing.md", "Turning it on", 1): "needs a collector at otel-collector:4317",
    ("docs/development.md", "Development", 0): (
        "the whole suite and the lint (CI runs `make ci`), and podman for `make image-test`"
    ),
}


@dataclass(frozen=True)
class Block:
    page: str
    heading: str
    index: int
    info: str
    text: str

    @property
    def key(self) -> Key:
        return (self.page, self.heading, self.index)


def pages() -> list[str]:
    """README.md and every page of docs/, as paths relative to the checkout."""
    return ["README.md", *(f"docs/{p.name}" for p in sorted((ROOT / "docs").glob("*.md")))]


def fenced_blocks(page: str) -> list[Block]:
    """Every fenced block of a page, with the heading it sits under; `index` counts the
    command blocks under that heading (-1 for other blocks)."""
    found: list[Block] = []
    heading, counts = "", dict[str, int]()
    info: str | None = None
    body: list[str] = []
    for line in (ROOT / page).read_text(encoding="utf-8").splitlines():
        if info is None:
            if line.startswith("```"):
                info, body = line[3:].strip(), []
            elif match := re.match(r"#{1,6} (.*)", line):
                heading = match.group(1).replace("`", "").strip()
        elif line.startswith("```"):
            index = -1
            if info.split(" ")[0] in COMMAND_LANGUAGES:
                index = counts.get(heading, 0)
                counts[heading] = index + 1
            found.append(Block(page, heading, index, info, "\n".join(body) + "\n"))
            info = None
        else:
            body.append(line)
    assert info is None, f"{page}: a fence is not closed"
    return found


def command_blocks(page: str) -> list[Block]:
    return [block for block in fenced_blocks(page) if block.index >= 0]


def command_block(page: str, heading: str, index: int = 0) -> str:
    """The text of a ```sh block: the `index`th command block under `heading` of `page`."""
    for block in command_blocks(page):
        if block.key == (page, heading, index):
            assert block.info == "sh", f"{block.key} is fenced {block.info!r}, not run here"
            return block.text
    raise AssertionError(f"{page} has no command block {index} under {heading!r}")


def commands(page: str, heading: str, index: int = 0) -> list[str]:
    """A block's commands, one a line: continuation lines joined, blank lines dropped."""
    text = command_block(page, heading, index).replace("\\\n", "")
    return [line for line in text.splitlines() if line.strip()]
