"""Where `serve` settings come from: flags, then the environment, then the config file."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from recognizer.cli.main import build_parser
from recognizer.config.models import ModelConfig
from recognizer.config.schema import SECTIONS, MiB
from recognizer.config.sources import env, flag, load_config
from recognizer.errors import ConfigError


def serve_args(*argv: str) -> dict[str, object]:
    return vars(build_parser().parse_args(["serve", *argv]))


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
    environ = {
        "RECOGNIZER_CONFIG": str(tmp_path / "recognizer.toml"),
        "RECOGNIZER_MAX_BATCH_SIZE": "5",
        "RECOGNIZER_MAX_BATCH_DELAY_MS": "auto",
    }
    config = load_config(serve_args("--max-batch-size", "4"), environ)
    assert config.engine.max_batch_size == 4  # the flag
    assert config.engine.max_batch_delay_ms is None  # the environment's "auto"
    assert (config.server.port, config.server.max_message_bytes, config.log.log_level) == (
        7000,
        8 * MiB,
        "debug",
    )  # the file
    assert config.engine.inference_workers is None  # the default
    assert [model.name for model in config.models] == ["from-file"]
    environ["RECOGNIZER_MODEL"] = "a=efficientnet-lite0; name=b,path=efficientnet-lite0"
    assert [model.name for model in load_config(serve_args(), environ).models] == ["a", "b"]
    flagged = load_config(serve_args("--model", "c=efficientnet-lite0"), environ)
    assert [model.name for model in flagged.models] == ["c"]


def test_an_explicit_auto_flag_overrides_a_configured_size(tmp_path: Path) -> None:
    (tmp_path / "recognizer.toml").write_text(SETTINGS_FILE, encoding="utf-8")
    args = serve_args("--config", str(tmp_path / "recognizer.toml"), "--max-batch-size", "auto")
    assert load_config(args, {}).engine.max_batch_size is None


def test_with_no_model_named_anywhere_the_built_in_one_is_served() -> None:
    assert load_config(serve_args(), {}).models == (ModelConfig(path="efficientnet-lite0"),)


def test_every_setting_has_a_flag_a_variable_and_help() -> None:
    help_text = build_parser()._subparsers._group_actions[0].choices["serve"].format_help()  # type: ignore[union-attr]
    for section in SECTIONS:
        for key, field in section.model_fields.items():
            assert field.description, key
            assert flag(key) in help_text and env(key) in help_text, key


@pytest.mark.parametrize(
    ("argv", "environ", "file", "message"),
    [
        (("--port", "70000"), {}, "", "--port: input should be less than or equal to 65535"),
        ((), {"RECOGNIZER_PORT": "http"}, "", "RECOGNIZER_PORT: input should be a valid integer"),
        ((), {}, "port = -1", "recognizer.toml: port: input should be greater than or equal to 0"),
        (
            (),
            {"RECOGNIZER_BACKEND": "tensorrt"},
            "",
            "RECOGNIZER_BACKEND: input should be 'auto', 'openvino', 'onnxruntime' or 'torch'",
        ),
        (
            (),
            {},
            "prot = 1",
            "unknown setting 'prot'; the settings are access_log, access_log_sample, admin, allow_",
        ),
        ((), {}, "port = true", "recognizer.toml: port: expected a number or text, not true"),
        (
            (),
            {},
            'max_batch_size = "lots"',
            "recognizer.toml: max_batch_size: input should be a valid integer",
        ),
        (("--max-batch-size", "0"), {}, "", "--max-batch-size: input should be greater than"),
        ((), {"RECOGNIZER_MODEL": "path=m.pt,colour=red"}, "", "unknown key 'colour'"),
        (("--log-level", "loud"), {}, "", "--log-level: input should be 'debug', 'info'"),
        (("--reflection", "maybe"), {}, "", "--reflection: input should be a valid boolean"),
        (("--tls-cert", "server.pem"), {}, "", "--tls-cert and --tls-key go together"),
        ((), {"RECOGNIZER_TLS_CLIENT_CA": "ca.pem"}, "", "--tls-client-ca (mTLS) needs TLS"),
        (("--tenant-from-cert",), {}, "", "--tenant-from-cert needs --tls-client-ca"),
    ],
)
def test_bad_settings_name_their_source(
    tmp_path: Path, argv: tuple[str, ...], environ: dict[str, str], file: str, message: str
) -> None:
    (tmp_path / "recognizer.toml").write_text(file, encoding="utf-8")
    args = serve_args("--config", str(tmp_path / "recognizer.toml"), *argv)
    with pytest.raises(ConfigError) as raised:
        load_config(args, environ)
    assert message in str(raised.value)


@pytest.mark.parametrize("size", ["inf", "nan", "0", "-1", "1e-9"])
def test_a_size_in_mib_must_be_finite_and_above_a_byte(tmp_path: Path, size: str) -> None:
    with pytest.raises(ConfigError, match="--max-message-mb: "):
        load_config(serve_args("--max-message-mb", size), {})
    with pytest.raises(ConfigError, match="RECOGNIZER_CACHE_MB: "):
        load_config(serve_args(), {"RECOGNIZER_CACHE_MB": size})
    (tmp_path / "recognizer.toml").write_text(f"max_message_mb = {size}", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"recognizer\.toml: max_message_mb: "):
        load_config(serve_args("--config", str(tmp_path / "recognizer.toml")), {})
    config = load_config(serve_args("--max-message-mb", "0.5"), {})
    assert config.server.max_message_bytes == MiB // 2


def test_an_unknown_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["serve", "--port", "4", "--colour", "red"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --colour red" in capsys.readouterr().err
    assert isinstance(build_parser().parse_args(["serve"]), argparse.Namespace)


def test_switches_stand_alone_or_say_on_or_off(tmp_path: Path) -> None:
    config = load_config(serve_args("--allow-code-models", "--reflection", "off"), {})
    assert config.security.allow_code_models and not config.server.reflection
    assert not load_config(serve_args(), {}).security.allow_code_models
    assert load_config(serve_args(), {}).server.reflection
    environ = {"RECOGNIZER_PUBLIC_HEALTH": "off", "RECOGNIZER_PUBLIC_REFLECTION": "true"}
    security = load_config(serve_args(), environ).security
    assert (security.public_health, security.public_reflection) == (False, True)
    (tmp_path / "recognizer.toml").write_text("reflection = false", encoding="utf-8")
    config = load_config(serve_args("--config", str(tmp_path / "recognizer.toml")), {})
    assert not config.server.reflection


def test_files_named_in_the_config_file_are_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "recognizer.toml").write_text(
        'tls_cert = "tls/server.pem"\ntls_key = "/etc/keys/server.key"\ntokens_file = "tokens"\n',
        encoding="utf-8",
    )
    config = load_config(serve_args("--config", str(tmp_path / "recognizer.toml")), {})
    assert config.security.tls_cert == tmp_path / "tls" / "server.pem"
    assert config.security.tls_key == Path("/etc/keys/server.key")
    assert config.security.tokens_file == tmp_path / "tokens"
    flagged = load_config(serve_args("--tokens-file", "here/tokens"), {})
    assert flagged.security.tokens_file == Path("here/tokens")  # from the working directory
    assert flagged.security.auth and not flagged.security.tls
