"""How a deployment is configured: every setting declared once, read from flags, env and TOML.

    schema.py      the server and engine settings: type, default, bounds, help
    models.py      the keys that describe one model to serve (--model, [[models]], sidecars)
    sources.py     flags, then RECOGNIZER_* variables, then the config file, then defaults
    validation.py  pydantic's errors as ConfigErrors that name their source

No torch and no grpc here: `recognizer serve --help` and the clients stay light.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from recognizer.config.models import ModelConfig
from recognizer.config.schema import (
    EngineSettings,
    LogSettings,
    SecuritySettings,
    ServerSettings,
)
from recognizer.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class Config:
    """Everything `recognizer serve` needs; the first model is the default one."""

    models: tuple[ModelConfig, ...]
    server: ServerSettings = field(default_factory=ServerSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    log: LogSettings = field(default_factory=LogSettings)

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


__all__ = [
    "Config",
    "EngineSettings",
    "LogSettings",
    "ModelConfig",
    "SecuritySettings",
    "ServerSettings",
]
