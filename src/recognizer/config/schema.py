"""Every `serve` setting, declared once: its type, default, bounds, help and where it applies.

A setting is a field of the section it applies to: ServerSettings (the servers),
SecuritySettings (TLS, tokens, what is open, which models may run code), EngineSettings
(inference), or the top-level LogSettings. The field's name is its name
everywhere: `--max-batch-size` on the command line, `RECOGNIZER_MAX_BATCH_SIZE` in the
environment and `max_batch_size` in the config file (sources.py reads them, in that
order of precedence). Validation is pydantic's; values the server chooses for itself
are written "auto" and held as None.

Usage:

    settings = EngineSettings(max_batch_size=16, max_batch_delay_ms=5)
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    model_validator,
)

from recognizer.logs import LogFormat
from recognizer.origins import origin

MiB = 1 << 20
GRPC_MESSAGE_LIMIT_MB = 2048  # gRPC's channel arguments are 32-bit integers (2 GiB - 1)
GRPC_SECONDS_LIMIT = 2_000_000  # and so are its times, in milliseconds (24 days)

BackendKind = Literal["auto", "openvino", "onnxruntime", "torch"]
Precision = Literal["auto", "fp32", "bf16", "fp16", "int8"]
Int8Fallback = Literal["none", "fp32"]
DeviceDecode = Literal["auto", "on", "off"]
LogLevel = Literal["debug", "info", "warning", "error"]


def _word_means_none(word: str) -> BeforeValidator:
    def parse(value: object) -> object:
        return None if value == word else value

    return BeforeValidator(parse)


Auto = _word_means_none("auto")  # "auto": the server chooses (None)
Off = _word_means_none("off")  # "off": not served (None)


def _at_least_a_byte(mebibytes: float) -> float:
    if math.floor(mebibytes * MiB) < 1:
        raise ValueError(f"{mebibytes} MiB is less than a byte")
    return mebibytes


Mebibytes = Annotated[float, AfterValidator(_at_least_a_byte)]


def default_model_cache_dir() -> Path:
    """$XDG_CACHE_HOME/recognizer, or ~/.cache/recognizer: where caches go on Linux."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "recognizer"


