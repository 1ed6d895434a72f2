"""Model repositories: numbered version directories and the policy that picks among them."""

from __future__ import annotations

from pathlib import Path

import pytest

from recognizer.config.models import ModelConfig
from recognizer.errors import ConfigError, ModelLoadError
from recognizer.models.repository import (
    fingerprint,
    is_repository,
    select_versions,
    versions_of,
)


def repository(root: Path, *versions: int) -> ModelConfig:
    for version in versions:
        (root / str(version)).mkdir(parents=True)
        (root / str(version) / "model.onnx").write_bytes(b"graph")
    return ModelConfig.from_keys({"path": str(root), "name": "cats"}, where="test")


@pytest.mark.parametrize(
    ("policy", "kept"),
    [("latest", [5]), ("latest:2", [5, 3]), ("all", [5, 3, 1]), ("1:5:9", [5, 1])],
)
def test_a_policy_keeps_the_versions_it_names(policy: str, kept: list[int]) -> None:
    assert select_versions([5, 3, 1], policy) == kept


def test_each_version_is_its_directorys_model_file(tmp_path: Path) -> None:
    config = repository(tmp_path / "cats", 1, 2, 10).model_copy(update={"versions": "latest:2"})
    (tmp_path / "cats" / "11").mkdir()  # unfinished: no model file yet
    assert is_repository(config)
    versions = versions_of(config)
    assert list(versions) == [10, 2]
    assert versions[10].location == tmp_path / "cats" / "10" / "model.onnx"
    assert versions[10].version == 10 and versions[10].name == "cats"


def test_a_file_is_one_version_counted_from_the_next_number(tmp_path: Path) -> None:
    (tmp_path / "cats.onnx").write_bytes(b"graph")
    config = ModelConfig.from_keys({"path": str(tmp_path / "cats.onnx")}, where="test")
    assert not is_repository(config)
    assert list(versions_of(config, next_version=4)) == [4]
    assert list(versions_of(config.model_copy(update={"version": 2}), next_version=4)) == [2]


def test_a_version_with_two_model_files_or_none_kept_is_refused(tmp_path: Path) -> None:
    config = repository(tmp_path / "cats", 1)
    (tmp_path / "cats" / "1" / "other.onnx").write_bytes(b"graph")
    with pytest.raises(ModelLoadError, match="more than one model file"):
        versions_of(config)
    with pytest.raises(ModelLoadError, match="no version that versions=7 serves"):
        versions_of(repository(tmp_path / "dogs", 1).model_copy(update={"versions": "7"}))


def test_a_bad_policy_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="versions is latest, latest:N, all"):
        ModelConfig.from_keys({"path": "m.onnx", "versions": "newest"}, where="test")


def test_the_fingerprint_changes_with_the_files(tmp_path: Path) -> None:
    config = repository(tmp_path / "cats", 1)
    before = fingerprint(config)
    (tmp_path / "cats" / "2").mkdir()
    (tmp_path / "cats" / "2" / "model.onnx").write_bytes(b"graph 2")
    assert fingerprint(config) != before
    assert fingerprint(ModelConfig.from_keys({"path": "efficientnet-lite0"}, where="t")) == ()
