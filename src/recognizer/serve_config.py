"""How `recognizer serve` is configured: flags, environment variables and a TOML file.

Each setting is taken from, first to last: its flag; the environment variable named
after the flag (--max-batch-size is RECOGNIZER_MAX_BATCH_SIZE); the TOML file named by
--config, whose keys are the flags' names (max_batch_size = 8) beside [[models]] tables;
and its default.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from recognizer.config import Config, MiB, ServerSettings, read_config_file
from recognizer.engine.settings import BACKEND_KINDS, PRECISIONS, EngineSettings
from recognizer.errors import ConfigError
from recognizer.models.model_config import KEYS, ModelConfig, parse_model_flag

T = TypeVar("T")
ENV_PREFIX = "RECOGNIZER_"
LOG_LEVELS = ("debug", "info", "warning", "error")
MODEL_SEPARATOR = ";"  # between models in RECOGNIZER_MODEL; commas are within one


@dataclass(frozen=True)
class Setting:
    """A `serve` setting: its flag, how text becomes its value, and where the value goes.

    `field` is the field of ServerSettings, EngineSettings or Config (`part`) it sets.
    """

    flag: str
    parse: Callable[[str], Any]
    part: Literal["server", "engine", "config"]
    field: str
    default: object
    help: str
    choices: tuple[str, ...] | None = None

    @property
    def key(self) -> str:
        """Its name in a config file, and in the parsed arguments."""
        return self.flag.removeprefix("--").replace("-", "_")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.key.upper()

    def value(self, given: object, where: str) -> Any:
        """The value of a setting from the environment (text) or a config file (TOML)."""
        if isinstance(given, bool) or not isinstance(given, str | int | float):
            raise ConfigError(f"{where}: expected a number or a string, not {given!r}")
        try:
            value = self.parse(str(given))
        except ValueError:
            raise ConfigError(
                f"{where}: expected {getattr(self.parse, '__name__', 'a value')}, not {given!r}"
            ) from None
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{where}: {given!r} is not one of {', '.join(self.choices)}")
        return value


def _or_auto(kind: Callable[[str], T]) -> Callable[[str], T | None]:
    """A flag type that also takes "auto", meaning None: let the server choose."""

    def parse(text: str) -> T | None:
        return None if text == "auto" else kind(text)

    parse.__name__ = kind.__name__  # argparse names the type in its error messages
    return parse


def _mebibytes(text: str) -> int:
    """A size in MiB (fractions allowed) as bytes; ValueError unless finite and positive."""
    value = float(text)
    size = int(value * MiB) if math.isfinite(value) else 0  # inf and nan are refused
    if size <= 0:
        raise ValueError(f"not a positive number of MiB: {text!r}")
    return size


_mebibytes.__name__ = "positive float"  # as argparse and Setting.value name it in messages
_SERVER, _ENGINE = ServerSettings(), EngineSettings()
SERVE_SETTINGS = (
    Setting(
        "--host",
        str,
        "server",
        "host",
        _SERVER.host,
        "address to listen on (0.0.0.0: every interface)",
    ),
    Setting("--port", int, "server", "port", _SERVER.port, "port to listen on (0: any free port)"),
    Setting("--device", str, "engine", "device", _ENGINE.device, "auto, cpu, cuda or cuda:N"),
    Setting(
        "--backend",
        str,
        "engine",
        "backend",
        _ENGINE.backend,
        "auto (openvino, else onnxruntime, on the CPU; torch on CUDA), openvino, onnxruntime"
        " or torch",
        choices=BACKEND_KINDS,
    ),
    Setting(
        "--precision",
        str,
        "engine",
        "precision",
        _ENGINE.precision,
        "auto (fp32 on the CPU, fp16 on CUDA), fp32, bf16 (OpenVINO on CPUs with AMX or"
        " AVX512-BF16: faster, probabilities within 0.05) or fp16 (CUDA)",
        choices=PRECISIONS,
    ),
    Setting(
        "--max-batch-size",
        _or_auto(int),
        "engine",
        "max_batch_size",
        "auto",
        "largest batch formed (a model's own max_batch_size may lower it); auto is 4 on the"
        " CPU and measured at start-up on a GPU",
    ),
    Setting(
        "--max-batch-delay-ms",
        _or_auto(float),
        "engine",
        "max_batch_delay_ms",
        "auto",
        "longest wait for a batch to fill; auto is 0 on the CPU, 2 on CUDA",
    ),
    Setting(
        "--inference-threads",
        _or_auto(int),
        "engine",
        "inference_threads",
        "auto",
        "inference workers per model; auto is one per core on the CPU, one on CUDA",
    ),
    Setting(
        "--preprocess-threads",
        int,
        "engine",
        "preprocess_threads",
        _ENGINE.preprocess_threads,
        "threads decoding and resizing images",
    ),
    Setting(
        "--max-queued-requests",
        int,
        "engine",
        "max_queued_requests",
        _ENGINE.max_queued_requests,
        "requests a model accepts before refusing with RESOURCE_EXHAUSTED",
    ),
    Setting(
        "--max-message-mb",
        _mebibytes,
        "server",
        "max_message_bytes",
        _SERVER.max_message_bytes // MiB,
        "largest request or response, in MiB",
    ),
    Setting(
        "--max-image-pixels",
        int,
        "engine",
        "max_image_pixels",
        _ENGINE.max_image_pixels,
        "largest image, in pixels",
    ),
    Setting(
        "--cache-entries",
        int,
        "engine",
        "cache_entries",
        _ENGINE.cache_entries,
        "results cached by image content and model; 0 turns the cache off",
    ),
    Setting(
        "--cache-mb",
        _mebibytes,
        "engine",
        "cache_bytes",
        _ENGINE.cache_bytes // MiB,
        "largest size of the result cache, in MiB",
    ),
    Setting(
        "--metrics-port",
        int,
        "server",
        "metrics_port",
        "off",
        "serve Prometheus metrics on this port (0: any free port)",
    ),
    Setting(
        "--grace-period",
        float,
        "server",
        "grace_period_s",
        _SERVER.grace_period_s,
        "seconds in-flight calls get to finish on SIGTERM",
    ),
    Setting("--log-level", str, "config", "log_level", "info", "logging level", LOG_LEVELS),
)


def add_serve_arguments(serve: argparse.ArgumentParser) -> None:
    """The `serve` flags; unset ones stay out of the namespace for the env and file to fill."""
    serve.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        metavar="FILE",
        help=f"TOML file of settings and [[models]] tables (env {ENV_PREFIX}CONFIG)",
    )
    serve.add_argument(
        "--model",
        action="append",
        default=argparse.SUPPRESS,
        metavar="MODEL",
        help="model to serve, repeatable, the first being the default: a built-in name, a"
        " file or directory, NAME=SOURCE, or key=value pairs such as"
        f" name=seed,path=model.pt,labels.zh=labels_zh.txt,crop=224 (keys: {', '.join(KEYS)};"
        f" default: the built-in efficientnet-lite0; env {ENV_PREFIX}MODEL, models separated"
        f" by {MODEL_SEPARATOR!r})",
    )
    for setting in SERVE_SETTINGS:
        serve.add_argument(
            setting.flag,
            type=setting.parse,
            default=argparse.SUPPRESS,
            choices=setting.choices,
            help=f"{setting.help} (default: {setting.default}; env {setting.env})",
        )


def serve_config(args: argparse.Namespace, environ: Mapping[str, str]) -> Config:
    """The configuration `serve` runs with: flags, then environment, then file, then defaults."""
    given = vars(args)
    config_file = given.get("config") or environ.get(ENV_PREFIX + "CONFIG")
    in_file, file_models = read_config_file(Path(config_file)) if config_file else ({}, ())
    known = {setting.key for setting in SERVE_SETTINGS}
    for key in in_file:
        if key not in known:
            raise ConfigError(
                f"{config_file}: unknown setting {key!r}; the settings are"
                f" {', '.join(sorted(known))}, and [[models]] tables"
            )
    parts: dict[str, dict[str, Any]] = {"server": {}, "engine": {}, "config": {}}
    for setting in SERVE_SETTINGS:
        if setting.key in given:
            value = given[setting.key]
        elif setting.env in environ:
            value = setting.value(environ[setting.env], setting.env)
        elif setting.key in in_file:
            value = setting.value(in_file[setting.key], f"{config_file}: {setting.key}")
        else:
            continue
        parts[setting.part][setting.field] = value
    return Config(
        models=_models(given, environ, file_models),
        server=ServerSettings(**parts["server"]),
        engine=EngineSettings(**parts["engine"]),
        **parts["config"],
    )


def _models(
    given: Mapping[str, Any], environ: Mapping[str, str], in_file: tuple[ModelConfig, ...]
) -> tuple[ModelConfig, ...]:
    """The models to serve: from --model, else the environment, else the file, else the default."""
    if "model" in given:
        return tuple(parse_model_flag(text) for text in given["model"])
    env = environ.get(ENV_PREFIX + "MODEL", "")
    from_env = [text for text in env.split(MODEL_SEPARATOR) if text.strip()]
    if from_env:
        return tuple(parse_model_flag(text) for text in from_env)
    if in_file:
        return in_file
    from recognizer.models.loading import DEFAULT_MODEL

    return (ModelConfig(source=DEFAULT_MODEL),)
