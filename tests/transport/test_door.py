"""The door of every gRPC call, against real servers: authentication before a request is read,
each caller's share of the calls, idle streams, and messages that do not decode."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fakes import colour_model, solid_png
from recognizer.config.schema import SecuritySettings
from recognizer.v1 import recognizer_pb2 as pb
from recognizer.v1 import recognizer_pb2_grpc as pb_grpc
from support import ServerThread, error_reason

TOKEN = "q9Xc1kF0b7WvN2yH4tLm8a"
RED = pb.ClassifyRequest(image=solid_png((200, 0, 0)), top_k=1)
CLASSIFY = "/recognizer.v1.Recognizer/Classify"
INVALID_UTF8 = b"\x22\x02\xff\xfe"  # field 4 (request_id), a string: two bytes that are not UTF-8


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens"
    path.write_text(f"shop:{TOKEN}\n", encoding="utf-8")
    return path


def never_sent(until: threading.Event) -> Iterator[bytes]:
    """A request stream that sends nothing until `until` is set."""
    until.wait(60)
    yield from ()


def test_a_call_without_a_token_is_refused_before_its_request_is_read(tokens_file: Path) -> None:
    """A Classify call that never sends its request: refused at once without a token; with
    one, the server waits for the request, as it must."""
    security = SecuritySettings(tokens_file=tokens_file)
    with (
        ServerThread([colour_model()], security=security) as running,
        grpc.insecure_channel(running.address) as channel,
    ):
        opened = channel.stream_unary(
            CLASSIFY, response_deserializer=pb.ClassifyResponse.FromString
        )
        release = threading.Event()
        try:
            with pytest.raises(grpc.RpcError) as refused:
                opened(never_sent(release), timeout=30)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert error_reason(refused.value) == "CREDENTIALS_MISSING"
            with pytest.raises(grpc.RpcError) as waited:
                opened(
                    never_sent(release), timeout=1, metadata=[("authorization", f"Bearer {TOKEN}")]
                )
            assert waited.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        finally:
            release.set()


def test_a_string_field_that_is_not_utf8_is_invalid_argument_and_logs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with (
        ServerThread([colour_model()]) as running,
        grpc.insecure_channel(running.address) as channel,
        caplog.at_level(logging.ERROR),
    ):
        classify = channel.unary_unary(
            CLASSIFY, response_deserializer=pb.ClassifyResponse.FromString
        )
        with pytest.raises(grpc.RpcError) as refused:
            classify(INVALID_UTF8, timeout=30)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error_reason(refused.value) == "INVALID_REQUEST"

        stream = channel.stream_stream(
            "/recognizer.v1.Recognizer/ClassifyStream",
            response_deserializer=pb.ClassifyResponse.FromString,
        )
        answers = stream(iter([RED.SerializeToString(), INVALID_UTF8]), timeout=30)
        assert next(answers).labels[0].class_id == 0  # the frame before it is answered
        with pytest.raises(grpc.RpcError) as ended:
            next(answers)
        assert ended.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        check = channel.unary_unary("/grpc.health.v1.Health/Check")
        with pytest.raises(grpc.RpcError) as health:
            check(b"\x0a\x01\xff", timeout=30)  # service: one byte that is not UTF-8
        assert health.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert pb_grpc.RecognizerStub(channel).Classify(RED, timeout=30).labels
    assert [record for record in caplog.records if record.levelno >= logging.ERROR] == []


def watch(channel: grpc.Channel) -> grpc.Future:
    """A health Watch of the whole server, its first answer read."""
    calls = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=60)
    assert next(calls).status == health_pb2.HealthCheckResponse.SERVING
    return calls


def ended_with(call: grpc.Future) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as ended:
        next(call)  # type: ignore[call-overload]
    return ended.value.code(), error_reason(ended.value)


def test_one_peers_health_watches_cannot_take_every_call() -> None:
    """A peer (127.0.0.1) holds every call with Watch streams, which never end; another peer
    (::1) still gets in, each of its calls taking the place of the first peer's newest."""
    settings = {"host": "localhost", "max_concurrent_rpcs": 8}
    with ServerThread([colour_model()], server=settings) as running:
        port = running.server.grpc.port
        with (
            grpc.insecure_channel(f"127.0.0.1:{port}") as abuser,
            grpc.insecure_channel(f"[::1]:{port}") as good,
        ):
            watches = [watch(abuser) for _ in range(8)]
            assert running.server.grpc.shares.total == 8
            assert pb_grpc.RecognizerStub(good).Classify(RED, timeout=30).labels
            assert ended_with(watches.pop()) == (
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "TOO_MANY_CALLS",
            )

            kept = [watch(good) for _ in range(4)]  # the good peer's share: half
            assert running.server.grpc.shares.held("127.0.0.1") == 4
            with pytest.raises(grpc.RpcError) as refused:
                watch(abuser)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert error_reason(refused.value) == "TOO_MANY_CALLS"
            for call in [*watches, *kept]:
                call.cancel()


def test_a_stream_that_stops_sending_is_ended_after_the_idle_timeout() -> None:
    settings = {"stream_idle_timeout": 0.5}
    with (
        ServerThread([colour_model()], server=settings) as running,
        grpc.insecure_channel(running.address) as channel,
    ):
        release = threading.Event()

        def one_then_nothing() -> Iterator[pb.ClassifyRequest]:
            yield RED
            release.wait(60)

        answers = pb_grpc.RecognizerStub(channel).ClassifyStream(one_then_nothing(), timeout=60)
        try:
            assert next(answers).labels[0].class_id == 0
            with pytest.raises(grpc.RpcError) as ended:
                next(answers)
        finally:
            release.set()
        assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert error_reason(ended.value) == "STREAM_IDLE"
        assert dict(ended.value.trailing_metadata())["recognizer-frames-answered"] == "1"
        assert running.engine.open_streams == 0
