"""Traces over OTLP: `recognizer serve` (the colour model, serve_fake.py) with the OTEL_*
variables set exports to a real OTLP collector service on loopback, and each call's spans
arrive nested under the trace context its caller sent, through either door."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from websockets.sync.client import connect

from fakes import solid_png
from recognizer import tracing
from recognizer.errors import ConfigError
from recognizer.v1 import recognizer_pb2 as pb
from recognizer.v1 import recognizer_pb2_grpc as pb_grpc
from support import wait_until

FAKE = [sys.executable, str(Path(__file__).parent / "serve_fake.py"), "works"]
SERVING = re.compile(r"serving recognizer\.v1\.Recognizer on [\d.]+:(\d+)")
HTTP_SERVING = re.compile(r"serving HTTP on (http://[\d.]+:\d+)/")
TOKEN = "q9Xc1kF0b7WvN2yH4tLm8a"
STAGES = {"admit", "hash", "decode", "queue", "batch", "infer", "name"}
Span = trace_pb2.Span


@dataclass(frozen=True)
class Received:
    """A span as the collector got it, with its service's name."""

    span: Span
    service: str

    @property
    def trace_id(self) -> str:
        return self.span.trace_id.hex()

    @property
    def attributes(self) -> dict[str, Any]:
        return {kv.key: _value(kv.value) for kv in self.span.attributes}


def _value(value: common_pb2.AnyValue) -> Any:
    return getattr(value, value.WhichOneof("value") or "string_value")


class Collector(trace_service_pb2_grpc.TraceServiceServicer):
    """The OTLP collector's trace service, keeping every span it is sent."""

    def __init__(self) -> None:
        self.spans: list[Received] = []
        self._lock = threading.Lock()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
            with self._lock:
                self.spans.extend(
                    Received(span, resource["service.name"])
                    for scope_spans in resource_spans.scope_spans
                    for span in scope_spans.spans
                )
        return trace_service_pb2.ExportTraceServiceResponse()

    def trace(self, trace_id: str) -> list[Received]:
        with self._lock:
            return [received for received in self.spans if received.trace_id == trace_id]

    def server_span(self, trace_id: str, name: str) -> Received:
        """The trace's server span, once it has come (it ends after its children)."""
        wait_until(lambda: any(s.span.name == name for s in self.trace(trace_id)), timeout=30)
        (span,) = (s for s in self.trace(trace_id) if s.span.name == name)
        assert span.span.kind == Span.SPAN_KIND_SERVER
        return span


class Served:
    """`recognizer serve` in a process of its own, exporting its traces to `collector`."""

    def __init__(self, collector_port: int, args: Sequence[str]) -> None:
        env = {
            **os.environ,
            "RECOGNIZER_DRAIN_DELAY": "0",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{collector_port}",
            "OTEL_SERVICE_NAME": "recognizer-under-test",
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        }
        self.process = subprocess.Popen(
            [*FAKE, "--port", "0", *args], stderr=subprocess.PIPE, text=True, env=env
        )
        assert self.process.stderr is not None
        self.log: list[str] = []
        for line in self.process.stderr:
            self.log.append(line)
            if match := SERVING.search(line):
                self.address = f"127.0.0.1:{match.group(1)}"
                break
        else:
            raise AssertionError("the server did not start:\n" + "".join(self.log))
        match = HTTP_SERVING.search("".join(self.log))
        assert match, "".join(self.log)
        self.http_url = match.group(1)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        self.log.extend(self.process.stderr)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        status = self.process.wait(timeout=60)
        self._reader.join(timeout=10)
        assert self.process.stderr is not None
        self.process.stderr.close()
        return status


