"""Every `serve` setting, declared once: its type, default, bounds, help and where it applies.

A setting is a field of the section it applies to: ServerSettings (the gRPC server) or
EngineSettings (inference), or the top-level LogSettings. The field's name is its name
everywhere: `--max-batch-size` on the command line, `RECOGNIZER_MAX_BATCH_SIZE` in the
environment and `max_batch_size` in the config file (sources.py reads them, in that
order of precedence). Validation is pydantic's; values the server chooses for itself
are written "auto" and held as None.

Usage:

    settings = EngineSettings(max_batch_size=16, max_batch_delay_ms=5)
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, JsonValue

MiB = 1 << 20
GRPC_MESSAGE_LIMIT_MB = 2048  # gRPC's channel arguments are 32-bit integers (2 GiB - 1)
GRPC_SECONDS_LIMIT = 2_000_000  # and so are its times, in milliseconds (24 days)

BackendKind = Literal["auto", "openvino", "onnxruntime", "torch"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
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
    """Where the gRPC server listens and how it treats connections and shutdown."""

    host: str = setting("127.0.0.1", "address to listen on (0.0.0.0: every interface)")
    port: int = setting(50051, "port to listen on (0: any free port)", ge=0, le=65535)
    max_message_mb: Mebibytes = setting(
        32.0,
        "largest request or response, in MiB (gRPC's own 4 MiB refuses ordinary photos)",
        gt=0,
        lt=GRPC_MESSAGE_LIMIT_MB,
        allow_inf_nan=False,
    )
    grace_period: float = setting(
        10.0, "seconds in-flight calls get to finish on SIGTERM", ge=0, allow_inf_nan=False
    )
    metrics_port: Annotated[int | None, Off] = setting(
        None,
        "serve Prometheus metrics on this port, on --host (0: any free port)",
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
        "seconds a connection with no calls stays open (off: for ever)",
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
        "calls the server runs at once, of every kind (streams and health watches count);"
        " beyond it gRPC refuses with RESOURCE_EXHAUSTED",
        ge=1,
        lt=2**31,
    )

    @property
    def max_message_bytes(self) -> int:
        return math.floor(self.max_message_mb * MiB)


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
        "auto (fp32 on the CPU, fp16 on CUDA), fp32, bf16 (OpenVINO on CPUs with AMX or"
        " AVX512-BF16: faster, probabilities within 0.05) or fp16 (CUDA)",
    )
    max_batch_size: Annotated[int | None, Auto] = setting(
        None,
        "largest batch formed (a model's own max_batch_size may lower it); auto is 4 on the"
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
        "inference worker threads per model; auto is one per core on the CPU, one on CUDA",
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


SECTIONS: tuple[type[Settings], ...] = (ServerSettings, EngineSettings, LogSettings)
