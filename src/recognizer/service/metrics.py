"""Prometheus metrics for one service, in a registry of its own, served over HTTP on demand.

Request counts and latencies are observed as calls finish, by the transport that took
them (grpc or http), with the canonical status code either way; with auth on they are
labelled by tenant too, a set the tokens file bounds (callers it refuses are counted by
reason only). What the engine knows (queued requests, batch sizes, model time, cache,
open streams) is read from it at scrape time, so the inference hot path carries no
metrics code.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from recognizer.engine.engine import Engine
from recognizer.engine.stream import Answered, Failed, FrameResult, Skipped
from recognizer.errors import RecognizerError
from recognizer.service.status import code_for

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)

Transport = Literal["grpc", "http"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class ObservedCall:
    """The call being observed: its model, which a door may learn only from the request."""

    model: str = ""


class ServerMetrics:
    """The metrics of one service, shared by its gRPC and HTTP servers; `tenants` adds a
    tenant label (auth on)."""

    def __init__(self, engine: Engine, *, tenants: bool = False) -> None:
        self.registry = CollectorRegistry()
        self._tenants = tenants
        by_tenant = ["tenant"] if tenants else []
        self.requests = Counter(
            "recognizer_requests",
            "Classify calls and stream frames answered, by transport, model and canonical"
            " (gRPC) status code.",
            ["transport", "model", "code", *by_tenant],
            registry=self.registry,
        )
        self.latency = Histogram(
            "recognizer_request_seconds",
            "Server time from request to answer, by model.",
            ["model", *by_tenant],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.refusals = Counter(
            "recognizer_unauthenticated",
            "Calls refused for want of valid credentials, by ErrorInfo reason.",
            ["reason"],
            registry=self.registry,
        )
        self.registry.register(_EngineCollector(engine))
        self._http: tuple[WSGIServer, threading.Thread] | None = None
        self._engine = engine

    def observe(
        self,
        transport: Transport,
        model: str,
        error: BaseException | None,
        started: float,
        tenant: str = "",
    ) -> None:
        """A call for `model`, begun at `started` (time.monotonic()), ends now: OK or `error`."""
        code = "OK" if error is None else code_for(error).name
        self._count(transport, model, code, time.monotonic() - started, tenant)

    @contextlib.contextmanager
    def observed(
        self,
        transport: Transport,
        method: str,
        tenant: str = "",
        model: str = "",
        *,
        passing: tuple[type[BaseException], ...] = (),
    ) -> Iterator[ObservedCall]:
        """The skeleton every door runs a call in: the block is timed and counted as one
        call, OK or the status of the exception it raises (re-raised for the door to
        convert), and an exception no RecognizerError explains is logged with its
        traceback. Cancellation and the `passing` exceptions (the caller went away, a
        failure of the transport itself) leave it uncounted."""
        call = ObservedCall(model)
        started = time.monotonic()
        try:
            yield call
        except passing:
            raise
        except Exception as error:
            if not isinstance(error, RecognizerError):
                logger.exception("%s %s failed", transport, method)
            self.observe(transport, call.model, error, started, tenant)
            raise
        self.observe(transport, call.model, None, started, tenant)

    def observe_frame(self, transport: Transport, result: FrameResult, tenant: str = "") -> None:
        """A stream frame answered, counted like a call (skipped frames as CANCELLED)."""
        match result:
            case Answered():
                code = "OK"
            case Skipped():
                code = "CANCELLED"
            case Failed():
                code = code_for(result.error).name
        seconds = time.monotonic() - result.received_at
        self._count(transport, result.model, code, seconds, tenant)

    def refused(self, reason: str) -> None:
        """A caller refused for want of valid credentials."""
        self.refusals.labels(reason).inc()

    def _count(
        self, transport: Transport, model: str, code: str, seconds: float, tenant: str
    ) -> None:
        # Labelled by served model (admins bound the set): "" asks for the default, and
        # names not served share one label.
        models = self._engine.models
        label = models.default if not model else model if models.ready(model) else "unknown"
        by_tenant = (tenant,) if self._tenants else ()
        self.requests.labels(transport, label, code, *by_tenant).inc()
        self.latency.labels(label, *by_tenant).observe(seconds)

    def serve(self, host: str, port: int) -> int:
        """Serve /metrics over HTTP; returns the bound port."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        self._http = (server, thread)
        return int(server.server_port)

    def close(self) -> None:
        if self._http is not None:
            server, thread = self._http
            server.shutdown()
            server.server_close()
            thread.join()


class _EngineCollector(Collector):
    """Reads the engine's state when Prometheus scrapes."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        queued = GaugeMetricFamily(
            "recognizer_queued_requests",
            "Requests accepted and not yet answered (decoding, queued or running).",
            labels=["model"],
        )
        batches = HistogramMetricFamily(
            "recognizer_batch_size", "Requests per batch run by the model.", labels=["model"]
        )
        model_time = CounterMetricFamily(
            "recognizer_inference_seconds", "Time the model spent on batches.", labels=["model"]
        )
        serving = GaugeMetricFamily(
            "recognizer_model_serving",
            "1 while the watchdog finds the model working, 0 while it is NOT_SERVING.",
            labels=["model"],
        )
        for model in self._engine.describe():
            name = model.spec.name
            queued.add_metric([name], model.pending)
            serving.add_metric([name], int(model.serving))
            sizes = model.batch_sizes
            buckets = [
                (str(bound), sum(n for size, n in sizes.items() if size <= bound))
                for bound in BATCH_BUCKETS
            ]
            buckets.append(("+Inf", sum(sizes.values())))
            total = sum(size * count for size, count in sizes.items())
            batches.add_metric([name], buckets, total)
            model_time.add_metric([name], model.inference_s)
        yield from (queued, batches, model_time, serving)
        yield GaugeMetricFamily(
            "recognizer_open_streams", "Open ClassifyStream calls.", value=self._engine.open_streams
        )
        yield GaugeMetricFamily(
            "recognizer_decoding_bytes",
            "Memory held by images being decoded, out of --decode-budget-mb.",
            value=self._engine.pipeline.budget.used,
        )
        cache = self._engine.pipeline.cache
        if cache is not None:
            lookups = CounterMetricFamily(
                "recognizer_cache_lookups", "Result cache lookups.", labels=["result"]
            )
            lookups.add_metric(["hit"], cache.hits)
            lookups.add_metric(["miss"], cache.misses)
            yield lookups
            yield GaugeMetricFamily("recognizer_cache_entries", "Cached results.", value=len(cache))
            yield GaugeMetricFamily("recognizer_cache_bytes", "Cache size.", value=cache.nbytes)
