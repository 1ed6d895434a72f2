"""A deployment's configuration: which models to serve, and how the server and engine run."""

from __future__ import annotations

from dataclasses import dataclass, field

from recognizer.engine.settings import EngineSettings

MiB = 1 << 20


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


@dataclass(frozen=True, kw_only=True)
class Config:
    """Everything `recognizer serve` needs; the first model is the default one."""

    models: tuple[str, ...]
    server: ServerSettings = field(default_factory=ServerSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    log_level: str = "info"
