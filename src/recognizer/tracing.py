"""OpenTelemetry traces of the calls the server answers, exported over OTLP; off by default.

The OTEL_* variables turn it on (`requested`), and the SDK reads the rest of them itself:
the endpoint, headers and TLS of the OTLP exporter, the service name and resource, the
sampler, the batch span processor's timing. When off, nothing of OpenTelemetry is
imported, and every function here returns at its first line: the doors and the engine
ask `enabled()` or get None, so a call creates no span and carries no context.

A door opens a call's server span (`serving`), the child of the W3C trace context its
caller sent (`traceparent`, `tracestate`), or the root of a new trace without one; a
stream's frames are spans under it (`span`). The engine records a request's stages as
children of the span it was classified under (`request`): each stage's span is made when
the stage ends, on whichever thread that is, from times the request carries, so no
context has to follow the work into the thread pools. The spans our code opens are found
through a context variable of this module's (`current`), which asyncio's tasks copy; an
unsampled call opens no span below its own.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from recognizer import __version__
from recognizer.errors import ConfigError, RecognizerError

if TYPE_CHECKING:
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer
    from opentelemetry.util.types import AttributeValue

    Attributes = Mapping[str, AttributeValue]

ENDPOINTS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
PROTOCOLS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
SERVICE_NAME = "recognizer"  # unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES name one
MAX_ATTRIBUTE_CHARS = 256  # a caller's text (a request id) is cut to this, as in the logs

_tracer: Tracer | None = None
_provider: TracerProvider | None = None
_propagator: TextMapPropagator | None = None
_current: contextvars.ContextVar[Traced | None] = contextvars.ContextVar("span", default=None)
_OFF: AbstractContextManager[None] = contextlib.nullcontext()


def requested(environ: Mapping[str, str]) -> bool:
    """Whether the OTEL_* variables ask for traces: OTEL_TRACES_EXPORTER=otlp, or an OTLP
    endpoint with no OTEL_TRACES_EXPORTER; never with OTEL_SDK_DISABLED=true or
    OTEL_TRACES_EXPORTER=none. Unlike the SDK's own default (otlp), nothing is exported
    unless asked for, so that a server sends nothing to a collector nobody set up. Only
    OTLP over gRPC is exported: another exporter or protocol is a ConfigError."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = {
        name.strip() for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",") if name.strip()
    }
    if exporters - {"otlp", "none"}:
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER={environ['OTEL_TRACES_EXPORTER']}: traces are exported"
            " over OTLP only; set otlp, or none to turn them off"
        )
    on = "otlp" in exporters if exporters else any(environ.get(name) for name in ENDPOINTS)
    for name in PROTOCOLS:
        protocol = environ.get(name, "").strip()
        if on and protocol not in ("", "grpc"):
            raise ConfigError(f"{name}={protocol}: traces are exported over OTLP/gRPC only")
    return on


def configure() -> bool:
    """Export traces if the process's OTEL_* variables ask for it; returns whether they do.

    A ConfigError if they ask for what cannot be done, or if the SDK (the `tracing`
    extra) is not installed."""
    if not requested(os.environ):
        return False
    try:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import OTELResourceDetector, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as error:
        raise ConfigError(
            f"the OTEL_* variables ask for traces, but OpenTelemetry's SDK is not installed"
            f" ({error.name}): install recognizer[tracing]"
        ) from None
    defaults = Resource.create({"service.name": SERVICE_NAME, "service.version": __version__})
    provider = TracerProvider(resource=defaults.merge(OTELResourceDetector().detect()))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    install(provider)
    return True


