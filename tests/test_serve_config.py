"""Where `serve` settings come from: flags, then the environment, then the config file."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from recognizer.cli import build_parser
from recognizer.config import MiB
from recognizer.errors import ConfigError
from recognizer.models.model_config import ModelConfig
from recognizer.serve_config import serve_config


def serve_args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["serve", *argv])


SETTINGS_FILE = """
port = 7000
max_batch_size = 6
max_batch_delay_ms = 3
max_message_mb = 8
log_level = "debug"

[[models]]
name = "from-file"
path = "efficientnet-lite0"
"""


def test_flags_win_over_the_environment_which_wins_over_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "recognizer.toml").write_text(SETTINGS_FILE, encoding="utf-8")
    env = {
        "RECOGNIZER_CONFIG": str(tmp_path / "recognizer.toml"),
        "RECOGNIZER_MAX_BATCH_SIZE": "5",
        "RECOGNIZER_MAX_BATCH_DELAY_MS": "auto",
    }
    config = serve_config(serve_args("--max-batch-size", "4"), env)
    assert config.engine.max_batch_size == 4  # the flag
    assert config.engine.max_batch_delay_ms is None  # the environment's "auto"
    assert (config.server.port, config.server.max_message_bytes, config.log_level) == (
        7000,
        8 * MiB,
        "debug",
    )  # the file
    assert config.engine.inference_threads is None  # the default
    assert [model.name for model in config.models] == ["from-file"]
    env["RECOGNIZER_MODEL"] = "a=efficientnet-lite0; name=b,path=efficientnet-lite0"
    assert [model.name for model in serve_config(serve_args(), env).models] == ["a", "b"]
    flagged = serve_config(serve_args("--model", "c=efficientnet-lite0"), env)
    assert [model.name for model in flagged.models] == ["c"]


def test_an_explicit_auto_flag_overrides_a_configured_size(tmp_path: Path) -> None:
    (tmp_path / "recognizer.toml").write_text(SETTINGS_FILE, encoding="utf-8")
    args = serve_args("--config", str(tmp_path / "recognizer.toml"), "--max-batch-size", "auto")
    assert serve_config(args, {}).engine.max_batch_size is None


def test_with_no_model_named_anywhere_the_built_in_one_is_served() -> None:
    assert serve_config(serve_args(), {}).models == (ModelConfig(source="efficientnet-lite0"),)


@pytest.mark.parametrize(
    ("env", "file", "message"),
    [
        ({"RECOGNIZER_PORT": "http"}, "", "RECOGNIZER_PORT: expected int, not 'http'"),
        ({"RECOGNIZER_BACKEND": "tensorrt"}, "", "'tensorrt' is not one of auto, openvino, onnx"),
        (
            {},
            "prot = 1",
            "unknown setting 'prot'; the settings are backend, cache_entries, cache_mb, device",
        ),
        ({}, "port = true", "port: expected a number or a string, not True"),
        ({}, 'max_batch_size = "lots"', "max_batch_size: expected int, not 'lots'"),
        ({"RECOGNIZER_MODEL": "path=m.pt,colour=red"}, "", "unknown key 'colour'"),
    ],
)
def test_bad_settings_name_their_source(
    tmp_path: Path, env: dict[str, str], file: str, message: str
) -> None:
    (tmp_path / "recognizer.toml").write_text(file, encoding="utf-8")
    args = serve_args("--config", str(tmp_path / "recognizer.toml"))
    with pytest.raises(ConfigError, match=message):
        serve_config(args, env)


@pytest.mark.parametrize("size", ["inf", "nan", "0", "-1", "1e-9"])
def test_a_size_in_mib_must_be_finite_and_positive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], size: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        serve_args("--max-message-mb", size)
    assert exited.value.code == 2
    assert f"--max-message-mb: invalid positive float value: '{size}'" in capsys.readouterr().err
    with pytest.raises(
        ConfigError, match=f"RECOGNIZER_CACHE_MB: expected positive float, not '{size}'"
    ):
        serve_config(serve_args(), {"RECOGNIZER_CACHE_MB": size})
    (tmp_path / "recognizer.toml").write_text(f"max_message_mb = {size}", encoding="utf-8")
    with pytest.raises(ConfigError, match="max_message_mb: expected positive float"):
        serve_config(serve_args("--config", str(tmp_path / "recognizer.toml")), {})
    assert (
        serve_config(serve_args("--max-message-mb", "0.5"), {}).server.max_message_bytes == MiB // 2
    )
