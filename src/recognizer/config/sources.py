"""Where `serve` settings come from: flags, then environment variables, then a TOML file.

Each setting in schema.py is taken from, first to last: its flag (--max-batch-size); the
environment variable named after it (RECOGNIZER_MAX_BATCH_SIZE); the TOML file named by
--config or RECOGNIZER_CONFIG, whose keys are the settings' names (max_batch_size = 8)
beside [[models]] tables; and its default. Models come from --model (repeatable), else
RECOGNIZER_MODEL (models separated by ";"), else the file's [[models]], else the built-in
default. A bad value is a ConfigError that names the flag, the variable, or the file and
key it came from.

pydantic validates; pydantic-settings is not used, because it merges its sources before
validating, so its errors cannot say which of them gave the bad value, and its command
line parser would replace our subcommands' argparse.
"""

from __future__ import annotations

import argparse
import tomllib
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic.fields import FieldInfo

from recognizer.config import Config
from recognizer.config.models import KEYS, ModelConfig, parse_model_flag
from recognizer.config.schema import SECTIONS, Settings
from recognizer.config.validation import config_error, refuse_bools
from recognizer.errors import ConfigError

ENV_PREFIX = "RECOGNIZER_"
MODEL_SEPARATOR = ";"  # between models in RECOGNIZER_MODEL; commas are within one
DEFAULT_MODEL = "efficientnet-lite0"  # the built-in model, models/loading.py


def flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def env(key: str) -> str:
    return ENV_PREFIX + key.upper()


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The `serve` flags, from the schema; unset ones stay out of the namespace."""
    parser.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        metavar="FILE",
        help=f"TOML file of settings and [[models]] tables (env {env('config')})",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=argparse.SUPPRESS,
        metavar="MODEL",
        help="model to serve, repeatable, the first being the default: a built-in name, a"
        " file or directory, NAME=SOURCE, or key=value pairs such as"
        f" name=seed,path=model.pt,labels.zh=labels_zh.txt,crop=224 (keys: {', '.join(KEYS)};"
        f" default: the built-in {DEFAULT_MODEL}; env {env('model')}, models separated"
        f" by {MODEL_SEPARATOR!r})",
    )
    for section in SECTIONS:
        for key, field in section.model_fields.items():
            # A switch may stand alone (--allow-code-models) or say on or off (--reflection off).
            switch = {"nargs": "?", "const": "on"} if field.annotation is bool else {}
            parser.add_argument(
                flag(key),
                dest=key,
                default=argparse.SUPPRESS,
                metavar=_metavar(field),
                help=f"{field.description} (default: {_shown(field)}; env {env(key)})",
                **switch,  # type: ignore[arg-type]
            )


def load_config(flags: Mapping[str, Any], environ: Mapping[str, str]) -> Config:
    """The configuration `serve` runs with: flags, then environment, then file, then defaults."""
    config_file = flags.get("config") or environ.get(env("config"))
    in_file, file_models = read_config_file(Path(config_file)) if config_file else ({}, ())
    known = {key for section in SECTIONS for key in section.model_fields}
    unknown = sorted(set(in_file) - known)
    if unknown:
        raise ConfigError(
            f"{config_file}: unknown setting {unknown[0]!r}; the settings are"
            f" {', '.join(sorted(known))}, and [[models]] tables"
        )
    sections = {
        section: _section(section, flags, environ, in_file, str(config_file))
        for section in SECTIONS
    }
    return Config(models=_models(flags, environ, file_models), **_by_name(sections))


def _section(
    section: type[Settings],
    flags: Mapping[str, Any],
    environ: Mapping[str, str],
    in_file: Mapping[str, Any],
    config_file: str,
) -> Settings:
    """One section's settings, each from the first source that gives it."""
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for key in section.model_fields:
        if key in flags:
            values[key], origins[key] = flags[key], flag(key)
        elif env(key) in environ:
            values[key], origins[key] = environ[env(key)], env(key)
        elif key in in_file:
            values[key], origins[key] = in_file[key], f"{config_file}: {key}"
            if _is_path(section.model_fields[key]) and isinstance(in_file[key], str):
                values[key] = Path(config_file).parent / Path(in_file[key]).expanduser()
    refuse_bools(section, values, origins.__getitem__)
    try:
        return section.model_validate(values)
    except ValidationError as error:
        raise config_error(error, origins.__getitem__) from None


def _by_name(sections: Mapping[type[Settings], Settings]) -> dict[str, Any]:
    """Config's fields by the sections' types: ServerSettings -> server, ..."""
    fields = typing.get_type_hints(Config)
    return {
        name: value
        for section, value in sections.items()
        for name, hint in fields.items()
        if hint is section
    }


def read_config_file(path: Path) -> tuple[dict[str, Any], tuple[ModelConfig, ...]]:
    """The settings and the [[models]] of a TOML config file.

    The settings are as the file spells them; the models' relative paths start from the
    file's directory.
    """
    try:
        settings = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from error
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from error
    tables = settings.pop("models", [])
    if not isinstance(tables, list) or not all(isinstance(table, dict) for table in tables):
        raise ConfigError(f"{path}: models must be tables, each headed [[models]]")
    models = tuple(
        ModelConfig.from_keys(table, base_dir=path.parent, where=f"{path}: [[models]] #{number}")
        for number, table in enumerate(tables, start=1)
    )
    return settings, models


def _models(
    flags: Mapping[str, Any], environ: Mapping[str, str], in_file: tuple[ModelConfig, ...]
) -> tuple[ModelConfig, ...]:
    """The models to serve: from --model, else the environment, else the file, else the default."""
    if "model" in flags:
        return tuple(parse_model_flag(text) for text in flags["model"])
    from_env = [text for text in environ.get(env("model"), "").split(MODEL_SEPARATOR) if text]
    if any(text.strip() for text in from_env):
        return tuple(parse_model_flag(text) for text in from_env if text.strip())
    return in_file or (ModelConfig(path=DEFAULT_MODEL),)


def _metavar(field: FieldInfo) -> str | None:
    """{a,b,c} for a choice, on|off for a switch, FILE for a file; else argparse's
    default, the name in capitals."""
    if field.annotation is bool:
        return "on|off"
    if _is_path(field):
        return "FILE"
    choices = _choices(field.annotation)
    return "{" + ",".join(choices) + "}" if choices else None


def _is_path(field: FieldInfo) -> bool:
    """A file setting: relative to the config file when it comes from one, like models."""
    return field.annotation is Path or Path in typing.get_args(field.annotation)


def _choices(annotation: Any) -> list[str]:
    if typing.get_origin(annotation) is typing.Literal:
        return [str(arg) for arg in typing.get_args(annotation)]
    return [choice for arg in typing.get_args(annotation) for choice in _choices(arg)]


def _shown(field: FieldInfo) -> object:
    extra: Callable[..., Any] | dict[str, Any] | None = field.json_schema_extra
    if isinstance(extra, dict) and "shown" in extra:
        return extra["shown"]
    if isinstance(field.default, bool):
        return "on" if field.default else "off"
    return field.default
