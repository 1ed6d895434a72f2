"""Priority classes through a real server: a request's field, a stream's default, and the
tenant's ceiling from the tokens file decide the order in which a busy model runs the
requests waiting for it (the queue's own rules are in tests/engine/test_batching.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import grpc
import httpx
import pytest
from tests.fakes import ColourNet, colour_model, solid_png
from tests.support import ServerThread

from recognizer.config.schema import SecuritySettings
from recognizer.v1 import recognizer_pb2 as pb
from recognizer.v1 import recognizer_pb2_grpc as pb_grpc

RED = solid_png((200, 0, 0))
NIGHTLY = "Hq2Lw9Xv0cTt5mRj8pZs4e"  # a tenant whose requests may be LOW at most
SHOP = "q9Xc1kF0b7WvN2yH4tLm8a"  # a tenant the file leaves at the default, HIGH
FORWARD_S = 0.3  # each call of the model: long enough for the others to queue behind it


def slow_server(**kwargs: object) -> ServerThread:
    """One model call at a time, of one image: every other request waits in the queue."""
    return ServerThread(
        [colour_model(network=ColourNet(delay_s=FORWARD_S))],
        max_batch_size=1,
        inference_workers=1,
        cache_entries=0,
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def running() -> Iterator[ServerThread]:
    with slow_server(http=True) as server:
        yield server


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[ServerThread]:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"nightly:{NIGHTLY} priority=low\nshop:{SHOP}\n")
    with slow_server(security=SecuritySettings(tokens_file=tokens)) as server:
        yield server


def request(priority: int, request_id: str) -> pb.ClassifyRequest:
    return pb.ClassifyRequest(image=RED, priority=priority, request_id=request_id)


async def finishing_order(
    address: str,
    calls: Sequence[tuple[str, pb.ClassifyRequest]],
    token: str | None = None,
) -> list[str]:
    """Send a first request, which the model starts at once, then the others one by one
    while it runs (unary calls, or a frame of a stream for "stream"); returns the request
    ids in the order their answers came."""
    metadata = (("authorization", f"Bearer {token}"),) if token else None
    finished: list[str] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.RecognizerStub(channel)

        async def unary(message: pb.ClassifyRequest) -> None:
            answer = await stub.Classify(message, timeout=30, metadata=metadata)
            finished.append(answer.request_id)

        async def stream(message: pb.ClassifyRequest) -> None:
            async def one() -> AsyncIterator[pb.ClassifyRequest]:
                yield message

            async for answer in stub.ClassifyStream(one(), timeout=30, metadata=metadata):
                finished.append(answer.request_id)

        tasks = []
        for index, (kind, message) in enumerate(calls):
            tasks.append(asyncio.create_task((stream if kind == "stream" else unary)(message)))
            await asyncio.sleep(FORWARD_S / 3 if index == 0 else 0.03)  # queued in this order
        await asyncio.gather(*tasks)
    return finished


def test_a_higher_class_runs_before_lower_requests_that_waited_longer(
    running: ServerThread,
) -> None:
    calls = [("unary", request(pb.PRIORITY_LOW, f"low-{i}")) for i in range(4)]
    calls.append(("unary", request(pb.PRIORITY_HIGH, "high")))
    order = asyncio.run(finishing_order(running.address, calls))
    assert order == ["low-0", "high", "low-1", "low-2", "low-3"]


def test_a_streams_frames_go_ahead_of_unary_calls_unasked(running: ServerThread) -> None:
    calls = [("unary", request(pb.PRIORITY_UNSPECIFIED, f"call-{i}")) for i in range(4)]
    calls.append(("stream", request(pb.PRIORITY_UNSPECIFIED, "frame")))
    order = asyncio.run(finishing_order(running.address, calls))
    assert order == ["call-0", "frame", "call-1", "call-2", "call-3"]


def test_a_tenant_asking_above_its_ceiling_is_lowered_to_it(guarded: ServerThread) -> None:
    calls = [("unary", request(pb.PRIORITY_LOW, f"low-{i}")) for i in range(4)]
    calls.append(("unary", request(pb.PRIORITY_HIGH, "asked-high")))
    order = asyncio.run(finishing_order(guarded.address, calls, token=NIGHTLY))
    assert order == ["low-0", "low-1", "low-2", "low-3", "asked-high"]
    # A tenant the file leaves at the default may ask for HIGH, and gets it.
    order = asyncio.run(finishing_order(guarded.address, calls, token=SHOP))
    assert order == ["low-0", "asked-high", "low-1", "low-2", "low-3"]


def test_http_takes_a_priority_by_name_and_refuses_an_unknown_one(running: ServerThread) -> None:
    url = f"{running.http_url}/v1/classify"
    headers = {"content-type": "image/png"}
    answered = httpx.post(url, params={"priority": "low"}, content=RED, headers=headers)
    assert answered.status_code == 200, answered.text
    refused = httpx.post(url, params={"priority": "urgent"}, content=RED, headers=headers)
    assert refused.status_code == 400
    assert "priority must be low, normal or high" in refused.text


def test_grpc_refuses_a_priority_the_contract_does_not_have(running: ServerThread) -> None:
    with grpc.insecure_channel(running.address) as channel:
        stub = pb_grpc.RecognizerStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Classify(pb.ClassifyRequest(image=RED, priority=7), timeout=30)  # type: ignore[arg-type]
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "priority 7 is not a priority" in (refused.value.details() or "")