def _origins(value: object) -> object:
    """Origins from a comma-separated string (a flag, a variable) or a list (TOML), each
    written one way (origins.py)."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(item, str) for item in items):
        return value  # pydantic says what is wrong
    return tuple(origin(item) for item in items if item.strip())


Origins = Annotated[tuple[str, ...], BeforeValidator(_origins)]


def setting(default: Any, help: str, *, shown: str | None = None, **bounds: Any) -> Any:
    """A field as a setting: its default, its help text, and pydantic bounds (ge=1, ...).

    `shown` is how the default reads in --help when it is not the value itself.
    """
    extra: dict[str, JsonValue] | None = {"shown": shown} if shown is not None else None
    return Field(default, description=help, json_schema_extra=extra, **bounds)


class Settings(BaseModel):
    """A section of settings: frozen, and strict about names."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ServerSettings(Settings):
    """Where the servers listen (gRPC, and HTTP when asked) and how they treat connections
    and shutdown."""

    host: str = setting("127.0.0.1", "address to listen on (0.0.0.0: every interface)")
    port: int = setting(50051, "port to listen on (0: any free port)", ge=0, le=65535)
    max_message_mb: Mebibytes = setting(
        32.0,
        "largest request or response, in MiB (gRPC's own 4 MiB refuses ordinary photos);"
        " also the largest HTTP body and WebSocket message",
        gt=0,
        lt=GRPC_MESSAGE_LIMIT_MB,
        allow_inf_nan=False,
    )
    grace_period: float = setting(
        10.0, "seconds in-flight calls get to finish on SIGTERM", ge=0, allow_inf_nan=False
    )
    metrics_port: Annotated[int | None, Off] = setting(
        None,
        "serve Prometheus metrics on this port, on --metrics-host (0: any free port)",
        shown="off",
        ge=0,
        le=65535,
    )
    metrics_host: str = setting(
        "127.0.0.1",
        "address the metrics listen on; loopback unless told otherwise (0.0.0.0: every"
        " interface), whatever --host is",
    )
    reflection: bool = setting(
        True, "serve gRPC reflection, so grpcurl needs no proto files (off: not served)"
    )
    watch: bool = setting(
        False,
        "reload the config file's models when the file, or a served model's files, change"
        " (looked at once a second; SIGHUP reloads without it)",
    )
    access_log: bool = setting(
        False, "log a line for each call, on both ports, when it ends (logger recognizer.access)"
    )
    access_log_sample: float = setting(
        1.0,
        "the share of answered calls the access log keeps (failed calls are always kept)",
        ge=0,
        le=1,
        allow_inf_nan=False,
    )

    http_port: Annotated[int | None, Off] = setting(
        None,
        "serve HTTP/JSON, the WebSocket stream and the web page on this port, on --host"
        " (0: any free port)",
        shown="off",
        ge=0,
        le=65535,
    )
    drain_delay: float = setting(
        5.0,
        "seconds the server goes on serving after SIGTERM while health says NOT_SERVING, so"
        " load balancers move away before calls are refused (SIGINT skips it)",
        ge=0,
        allow_inf_nan=False,
    )
    first_frame_timeout: float = setting(
        10.0, "seconds a new stream may take to send its first frame", gt=0, allow_inf_nan=False
    )
    keepalive_time: float = setting(
        60.0,
        "seconds between the server's keepalive pings on each connection",
        gt=0,
        le=GRPC_SECONDS_LIMIT,
        allow_inf_nan=False,
    )
    keepalive_timeout: float = setting(
        20.0,
        "seconds a ping may go unanswered before the connection is closed",
        gt=0,
        le=GRPC_SECONDS_LIMIT,
        allow_inf_nan=False,
    )
    max_connection_idle: Annotated[float | None, Off] = setting(
        300.0,
        "seconds a connection with no calls stays open, gRPC or HTTP keep-alive (off: for ever)",
        gt=0,
        le=GRPC_SECONDS_LIMIT,
        allow_inf_nan=False,
    )
    max_connection_age: Annotated[float | None, Off] = setting(
        300.0,
        "seconds after which a connection is asked to go (GOAWAY, give or take a tenth), so clients"
        " behind an L4 balancer reconnect and spread over new replicas (off: never)",
        gt=0,
        le=GRPC_SECONDS_LIMIT,
        allow_inf_nan=False,
    )
    max_connection_age_grace: Annotated[float | None, Off] = setting(
        None,
        "seconds the calls of a connection past its age may still run (off: until they end,"
        " so long streams are not cut)",
        shown="off",
        gt=0,
        le=GRPC_SECONDS_LIMIT,
        allow_inf_nan=False,
    )
    max_streams_per_connection: int = setting(
        100, "calls one connection may have open at once (HTTP/2 streams)", ge=1, lt=2**31
    )
    max_concurrent_rpcs: int = setting(
        4096,
        "gRPC calls and WebSocket streams the server runs at once, of every kind (health"
        " watches count), shared fairly between callers; beyond its share a caller is refused"
        " with RESOURCE_EXHAUSTED",
        ge=1,
        lt=2**31,
    )
    max_connections: int = setting(
        1024,
        "connections each port keeps open at once (gRPC, and HTTP); more are closed as they"
        " come. Lowered at start-up to fit the open-file limit, which is raised to its hard"
        " limit",
        ge=1,
        lt=2**31,
    )
    header_timeout: float = setting(
        10.0,
        "seconds a new connection may take to finish its TLS handshake and send what opens it"
        " (gRPC: HTTP/2's settings; HTTP: the request's headers, and so for each request)",
        gt=0,
        le=GRPC_SECONDS_LIMIT,
        allow_inf_nan=False,
    )
    stream_idle_timeout: Annotated[float | None, Off] = setting(
        60.0,
        "seconds an open stream (ClassifyStream, WebSocket) may wait for its next frame before"
        " it is ended (off: for ever)",
        gt=0,
        allow_inf_nan=False,
    )
    http_max_header_kb: int = setting(
        64, "largest HTTP request head, its request line and headers, in KiB (beyond: 431)", ge=1
    )
    http_max_url_kb: int = setting(8, "longest HTTP request URL, in KiB (beyond: 414)", ge=1)
    http_allowed_origins: Origins = setting(
        (),
        "origins (https://host[:port], comma-separated) besides the server's own whose web"
        " pages may call the HTTP API and open the WebSocket stream",
        shown="none: the server's own only",
    )

    @property
    def max_message_bytes(self) -> int:
        return math.floor(self.max_message_mb * MiB)


