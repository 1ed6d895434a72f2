"""The deployment config: unique model names, and TOML config files."""

from __future__ import annotations

from pathlib import Path

import pytest

from recognizer.config import Config, ServerSettings, read_config_file
from recognizer.errors import ConfigError
from recognizer.models.model_config import ModelConfig, parse_model_flag

CONFIG = """
port = 6000
max_batch_size = "auto"

[[models]]
name = "wanwu"
path = "damo/cv_resnest101_general_recognition"

[[models]]
path = "efficientnet-lite0"
max_batch_size = 8
"""


def test_a_config_file_has_settings_and_models_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "recognizer.toml").write_text(CONFIG, encoding="utf-8")
    settings, models = read_config_file(tmp_path / "recognizer.toml")
    assert settings == {"port": 6000, "max_batch_size": "auto"}
    assert [model.name for model in models] == ["wanwu", "efficientnet-lite0"]
    assert models[0].path == tmp_path / "damo" / "cv_resnest101_general_recognition"
    assert models[1].source == "efficientnet-lite0" and models[1].max_batch_size == 8


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port = ", "is not valid TOML"),
        ("models = 3", r"models must be tables, each headed \[\[models\]\]"),
        (
            '[[models]]\npath = "m.pt"\n[[models]]\nsize = 3',
            r"\[\[models\]\] #2: unknown key 'size'",
        ),
    ],
)
def test_bad_config_files_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "bad.toml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        read_config_file(tmp_path / "bad.toml")


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read config file .*none\.toml"):
        read_config_file(tmp_path / "none.toml")


def test_model_names_must_be_unique() -> None:
    with pytest.raises(ConfigError, match="more than one model is named 'model'"):
        Config(models=(parse_model_flag("a/model.pt"), parse_model_flag("b/model.onnx")))
    with pytest.raises(ConfigError, match="no model to serve"):
        Config(models=())
    assert Config(models=(ModelConfig(source="a/model.pt", name="a"),)).models[0].name == "a"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"port": 70000}, "port must be within 0-65535"),
        ({"metrics_port": -1}, "metrics_port must be within 0-65535"),
        ({"max_message_bytes": 1 << 31}, "max_message_bytes must be within"),
        ({"grace_period_s": -1.0}, "grace_period_s must not be negative"),
        ({"grace_period_s": float("nan")}, "grace_period_s must not be negative"),
    ],
)
def test_server_settings_out_of_range_are_refused(
    settings: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ServerSettings(**settings)  # type: ignore[arg-type]
