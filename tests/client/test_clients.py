"""The Python clients against a real server: paths or bytes in, messages and statuses out,
and the service config they carry: balancing, retries, deadlines."""

from __future__ import annotations

import json
import time

import grpc
import pytest
from google.rpc import code_pb2

from fakes import ColourNet, colour_model, solid_png
from recognizer.client import AsyncClient, Client, error_status
from recognizer.client.clients import classify_request, service_config
from recognizer.v1 import recognizer_pb2 as pb
from recognizer.v1 import recognizer_pb2_grpc as pb_grpc
from support import ESPRESSO, PHOTOS, ServerThread


def test_the_sync_client_reads_image_files(default_server: ServerThread) -> None:
    with Client(default_server.address) as client:
        response = client.classify(PHOTOS["coffee"], top_k=1, request_id="r1")
    assert (response.request_id, response.labels[0].class_id) == ("r1", ESPRESSO)


def test_error_status_exposes_code_message_and_details(default_server: ServerThread) -> None:
    with Client(default_server.address) as client, pytest.raises(grpc.RpcError) as raised:
        client.classify(b"", request_id="empty")
    status = error_status(raised.value)
    assert status is not None
    assert (status.code, status.message) == (code_pb2.INVALID_ARGUMENT, "image is empty")
    assert len(status.details) == 2


async def test_the_async_client_classifies_streams_and_checks_health(
    default_server: ServerThread,
) -> None:
    image = PHOTOS["coffee"].read_bytes()
    async with AsyncClient(default_server.address) as client:
        assert (await client.classify(image, language="en")).labels[0].label == "espresso"
        requests = [classify_request(image, request_id=str(i)) for i in range(3)]
        responses = [r async for r in client.classify_stream(requests)]
        assert [r.request_id for r in responses] == ["0", "1", "2"]
        assert await client.health("recognizer.v1.Recognizer") == "SERVING"
        models = await client.list_models()
    assert [m.name for m in models.models] == ["efficientnet-lite0"]


def test_classify_request_takes_bytes_or_a_path() -> None:
    from_path = classify_request(PHOTOS["cat"], top_k=2)
    assert from_path == pb.ClassifyRequest(image=PHOTOS["cat"].read_bytes(), top_k=2)
    assert classify_request(b"xyz").image == b"xyz"


def test_the_service_config_balances_retries_and_sets_a_deadline() -> None:
    config = json.loads(service_config(timeout=12.5))
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    unary, stream = config["methodConfig"]
    assert {name["method"] for name in unary["name"]} == {"Classify", "ListModels"}
    assert unary["timeout"] == "12.5s"
    retryable = {"UNAVAILABLE", "RESOURCE_EXHAUSTED", "CANCELLED"}
    assert set(unary["retryPolicy"]["retryableStatusCodes"]) == retryable
    assert stream["name"] == [{"service": "recognizer.v1.Recognizer", "method": "ClassifyStream"}]
    assert "timeout" not in stream  # a camera's stream may run for hours
    assert stream["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert "timeout" not in json.loads(service_config(timeout=None))["methodConfig"][0]


def test_a_refusal_is_retried_when_the_servers_retry_info_says() -> None:
    with (
        ServerThread(
            [colour_model(network=ColourNet(delay_s=0.4))],
            max_batch_size=1,
            inference_workers=1,
            max_queued_requests=1,
        ) as running,
        grpc.insecure_channel(running.address) as channel,
        Client(running.address) as client,
    ):
        blue = solid_png((0, 0, 200))
        first = pb_grpc.RecognizerStub(channel).Classify.future(pb.ClassifyRequest(image=blue))
        time.sleep(0.1)  # the only place is taken: a call now is refused, with RetryInfo
        started = time.monotonic()
        assert client.classify(blue).labels[0].class_id == 2  # the retry came after it
        assert first.result().labels[0].class_id == 2
        assert time.monotonic() - started >= 0.3


def test_calls_go_round_the_addresses_and_a_draining_one_is_retried_elsewhere() -> None:
    with (
        ServerThread([colour_model()]) as draining,
        ServerThread([colour_model()]) as serving,
    ):
        target = f"ipv4:{draining.address},{serving.address}"
        with Client(target) as client:
            blue = solid_png((0, 0, 200))
            for _ in range(4):
                assert client.classify(blue).labels[0].class_id == 2
            assert draining.engine.runner("").status().batch_sizes  # both served some
            assert serving.engine.runner("").status().batch_sizes
            draining.engine.drain()  # it refuses from now on, with UNAVAILABLE
            answers = [client.classify(blue) for _ in range(10)]
        assert [a.labels[0].class_id for a in answers] == [2] * 10
