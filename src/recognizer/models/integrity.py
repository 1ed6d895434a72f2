"""A model file's SHA-256, checked against the one its configuration pins, before loading.

A pinned digest makes sure the bytes served are the bytes meant: a file swapped, truncated
or corrupted on its way to the server stops start-up instead of being loaded.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from recognizer.errors import ModelLoadError


def file_sha256(path: Path) -> str:
    """The file's SHA-256 in hex, read in chunks (checkpoints run to gigabytes); computed
    once per version of the file, as the pin check and the model cache's key both need it."""
    stat = path.stat()
    return _sha256(path.resolve(), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256(path: Path, size: int, modified_ns: int) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def check_sha256(path: Path, expected: str, *, model: str) -> None:
    """Refuse to go on unless the file's SHA-256 is `expected` (lower-case hex)."""
    try:
        actual = file_sha256(path)
    except OSError as error:
        raise ModelLoadError(f"model {model!r}: cannot read {path}: {error.strerror}") from error
    if actual != expected:
        raise ModelLoadError(
            f"model {model!r}: {path} has SHA-256 {actual}, not the {expected} that sha256="
            " pins; it is not the file meant (changed, replaced or corrupt), so it is not loaded"
        )
