"""The open-file limit, raised at start-up, and the connections each port may hold within it:
in a child process, whose limits the test may lower."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).parents[1] / "src"

CHILD = """
import logging, resource
from recognizer import open_files
logging.basicConfig(level=logging.WARNING)
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (300, hard))
cap = open_files.connections_per_port(100, 2)
print(cap, resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard)
resource.setrlimit(resource.RLIMIT_NOFILE, (300, 756))  # a hard limit too low for the ports
print(open_files.connections_per_port(4096, 2), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def test_the_soft_limit_is_raised_and_each_port_keeps_within_its_share() -> None:
    child = subprocess.run(
        [sys.executable, "-c", CHILD],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        check=True,
    )
    assert child.stdout.split() == ["100", "True", "250", "756"]  # (756 - 256) // 2 a port
    assert "--max-connections 4096 does not fit the open-file limit of 756" in child.stderr
