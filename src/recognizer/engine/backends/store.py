"""The model cache: what a cold start prepares for the CPU, kept on disk for the next start.

A model that a graph backend serves (OpenVINO or ONNX Runtime) is prepared once: loaded
with PyTorch, exported to ONNX with normalisation folded in and checked against PyTorch,
and for int8 quantised by NNCF and compared with fp32 on held-out images. The result is
kept in a folder named by a key: a digest of the model's file, of every setting that
changes the result, and of the versions of what made it. A later start with the same key
reads the folder and serves without importing PyTorch at all, which is what makes it start
in about a second and hold a fraction of the memory. Entries are written into a temporary
folder and renamed into place, so a crash never leaves half an entry; the whole cache is
safe to delete, and an entry that cannot be read is prepared again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

FORMAT = 2  # bump when what an entry holds, or how it is made, changes
DESCRIPTION = "description.json"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    """One prepared model on disk: its folder and what it says about the model."""

    folder: Path
    description: Mapping[str, Any]

    def path(self, name: str) -> Path:
        return self.folder / name


class ModelStore:
    """Prepared models under `root`, one folder per key; new entries go to `fallback` when
    `root` cannot be written."""

    def __init__(self, root: Path, *, fallback: Path | None = None) -> None:
        self.root = root
        self.fallback = fallback

    def get(self, key: str) -> Entry | None:
        """The entry for `key`, or None if there is none or it cannot be read."""
        folder = self.root / key
        try:
            description = json.loads((folder / DESCRIPTION).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            logger.warning("ignoring unreadable model cache entry %s: %s", folder, error)
            return None
        if not isinstance(description, dict):
            return None
        return Entry(folder, description)

    def put(self, key: str, write: Callable[[Path], Mapping[str, Any]]) -> Entry:
        """Make the entry for `key`: `write(folder)` fills a fresh folder and returns the
        description, and the folder then takes its place at once."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=self.root))
        except OSError as error:
            if self.fallback is None or self.fallback == self.root:
                raise
            logger.warning(
                "cannot write the model cache %s (%s); preparing without it", self.root, error
            )
            return ModelStore(self.fallback).put(key, write)
        try:
            description = dict(write(scratch))
            (scratch / DESCRIPTION).write_text(json.dumps(description, indent=2), "utf-8")
            final = self.root / key
            try:
                os.replace(scratch, final)
            except OSError:  # another process made it first: theirs is as good
                shutil.rmtree(scratch, ignore_errors=True)
            return self.get(key) or Entry(final, description)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise


def cache_key(parts: Mapping[str, Any]) -> str:
    """A short, stable key from everything that decides an entry's content."""
    text = json.dumps({"format": FORMAT, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def versions(*packages: str) -> dict[str, str | None]:
    """The installed versions of the packages that made an entry, without importing them."""
    found: dict[str, str | None] = {}
    for package in packages:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found
