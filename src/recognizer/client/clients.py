"""Thin wrappers over the generated stubs: channels with the right limits, service config
and credentials (channel.py), images from paths."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

import grpc
from google.rpc import status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from recognizer.client.channel import Credentials, open_aio_channel, open_channel
from recognizer.v1 import recognizer_pb2 as pb
from recognizer.v1 import recognizer_pb2_grpc as pb_grpc

ImageSource = bytes | str | os.PathLike[str]
DEFAULT_TARGET = "127.0.0.1:50051"
DEFAULT_TIMEOUT_S = 30.0
SERVICE = pb.DESCRIPTOR.services_by_name["Recognizer"].full_name
_MAX_MESSAGE_BYTES = 32 << 20
MESSAGE_OPTIONS = [
    ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
]


def service_config(timeout: float | None = DEFAULT_TIMEOUT_S) -> str:
    """The gRPC service config our clients carry, as JSON.

    - Calls are balanced per call over every address the target resolves to (round_robin:
      `ipv4:10.0.0.1:50051,10.0.0.2:50051`, or a DNS name with several records); an
      address that refuses connections is skipped until it accepts them again.
    - Classify and ListModels are retried on UNAVAILABLE (a draining replica, a broken
      model: round_robin sends the retry to the next address) and on RESOURCE_EXHAUSTED;
      for the latter our server sends its RetryInfo delay as `grpc-retry-pushback-ms`
      too, and gRPC's retries wait exactly that long. They are retried on CANCELLED too,
      which our server never answers itself but gRPC's does, to calls that reach it as
      it stops (grpc/grpc#41785); the calls are idempotent. Five attempts at most, and
      retries stop while failures outnumber a tenth of successes by 50 (retryThrottling),
      so an overload is not multiplied.
    - They have a default deadline of `timeout` seconds (a shorter one given to a call wins).
    - A stream is retried on UNAVAILABLE only, and only before any answer came back.

    Client-side health checks (gRFC A17) are left off on purpose: with one address (a
    Kubernetes Service, a single replica) they fail every call on the client while the
    server says NOT_SERVING, though it still serves during its drain delay, and say less
    than the server's own UNAVAILABLE would.
    """
    retry = {
        "maxAttempts": 5,
        "initialBackoff": "0.1s",
        "maxBackoff": "2s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED", "CANCELLED"],
    }
    unary: dict[str, object] = {
        "name": [
            {"service": SERVICE, "method": "Classify"},
            {"service": SERVICE, "method": "ListModels"},
        ],
        "retryPolicy": retry,
    }
    if timeout is not None:
        unary["timeout"] = f"{timeout:g}s"
    stream = {
        "name": [{"service": SERVICE, "method": "ClassifyStream"}],
        "retryPolicy": {**retry, "retryableStatusCodes": ["UNAVAILABLE"]},
    }
    return json.dumps(
        {
            "loadBalancingConfig": [{"round_robin": {}}],
            "methodConfig": [unary, stream],
            "retryThrottling": {"maxTokens": 100, "tokenRatio": 0.1},
        }
    )


def channel_options(timeout: float | None = DEFAULT_TIMEOUT_S) -> list[tuple[str, str | int]]:
    """Our clients' channel options: message limits, the service config, a retry buffer that
    holds the largest request (else a large image could not be retried), and keepalive pings
    that find a server gone without closing the connection."""
    return [
        *MESSAGE_OPTIONS,
        ("grpc.service_config", service_config(timeout)),
        ("grpc.enable_retries", 1),
        ("grpc.per_rpc_retry_buffer_size", _MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
        ("grpc.http2.ping_timeout_ms", 20_000),
    ]


def classify_request(
    image: ImageSource,
    *,
    top_k: int = 0,
    min_score: float = 0.0,
    language: str = "",
    model: str = "",
    request_id: str = "",
    model_version: int = 0,
) -> pb.ClassifyRequest:
    """Build a ClassifyRequest; `image` is encoded bytes or the path of an image file."""
    data = image if isinstance(image, bytes) else Path(image).read_bytes()
    return pb.ClassifyRequest(
        image=data,
        top_k=top_k,
        min_score=min_score,
        language=language,
        model=model,
        request_id=request_id,
        model_version=model_version,
    )


def error_status(error: grpc.RpcError) -> status_pb2.Status | None:
    """The google.rpc.Status (code, message, details) a failed call carries, if any."""
    return rpc_status.from_call(error)


class Client:
    """A blocking client; `credentials` for TLS, a client certificate, a token.

    Usage:

        with Client("127.0.0.1:50051") as client:
            response = client.classify("cat.jpg", top_k=3, language="en")
            for label in response.labels:
                print(label.label, label.score)

        with Client("recognizer.internal:50051", credentials=Credentials(ca="ca.pem",
                    token=os.environ["RECOGNIZER_TOKEN"])) as client:
            ...
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        credentials: Credentials | None = None,
    ) -> None:
        self.timeout = timeout
        self._channel = open_channel(target, credentials, options=channel_options(timeout))
        self._stub = pb_grpc.RecognizerStub(self._channel)
        self._admin = pb_grpc.ModelAdminServiceStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def classify(
        self,
        image: ImageSource,
        *,
        top_k: int = 0,
        min_score: float = 0.0,
        language: str = "",
        model: str = "",
        request_id: str = "",
        model_version: int = 0,
    ) -> pb.ClassifyResponse:
        """Classify one image (encoded bytes or a file path); options as in ClassifyRequest."""
        request = classify_request(
            image,
            top_k=top_k,
            min_score=min_score,
            language=language,
            model=model,
            request_id=request_id,
            model_version=model_version,
        )
        response: pb.ClassifyResponse = self._stub.Classify(request, timeout=self.timeout)
        return response

    def classify_stream(
        self, requests: Iterable[pb.ClassifyRequest], *, timeout: float | None = None
    ) -> Iterator[pb.ClassifyResponse]:
        """Stream requests, yielding one response per request in order."""
        responses: Iterator[pb.ClassifyResponse] = self._stub.ClassifyStream(
            iter(requests), timeout=timeout
        )
        return responses

    def list_models(self) -> pb.ListModelsResponse:
        response: pb.ListModelsResponse = self._stub.ListModels(
            pb.ListModelsRequest(), timeout=self.timeout
        )
        return response

    def load_model(self, name: str, source: str = "") -> pb.LoadModelResponse:
        """Load or reload a model (the admin right): as `source` (--model flag text) gives
        it, else as the server's config file says now."""
        response: pb.LoadModelResponse = self._admin.LoadModel(
            pb.LoadModelRequest(name=name, source=source), timeout=self.timeout
        )
        return response

    def unload_model(self, name: str, version: int = 0) -> pb.UnloadModelResponse:
        """Stop serving a model, or one version of it (the admin right)."""
        response: pb.UnloadModelResponse = self._admin.UnloadModel(
            pb.UnloadModelRequest(name=name, version=version), timeout=self.timeout
        )
        return response

    def reload_config(self) -> pb.ReloadConfigResponse:
        """Have the server read its config file again and apply it (the admin right)."""
        response: pb.ReloadConfigResponse = self._admin.ReloadConfig(
            pb.ReloadConfigRequest(), timeout=self.timeout
        )
        return response

    def health(self, service: str = "") -> str:
        """The health status name of the server (""), the service or a model: SERVING, ..."""
        response = self._health.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=self.timeout
        )
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient:
    """An asyncio client; `credentials` as for Client.

    Usage:

        async with AsyncClient("127.0.0.1:50051") as client:
            response = await client.classify(jpeg_bytes, top_k=3)
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        credentials: Credentials | None = None,
    ) -> None:
        self.timeout = timeout
        self._channel = open_aio_channel(target, credentials, options=channel_options(timeout))
        self._stub = pb_grpc.RecognizerStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    async def classify(
        self,
        image: ImageSource,
        *,
        top_k: int = 0,
        min_score: float = 0.0,
        language: str = "",
        model: str = "",
        request_id: str = "",
    ) -> pb.ClassifyResponse:
        """Classify one image (encoded bytes or a file path); options as in ClassifyRequest."""
        request = classify_request(
            image,
            top_k=top_k,
            min_score=min_score,
            language=language,
            model=model,
            request_id=request_id,
        )
        response: pb.ClassifyResponse = await self._stub.Classify(request, timeout=self.timeout)
        return response

    async def classify_stream(
        self,
        requests: AsyncIterable[pb.ClassifyRequest] | Iterable[pb.ClassifyRequest],
        *,
        timeout: float | None = None,
    ) -> AsyncIterator[pb.ClassifyResponse]:
        """Stream requests, yielding one response per request in order."""
        call = self._stub.ClassifyStream(requests, timeout=timeout)
        async for response in call:
            yield response

    def open_stream(
        self, *, timeout: float | None = None
    ) -> grpc.aio.StreamStreamCall[pb.ClassifyRequest, pb.ClassifyResponse]:
        """Open a ClassifyStream to write requests to and read responses from concurrently.

        The call gives what classify_stream hides: `write` (which waits for flow control),
        `done_writing`, the final status and the trailing frame counts.
        """
        call: grpc.aio.StreamStreamCall[pb.ClassifyRequest, pb.ClassifyResponse]
        call = self._stub.ClassifyStream(timeout=timeout)
        return call

    async def list_models(self) -> pb.ListModelsResponse:
        response: pb.ListModelsResponse = await self._stub.ListModels(
            pb.ListModelsRequest(), timeout=self.timeout
        )
        return response

    async def health(self, service: str = "") -> str:
        """The health status name of the server (""), the service or a model: SERVING, ..."""
        response = await self._health.Check(
            health_pb2.HealthCheckRequest(service=service), timeout=self.timeout
        )
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()
