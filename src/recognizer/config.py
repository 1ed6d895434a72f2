"""A deployment's configuration: which models to serve, and how the server and engine run."""

from __future__ import annotations

import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recognizer.engine.settings import EngineSettings
from recognizer.errors import ConfigError
from recognizer.models.model_config import ModelConfig

MiB = 1 << 20
GRPC_MESSAGE_BYTES_LIMIT = (1 << 31) - 1  # gRPC's channel arguments are 32-bit integers


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    """Where the server listens and how it treats connections.

    The message limit defaults to 32 MiB because gRPC's own 4 MiB default rejects
    ordinary photos. Prometheus metrics are served on `metrics_port` (same host) when set.
    """

    host: str = "127.0.0.1"
    port: int = 50051
    max_message_bytes: int = 32 * MiB
    grace_period_s: float = 10.0
    metrics_port: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be within 0-65535, not {self.port}")
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ValueError(f"metrics_port must be within 0-65535, not {self.metrics_port}")
        if not 0 < self.max_message_bytes <= GRPC_MESSAGE_BYTES_LIMIT:
            raise ValueError(f"max_message_bytes must be within 1-{GRPC_MESSAGE_BYTES_LIMIT}")
        if not self.grace_period_s >= 0:  # also refuses NaN
            raise ValueError(f"grace_period_s must not be negative, not {self.grace_period_s}")


@dataclass(frozen=True, kw_only=True)
class Config:
    """Everything `recognizer serve` needs; the first model is the default one."""

    models: tuple[ModelConfig, ...]
    server: ServerSettings = field(default_factory=ServerSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    log_level: str = "info"

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("no model to serve")
        repeated = [
            name for name, count in Counter(m.name for m in self.models).items() if count > 1
        ]
        if repeated:
            raise ConfigError(
                f"more than one model is named {repeated[0]!r}: model names must be unique;"
                " give each model its own with name=NAME"
            )


def read_config_file(path: Path) -> tuple[dict[str, Any], tuple[ModelConfig, ...]]:
    """The settings and the [[models]] of a TOML config file.

    The settings are as the file spells them (keys named after the `serve` flags); the
    models' relative paths start from the file's directory.
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
        ModelConfig.from_toml(table, base_dir=path.parent, where=f"{path}: [[models]] #{number}")
        for number, table in enumerate(tables, start=1)
    )
    return settings, models