@pytest.fixture(scope="module")
def collector() -> Iterator[tuple[Collector, int]]:
    received = Collector()
    server = grpc.server(futures.ThreadPoolExecutor(2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(received, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield received, port
    server.stop(None)


@pytest.fixture(scope="module")
def served(
    collector: tuple[Collector, int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    tokens = tmp_path_factory.mktemp("tracing") / "tokens"
    tokens.write_text(f"shop:{TOKEN}\n", encoding="utf-8")
    args = ["--http-port", "0", "--tokens-file", str(tokens), "--cache-entries", "64"]
    process = Served(collector[1], args)
    try:
        yield process
    finally:
        assert process.stop() == 0, "".join(process.log[-40:])


def traceparent(trace_id: str, span_id: str = "00f067aa0ba902b7") -> str:
    return f"00-{trace_id}-{span_id}-01"


def metadata(trace_id: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {TOKEN}"), ("traceparent", traceparent(trace_id)))


def children(spans: Sequence[Received], parent: Received) -> list[Received]:
    return [s for s in spans if s.span.parent_span_id == parent.span.span_id]


def test_a_unary_call_is_a_span_under_its_callers_with_a_child_for_each_stage(
    served: Served, collector: tuple[Collector, int]
) -> None:
    received, _ = collector
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    with grpc.insecure_channel(served.address) as channel:
        request = pb.ClassifyRequest(image=solid_png((200, 30, 30)), request_id="order-17")
        pb_grpc.RecognizerStub(channel).Classify(request, metadata=metadata(trace_id))
    call = received.server_span(trace_id, "recognizer.v1.Recognizer/Classify")
    assert call.span.parent_span_id.hex() == "00f067aa0ba902b7"
    assert call.service == "recognizer-under-test"
    assert call.attributes == {
        "rpc.system": "grpc",
        "rpc.service": "recognizer.v1.Recognizer",
        "rpc.method": "Classify",
        "rpc.grpc.status_code": 0,
        "recognizer.tenant": "shop",
        "recognizer.request_id": "order-17",
        "recognizer.model": "colours",
        "recognizer.cache": "miss",
        "recognizer.batch.size": 1,
    }
    spans = received.trace(trace_id)
    stages = {s.span.name: s for s in children(spans, call)}
    assert STAGES | {"batch inference"} == stages.keys()
    assert all(s.span.kind == Span.SPAN_KIND_INTERNAL for s in stages.values())
    ordered = sorted(STAGES, key=lambda name: stages[name].span.start_time_unix_nano)
    assert ordered == ["admit", "hash", "decode", "queue", "batch", "infer", "name"]
    batch = stages["batch inference"]
    assert batch.attributes["recognizer.batch.size"] == 1
    assert batch.attributes["recognizer.model"] == "colours"
    assert [link.span_id for link in batch.span.links] == [call.span.span_id]
    assert [link.span_id for link in stages["infer"].span.links] == [batch.span.span_id]
    assert call.span.start_time_unix_nano <= stages["admit"].span.start_time_unix_nano
    assert stages["name"].span.end_time_unix_nano <= call.span.end_time_unix_nano

    again = "4bf92f3577b34da6a3ce929d0e0e4737"  # the same image: the cache answers
    with grpc.insecure_channel(served.address) as channel:
        pb_grpc.RecognizerStub(channel).Classify(request, metadata=metadata(again))
    cached = received.server_span(again, "recognizer.v1.Recognizer/Classify")
    assert cached.attributes["recognizer.cache"] == "hit"
    names = {s.span.name for s in children(received.trace(again), cached)}
    assert names == {"admit", "hash", "name"}


def test_a_failed_call_records_its_reason_on_its_span_and_the_stage_that_failed(
    served: Served, collector: tuple[Collector, int]
) -> None:
    received, _ = collector
    trace_id = "5bf92f3577b34da6a3ce929d0e0e4736"
    with grpc.insecure_channel(served.address) as channel, pytest.raises(grpc.RpcError):
        pb_grpc.RecognizerStub(channel).Classify(
            pb.ClassifyRequest(image=b"not an image"), metadata=metadata(trace_id)
        )
    call = received.server_span(trace_id, "recognizer.v1.Recognizer/Classify")
    assert call.attributes["error.type"] == "IMAGE_UNDECODABLE"
    assert call.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert call.span.status.code == trace_pb2.Status.STATUS_CODE_ERROR
    assert call.span.status.message  # the message the caller got
    (decode,) = (s for s in children(received.trace(trace_id), call) if s.span.name == "decode")
    assert decode.attributes["error.type"] == "IMAGE_UNDECODABLE"


def test_a_streams_frames_are_spans_under_its_span(
    served: Served, collector: tuple[Collector, int]
) -> None:
    received, _ = collector
    trace_id = "6bf92f3577b34da6a3ce929d0e0e4736"
    frames = [
        pb.ClassifyRequest(image=solid_png((30, 200, 30)), request_id="frame-1"),
        pb.ClassifyRequest(image=b"not an image", request_id="frame-2"),
    ]
    with grpc.insecure_channel(served.address) as channel:
        answers = pb_grpc.RecognizerStub(channel).ClassifyStream(
            iter(frames), metadata=metadata(trace_id)
        )
        assert len(list(answers)) == 2
    stream = received.server_span(trace_id, "recognizer.v1.Recognizer/ClassifyStream")
    assert stream.attributes["recognizer.tenant"] == "shop"
    spans = received.trace(trace_id)
    by_id = {s.attributes["recognizer.request_id"]: s for s in children(spans, stream)}
    assert by_id.keys() == {"frame-1", "frame-2"}
    assert {s.span.name for s in by_id.values()} == {"frame"}
    answered, failed = by_id["frame-1"], by_id["frame-2"]
    assert answered.attributes["recognizer.frame.outcome"] == "answered"
    assert {s.span.name for s in children(spans, answered)} >= STAGES
    assert failed.attributes["recognizer.frame.outcome"] == "failed"
    assert failed.attributes["error.type"] == "IMAGE_UNDECODABLE"


def test_an_http_request_is_a_span_under_its_callers(
    served: Served, collector: tuple[Collector, int]
) -> None:
    received, _ = collector
    trace_id = "7bf92f3577b34da6a3ce929d0e0e4736"
    headers = {
        "Content-Type": "image/png",
        "Authorization": f"Bearer {TOKEN}",
        "traceparent": traceparent(trace_id, "00f067aa0ba902b8"),
    }
    answered = httpx.post(
        f"{served.http_url}/v1/classify",
        content=solid_png((30, 30, 200)),
        headers=headers,
        timeout=30,
    )
    assert answered.status_code == 200
    call = received.server_span(trace_id, "POST /v1/classify")
    assert call.span.parent_span_id.hex() == "00f067aa0ba902b8"
    assert call.attributes["http.response.status_code"] == 200
    assert call.attributes["recognizer.tenant"] == "shop"
    assert call.attributes["recognizer.model"] == "colours"
    assert {s.span.name for s in children(received.trace(trace_id), call)} >= STAGES

    refused = "8bf92f3577b34da6a3ce929d0e0e4736"
    wrong = {**headers, "Authorization": "Bearer wrong", "traceparent": traceparent(refused)}
    assert httpx.post(f"{served.http_url}/v1/classify", headers=wrong).status_code == 401
    call = received.server_span(refused, "POST /v1/classify")
    assert call.attributes["error.type"] == "TOKEN_INVALID"
    assert "recognizer.tenant" not in call.attributes


def test_a_websockets_frames_are_spans_under_its_upgrade_requests(
    served: Served, collector: tuple[Collector, int]
) -> None:
    received, _ = collector
    trace_id = "abf92f3577b34da6a3ce929d0e0e4736"
    headers = {"Authorization": f"Bearer {TOKEN}", "traceparent": traceparent(trace_id)}
    url = served.http_url.replace("http", "ws", 1) + "/v1/classify/stream"
    with connect(url, additional_headers=headers, open_timeout=30) as websocket:
        websocket.send(solid_png((200, 200, 30)))
        websocket.send(json.dumps({"end": True}))
        answers = [json.loads(message) for message in websocket]
    assert answers[-1]["frames"]["answered"] == 1
    stream = received.server_span(trace_id, "WEBSOCKET /v1/classify/stream")
    assert stream.span.parent_span_id.hex() == "00f067aa0ba902b7"
    assert stream.attributes["http.response.status_code"] == 101
    assert stream.attributes["recognizer.tenant"] == "shop"
    spans = received.trace(trace_id)
    (frame,) = children(spans, stream)
    assert (frame.span.name, frame.attributes["recognizer.request_id"]) == ("frame", "0")
    assert {s.span.name for s in children(spans, frame)} >= STAGES


def test_a_call_without_a_trace_context_starts_its_own_trace(
    served: Served, collector: tuple[Collector, int]
) -> None:
    received, _ = collector
    with grpc.insecure_channel(served.address) as channel:
        request = pb.ClassifyRequest(image=solid_png((90, 90, 90)), request_id="untraced")
        token = (("authorization", f"Bearer {TOKEN}"),)
        pb_grpc.RecognizerStub(channel).Classify(request, metadata=token)

    def root() -> list[Received]:
        return [
            s for s in received.spans if s.attributes.get("recognizer.request_id") == "untraced"
        ]

    wait_until(lambda: bool(root()), timeout=30)
    (call,) = root()
    assert not call.span.parent_span_id
    assert {s.span.name for s in children(received.trace(call.trace_id), call)} >= STAGES


def test_no_span_carries_a_token(served: Served, collector: tuple[Collector, int]) -> None:
    received, _ = collector
    with grpc.insecure_channel(served.address) as channel:
        request = pb.ClassifyRequest(image=solid_png((10, 10, 10)))
        trace_id = "9bf92f3577b34da6a3ce929d0e0e4736"
        pb_grpc.RecognizerStub(channel).Classify(request, metadata=metadata(trace_id))
    received.server_span(trace_id, "recognizer.v1.Recognizer/Classify")
    exported = b"".join(s.span.SerializeToString() for s in received.spans)
    assert TOKEN.encode() not in exported and b"Bearer" not in exported


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, True),
    ],
)
def test_the_otel_variables_turn_tracing_on(environ: dict[str, str], on: bool) -> None:
    assert tracing.requested(environ) is on


@pytest.mark.parametrize(
    "environ",
    [
        {"OTEL_TRACES_EXPORTER": "zipkin"},
        {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
    ],
)
def test_what_cannot_be_exported_is_a_config_error(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="OTEL_"):
        tracing.requested(environ)


def test_off_nothing_of_opentelemetry_is_imported() -> None:
    """With no OTEL_* variable, the doors and the engine import no OpenTelemetry module, and
    a request gets no stages to record."""
    script = """
import sys
from recognizer import tracing
from recognizer.errors import ConfigError
from recognizer.engine import lifecycle, stream
from recognizer.http import access, errors
from recognizer.transport import door
assert not tracing.configure() and tracing.request() is None
assert not [name for name in sys.modules if name.startswith("opentelemetry")]
"""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=environ, timeout=120
    )
    assert done.returncode == 0, done.stderr
