"""The deployment config: unique model names, and TOML config files."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from recognizer.config import Config, ServerSettings
from recognizer.config.models import ModelConfig, parse_model_flag
from recognizer.config.sources import read_config_file
from recognizer.errors import ConfigError

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
    assert models[0].location == tmp_path / "damo" / "cv_resnest101_general_recognition"
    assert models[1].path == "efficientnet-lite0" and models[1].max_batch_size == 8


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
    assert Config(models=(ModelConfig(path="a/model.pt", name="a"),)).models[0].name == "a"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"port": 70000}, "less than or equal to 65535"),
        ({"metrics_port": -1}, "greater than or equal to 0"),
        ({"max_message_mb": 2048}, "less than 2048"),
        ({"max_message_mb": 1e-9}, "less than a byte"),
        ({"grace_period": -1.0}, "greater than or equal to 0"),
        ({"grace_period": float("nan")}, "finite number"),
    ],
)
def test_server_settings_out_of_range_are_refused(
    settings: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        ServerSettings(**settings)  # type: ignore[arg-type]


def test_the_message_limit_is_given_to_grpc_in_bytes() -> None:
    assert ServerSettings(max_message_mb=0.5).max_message_bytes == 1 << 19
    assert ServerSettings(max_message_mb=2047.9).max_message_bytes < 1 << 31