def install(provider: TracerProvider) -> None:
    """Trace with `provider` from now on (configure's, or a test's). The provider is not
    made OpenTelemetry's global one: nothing else in the process traces."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    global _tracer, _provider, _propagator
    _provider, _propagator = provider, TraceContextTextMapPropagator()
    _tracer = provider.get_tracer("recognizer", __version__)


def shutdown() -> None:
    """Export the spans still held, then stop tracing (when the server has stopped)."""
    global _tracer, _provider, _propagator
    provider, _tracer, _provider, _propagator = _provider, None, None, None
    if provider is not None:
        provider.shutdown()


def enabled() -> bool:
    return _tracer is not None


def current() -> Traced | None:
    """The innermost span our code opened around the running task, if it is recorded."""
    return None if _tracer is None else _current.get()


def serving(
    name: str, carrier: Mapping[str, str], attributes: Attributes
) -> AbstractContextManager[Traced | None]:
    """A call's server span around the block, current within it; the caller's trace context
    is read from `carrier` (gRPC metadata or HTTP headers). The block gets the span, or
    None when tracing is off or the call is not sampled."""
    if _tracer is None or _propagator is None:
        return _OFF
    from opentelemetry.trace import SpanKind

    parent = _propagator.extract(carrier)
    return _opened(_tracer.start_span(name, parent, SpanKind.SERVER, attributes))


def span(name: str, attributes: Attributes) -> AbstractContextManager[Traced | None]:
    """A span around the block, child of the current one (a stream's frame under its
    stream's); the block gets it, or None where `current()` is None."""
    parent = current()
    if parent is None or _tracer is None:
        return _OFF
    return _opened(_tracer.start_span(name, parent.context(), attributes=attributes))


@contextlib.contextmanager
def _opened(opened: Span) -> Iterator[Traced | None]:
    """The span current within the block, and ended after it; an unsampled one is ended at
    once, and nothing is current below it."""
    if not opened.is_recording():
        opened.end()
        yield None
        return
    traced = Traced(opened)
    token = _current.set(traced)
    try:
        yield traced
    finally:
        _current.reset(token)
        opened.end()


def failed(error: BaseException) -> None:
    """The current span's call failed with `error`: its reason (a RecognizerError's) or its
    class is the span's `error.type`."""
    if (traced := current()) is not None:
        traced.error(error)


def request() -> Stages | None:
    """A request's stages, to be recorded under the current span; None where tracing is off
    or the span is not recorded."""
    parent = current()
    if parent is None or _tracer is None:
        return None
    return Stages(_tracer, parent)


def batch_ran(
    stages: Sequence[Stages],
    size: int,
    attributes: Attributes,
    error: BaseException | None = None,
) -> None:
    """A batch of `size` requests, those of `stages` traced, ran on the model from when
    their `infer` stage began until now: a "batch inference" span records the run, and
    each traced request's `infer` stage ends linked to it.

    A batch serves several requests, each in its own trace, and a span has one parent:
    the batch's is the first traced request's, so that the span is sampled with it and is
    found in a trace, and it links to every traced request's span, as OpenTelemetry's
    convention for work shared by several traces (fan-in, messaging's batch processing)
    has it. Each request's own `infer` stage links back, so the batch is one step from any
    of them."""
    if not stages or _tracer is None:
        return
    from opentelemetry.trace import Link

    first = stages[0]
    ran = _tracer.start_span(
        "batch inference",
        first.parent.context(),
        attributes={**attributes, "recognizer.batch.size": size},
        links=[Link(stage.parent.span.get_span_context()) for stage in stages],
        start_time=first.started,
    )
    if error is not None:
        Traced(ran).error(error)
    ended = time.time_ns()
    ran.end(ended)
    link = [Link(ran.get_span_context())]
    for stage in stages:
        stage.set({"recognizer.batch.size": size})
        stage.end(error, links=link, at=ended)


class Traced:
    """A span as the server's code marks it, without naming OpenTelemetry's types."""

    __slots__ = ("_failed", "span")

    def __init__(self, span: Span) -> None:
        self.span = span
        self._failed = False

    def set(self, attributes: Attributes) -> None:
        """Set the attributes that have a value ("" is none)."""
        self.span.set_attributes({key: value for key, value in attributes.items() if value != ""})

    def error(self, error: BaseException) -> None:
        """Mark the span failed with `error`: its reason (a RecognizerError's) or its class."""
        self.fail(*_reason(error))

    def fail(self, reason: str, message: str = "") -> None:
        """Mark the span failed, for `reason` (its `error.type`); the first reason given
        stands, as a door's generic ending of a call says less than what failed it."""
        from opentelemetry.trace import Status, StatusCode

        if self._failed:
            return
        self._failed = True
        self.span.set_attribute("error.type", reason)
        self.span.set_status(Status(StatusCode.ERROR, message or None))

    def context(self) -> Any:
        """An OpenTelemetry context with this span as the parent."""
        from opentelemetry.trace import set_span_in_context

        return set_span_in_context(self.span)


class Stages:
    """A request's stages in the engine, each a child span of the request's, recorded when
    it ends on whichever thread that is. The stages of one request run one after another,
    each thread handing the request to the next through a queue, so this needs no lock."""

    __slots__ = ("_stage", "_tracer", "parent", "started")

    def __init__(self, tracer: Tracer, parent: Traced) -> None:
        self._tracer = tracer
        self.parent = parent
        self._stage = ""
        self.started = 0

    def set(self, attributes: Attributes) -> None:
        """Attributes of the request (its model, the cache's answer), on its span."""
        self.parent.set(attributes)

    def begin(self, stage: str) -> None:
        """End the stage under way, if any, and begin `stage`, now."""
        now = time.time_ns()
        self.end(at=now)
        self._stage, self.started = stage, now

    def end(
        self, error: BaseException | None = None, *, links: Sequence[Any] = (), at: int = 0
    ) -> None:
        """End the stage under way, if any (failed with `error`), now or `at`."""
        if not self._stage:
            return
        stage = self._tracer.start_span(
            self._stage, self.parent.context(), links=links, start_time=self.started
        )
        if error is not None:
            Traced(stage).error(error)
        stage.end(at or time.time_ns())
        self._stage = ""


def _reason(error: BaseException) -> tuple[str, str]:
    """A failure's reason and message: a RecognizerError's own (said to the caller too),
    else only its class, whose message may say more than a trace should."""
    if isinstance(error, RecognizerError):
        return error.reason, error.message
    return type(error).__qualname__, ""


def attribute_text(text: str) -> str:
    """A caller's text as an attribute: cut to MAX_ATTRIBUTE_CHARS."""
    return text[:MAX_ATTRIBUTE_CHARS]
