"""The model cache's folder store: whole entries or none, keyed by content."""

from __future__ import annotations

from pathlib import Path

import pytest

from recognizer.engine.backends.store import ModelStore, cache_key
from recognizer.models.integrity import file_sha256


def test_an_entry_is_written_whole_and_read_back(tmp_path: Path) -> None:
    store = ModelStore(tmp_path / "cache")
    assert store.get("k") is None

    def write(folder: Path) -> dict[str, object]:
        (folder / "model.onnx").write_bytes(b"graph")
        return {"num_classes": 3}

    entry = store.put("k", write)
    assert entry.description == {"num_classes": 3}
    assert entry.path("model.onnx").read_bytes() == b"graph"
    assert store.get("k") == entry


def test_a_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)

    def fail(folder: Path) -> dict[str, object]:
        (folder / "model.onnx").write_bytes(b"half")
        raise RuntimeError("export failed")

    with pytest.raises(RuntimeError):
        store.put("k", fail)
    assert store.get("k") is None
    assert list(tmp_path.iterdir()) == []


def test_an_unreadable_entry_is_treated_as_missing(tmp_path: Path) -> None:
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "description.json").write_text("{not json")
    assert ModelStore(tmp_path).get("k") is None


def test_keys_follow_content_and_settings(tmp_path: Path) -> None:
    one, two = tmp_path / "a.bin", tmp_path / "b.bin"
    one.write_bytes(b"weights")
    two.write_bytes(b"weights")
    assert file_sha256(one) == file_sha256(two)
    two.write_bytes(b"other weights")
    assert file_sha256(one) != file_sha256(two)
    assert cache_key({"precision": "fp32"}) == cache_key({"precision": "fp32"})
    assert cache_key({"precision": "fp32"}) != cache_key({"precision": "int8"})


def test_a_cache_that_cannot_be_written_still_prepares_into_the_fallback(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    store = ModelStore(blocked / "cache", fallback=tmp_path / "scratch")
    entry = store.put("k", lambda folder: {"num_classes": 3})
    assert entry.folder == tmp_path / "scratch" / "k"
    assert store.get("k") is None
