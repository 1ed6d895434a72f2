"""A pinned SHA-256: the file's own, or start-up stops naming the file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from recognizer.errors import ModelLoadError
from recognizer.models.integrity import check_sha256, file_sha256


def test_the_digest_is_sha256sums(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07" * 300_000)
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()
    check_sha256(path, file_sha256(path), model="m")  # no error


def test_a_mismatch_or_an_unreadable_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"swapped")
    with pytest.raises(ModelLoadError, match=rf"model 'm': {path} has SHA-256 .*, not the 0000"):
        check_sha256(path, "0" * 64, model="m")
    with pytest.raises(ModelLoadError, match=r"model 'm': cannot read .*gone\.onnx"):
        check_sha256(tmp_path / "gone.onnx", "0" * 64, model="m")