class SecuritySettings(Settings):
    """TLS, who may call (tokens and tenants), what stays open, and models that are code.

    Auth is on when a tokens file is given. Certificates, keys and the tokens file are
    re-read when they change on disk, without a restart.
    """

    tls_cert: Path | None = setting(
        None,
        "serve TLS with this PEM certificate chain (with --tls-key); re-read when it changes",
        shown="none: plaintext",
    )
    tls_key: Path | None = setting(
        None, "the PEM private key of --tls-cert; re-read when it changes", shown="none"
    )
    tls_client_ca: Path | None = setting(
        None,
        "require client certificates signed by this PEM CA bundle (mTLS; needs --tls-cert)",
        shown="none",
    )
    tokens_file: Path | None = setting(
        None,
        "turn auth on: calls must send authorization: Bearer TOKEN, a token of this file's"
        " tenant:token [models] lines; re-read when it changes",
        shown="none: auth off",
    )
    tenant_from_cert: bool = setting(
        False,
        "with --tls-client-ca and --tokens-file: a client certificate whose subject CN is a"
        " tenant of the tokens file names that tenant, no token needed",
    )
    public_health: bool = setting(
        True, "with auth on, health checks need no token (Kubernetes probes send none)"
    )
    public_reflection: bool = setting(False, "with auth on, reflection needs no token")
    admin: bool = setting(
        False,
        "with auth off: allow the model admin calls (load, unload, reload) from loopback;"
        " with auth on, tenants with admin=yes in the tokens file may make them",
    )
    allow_code_models: bool = setting(
        False,
        "load TorchScript files (code, run when loaded) even where format=torchscript is not named",
    )

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together: TLS needs both")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("--tls-client-ca (mTLS) needs TLS: give --tls-cert and --tls-key too")
        if self.tenant_from_cert and (self.tls_client_ca is None or self.tokens_file is None):
            raise ValueError(
                "--tenant-from-cert needs --tls-client-ca (verified client certificates) and"
                " --tokens-file (the tenants)"
            )
        return self

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def auth(self) -> bool:
        return self.tokens_file is not None


