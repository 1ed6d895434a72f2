"""The Python clients against a real server: paths or bytes in, messages and statuses out."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import code_pb2

from recognizer.client import AsyncClient, Client, error_status
from recognizer.client.clients import classify_request
from recognizer.v1 import recognizer_pb2 as pb
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