class EngineSettings(Settings):
    """How the engine runs models: device, backend, batching, threads, limits and cache.

    None ("auto") means "choose for the device" (engine/sizing.py): the batch size is 4
    on the CPU and measured at start-up on a GPU, the batching delay is 0 on the CPU
    and 2 ms on CUDA, and the CPU gets one inference worker per core.
    """

    device: str = setting("auto", "auto, cpu, cuda or cuda:N")
    backend: BackendKind = setting(
        "auto",
        "auto (openvino, else onnxruntime, on the CPU; torch on CUDA), openvino, onnxruntime"
        " or torch",
    )
    precision: Precision = setting(
        "auto",
        "auto (fp16 on CUDA; on the CPU fp32, or bf16 where measured faster and as faithful),"
        " fp32, bf16 (OpenVINO on CPUs with AMX or"
        " AVX512-BF16: faster, probabilities within 0.05), fp16 (CUDA) or int8 (OpenVINO,"
        " quantised at first start and checked against fp32 before serving)",
    )
    int8_min_agreement: Annotated[float | None, Auto] = setting(
        None,
        "with --precision int8: the share of held-out images whose top-1 class must match"
        " fp32's before the int8 model serves; auto: int8 must be as faithful to fp32 as fp32"
        " is to itself on images changed in ways that should not matter (re-encoded,"
        " shifted, mirrored: top-1, top-5 and probabilities)",
        shown="auto",
        ge=0,
        le=1,
    )
    int8_fallback: Int8Fallback = setting(
        "none",
        "with --precision int8, when a model falls short of the fidelity gate: none (the"
        " server does not start) or fp32 (that model is served in fp32)",
    )
    model_cache_dir: Annotated[Path | None, Off] = Field(
        default_factory=default_model_cache_dir,  # read when the settings are made
        description="where exported and quantised models are kept between starts, keyed by"
        " the model file's hash and the settings (safe to delete; off: prepared again at"
        " every start)",
        json_schema_extra={"shown": "$XDG_CACHE_HOME/recognizer or ~/.cache/recognizer"},
    )
    device_decode: DeviceDecode = setting(
        "auto",
        "decode JPEGs where the model runs, a batch at a time (nvJPEG on CUDA), for models on"
        " the torch backend: auto (on CUDA), on or off (Pillow on the preprocess threads)",
    )
    max_batch_size: Annotated[int | None, Auto] = setting(
        None,
        "largest batch formed (a model's own max_batch_size may lower it); auto is 2 on the"
        " CPU and measured at start-up on a GPU",
        shown="auto",
        ge=1,
    )
    max_batch_delay_ms: Annotated[float | None, Auto] = setting(
        None,
        "longest wait for a batch to fill; auto is 0 on the CPU, 2 on CUDA",
        shown="auto",
        ge=0,
        allow_inf_nan=False,
    )
    inference_workers: Annotated[int | None, Auto] = setting(
        None,
        "model calls run at once, per model: OpenVINO's streams, or threads calling ONNX"
        " Runtime or PyTorch; auto: OpenVINO's throughput hint chooses, else one per core on"
        " the CPU, two on CUDA",
        shown="auto",
        ge=1,
    )
    preprocess_threads: Annotated[int | None, Auto] = setting(
        None, "threads decoding and resizing images; auto is one per core", shown="auto", ge=1
    )
    max_queued_requests: int = setting(
        256, "requests a model accepts before refusing with RESOURCE_EXHAUSTED", ge=1
    )
    rate_limit: Annotated[float | None, Off] = setting(
        None,
        "requests a second each caller (tenant, or peer address) may send, over every model"
        " (off: no limit)",
        shown="off",
        gt=0,
        allow_inf_nan=False,
    )
    rate_limit_burst: Annotated[int | None, Auto] = setting(
        None,
        "requests a caller may send at once above --rate-limit; auto is one second's worth",
        shown="auto",
        ge=1,
    )
    max_image_pixels: int = setting(64_000_000, "largest image, in pixels", ge=1)
    max_jpeg_scans: int = setting(
        100,
        "most scans a JPEG may have, counted before decoding (each decodes the whole image"
        " again; a progressive JPEG has about 10, and Chrome stops at 100)",
        ge=1,
    )
    max_jpeg_markers: int = setting(
        4096,
        "most markers (metadata, tables, scans) a JPEG may have, counted before decoding",
        ge=1,
    )
    decode_budget_mb: Annotated[Mebibytes | None, Auto] = setting(
        None,
        "memory that images being decoded may hold at once, in MiB; auto is a quarter of the"
        " container's memory limit (or of the machine's memory)",
        shown="auto",
        gt=0,
        allow_inf_nan=False,
    )
    default_top_k: int = setting(5, "labels answered when a request's top_k is 0", ge=1)
    max_top_k: int = setting(
        1000, "most labels one answer holds, whatever top_k asks for", ge=1, lt=2**31
    )
    stall_timeout: float = setting(
        30.0,
        "seconds a model call may run with no batch finishing before the model is NOT_SERVING",
        gt=0,
        allow_inf_nan=False,
    )
    max_failed_batches: int = setting(
        5,
        "failed batches in a row after which a model is tested on a blank image and, if that"
        " fails too, is NOT_SERVING",
        ge=1,
    )
    unhealthy_exit: Annotated[float | None, Off] = setting(
        60.0,
        "seconds every model may be NOT_SERVING before the process exits with status 3, for its"
        " supervisor to restart it (off: never)",
        gt=0,
        allow_inf_nan=False,
    )
    cache_entries: int = setting(
        0, "results cached by image content and model; 0 turns the cache off", ge=0
    )
    cache_mb: Mebibytes = setting(
        64.0, "largest size of the result cache, in MiB", gt=0, allow_inf_nan=False
    )

    @property
    def cache_bytes(self) -> int:
        return math.floor(self.cache_mb * MiB)


class LogSettings(Settings):
    """What the process logs."""

    log_level: LogLevel = setting("info", "logging level: debug, info, warning or error")
    log_format: LogFormat = setting(
        "text", "log lines as text for people, or json: one JSON object a line"
    )


SECTIONS: tuple[type[Settings], ...] = (
    ServerSettings,
    SecuritySettings,
    EngineSettings,
    LogSettings,
)
