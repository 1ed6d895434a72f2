"""The inference.GRPCInferenceService servicer: Triton's gRPC protocol over the same Engine.

Health, metadata and configuration describe the served models (model.py); ModelInfer and
ModelStreamInfer read a request's tensors (convert.py), classify its images through the
engine as recognizer.v1 does (requests.py), and answer its outputs. The caller's tenant
comes from the same auth interceptor, fair shares and rate limits count the same caller,
failures are the same google.rpc.Status, and the same metrics count the calls. Methods
this server does not implement (model repository, shared memory, trace, logging) answer
UNIMPLEMENTED.

A stream carries independent requests, as Triton's does: each is answered when it is done
(with its `id`, so the caller can match them), a failed one with `error_message` (its
canonical code and ErrorInfo reason first) while the stream goes on. At most
EVERY_FRAME_WINDOW requests are read and not yet answered; then the reader waits, so
gRPC's flow control slows the sender. Draining stops the reading, answers what was read,
then ends the stream with UNAVAILABLE, as recognizer.v1's streams do.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Hashable

import grpc

from recognizer.engine.engine import Engine
from recognizer.engine.stream import EVERY_FRAME_WINDOW
from recognizer.errors import RecognizerError, ShuttingDownError
from recognizer.service.metrics import ServerMetrics
from recognizer.service.status import code_for, to_status
from recognizer.transport.auth import current_tenant
from recognizer.transport.callers import caller
from recognizer.v2 import convert, requests
from recognizer.v2.inference import grpc_service_pb2 as pb
from recognizer.v2.inference import grpc_service_pb2_grpc as pb_grpc
from recognizer.v2.statistics import Statistics

Context = grpc.aio.ServicerContext[object, object]
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """Serves inference.GRPCInferenceService on top of an Engine."""

    def __init__(self, engine: Engine, metrics: ServerMetrics) -> None:
        self._engine = engine
        self._metrics = metrics
        self._statistics = Statistics()

    async def ServerLive(
        self, request: pb.ServerLiveRequest, context: Context
    ) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: pb.ServerReadyRequest, context: Context
    ) -> pb.ServerReadyResponse:
        """Ready as /readyz is: warm, some model working, not leaving."""
        return pb.ServerReadyResponse(ready=self._engine.not_ready() is None)

    async def ModelReady(
        self, request: pb.ModelReadyRequest, context: Context
    ) -> pb.ModelReadyResponse:
        """Whether the named model is served and working (health stays open to callers
        without a token under --public-health, so no tenant is asked about)."""
        return pb.ModelReadyResponse(
            ready=requests.model_ready(self._engine, request.name, request.version)
        )

    async def ServerMetadata(
        self, request: pb.ServerMetadataRequest, context: Context
    ) -> pb.ServerMetadataResponse:
        return convert.server_metadata()

    async def ModelMetadata(
        self, request: pb.ModelMetadataRequest, context: Context
    ) -> pb.ModelMetadataResponse:
        model = requests.model_signature(
            self._engine, request.name, request.version, current_tenant()
        )
        return convert.model_metadata(model)

    async def ModelConfig(
        self, request: pb.ModelConfigRequest, context: Context
    ) -> pb.ModelConfigResponse:
        model = requests.model_signature(
            self._engine, request.name, request.version, current_tenant()
        )
        return convert.model_config(model)

    async def ModelStatistics(
        self, request: pb.ModelStatisticsRequest, context: Context
    ) -> pb.ModelStatisticsResponse:
        """Every model the tenant may use, or the one named."""
        tenant = current_tenant()
        if request.name:
            requests.model_signature(self._engine, request.name, request.version, tenant)
        return pb.ModelStatisticsResponse(
            model_stats=[
                convert.model_statistics(
                    model.spec.name,
                    model.version,
                    self._statistics.get(model.spec.name),
                    model.batch_sizes,
                )
                for model in self._engine.describe()
                if self._engine.may_use(tenant, model.spec.name)
                and request.name in ("", model.spec.name)
            ]
        )

    async def ModelInfer(
        self, request: pb.ModelInferRequest, context: Context
    ) -> pb.ModelInferResponse:
        tenant = current_tenant()
        with self._metrics.observed("grpc", "ModelInfer", tenant, request.model_name):
            return await self._infer(
                request, _deadline(context), object(), tenant, caller(context, tenant)
            )

    async def ModelStreamInfer(
        self, request_iterator: AsyncIterable[pb.ModelInferRequest], context: Context
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        tenant = current_tenant()
        who = caller(context, tenant)
        deadline = _deadline(context)
        flow = object()  # the stream's requests take turns with other callers' as one flow
        answers: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue()
        unanswered = asyncio.Semaphore(EVERY_FRAME_WINDOW)
        running: set[asyncio.Task[None]] = set()

        async def answer(request: pb.ModelInferRequest) -> None:
            try:
                with self._metrics.observed("grpc", "ModelStreamInfer", tenant, request.model_name):
                    response = await self._infer(request, deadline, flow, tenant, who)
            except Exception as error:
                answers.put_nowait(_stream_error(request, error))
                return
            answers.put_nowait(pb.ModelStreamInferResponse(infer_response=response))

        async def read() -> None:
            try:
                async for request in request_iterator:
                    await unanswered.acquire()
                    task = asyncio.create_task(answer(request))
                    running.add(task)
                    task.add_done_callback(running.discard)
            finally:
                if running:
                    await asyncio.wait(set(running))
                answers.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            with self._engine.open_stream(on_drain=reader.cancel):
                while (response := await answers.get()) is not None:
                    yield response
                    unanswered.release()
                if reader.cancelled():
                    raise ShuttingDownError()
                await reader  # re-raises a failure to read the stream
        finally:
            reader.cancel()
            for task in running:
                task.cancel()

    async def _infer(
        self,
        request: pb.ModelInferRequest,
        deadline: float | None,
        flow: Hashable,
        tenant: str,
        who: str,
    ) -> pb.ModelInferResponse:
        started = time.monotonic()
        model = requests.model_signature(
            self._engine, request.model_name, request.model_version, tenant
        )
        try:
            found = requests.images(convert.inputs(request), model)
            parameters = convert.parameters(request.parameters)
            how, wanted = requests.options(model, convert.requested(request), parameters)
            results = await requests.classify(
                self._engine,
                found,
                how,
                deadline=requests.deadline(parameters, deadline),
                flow=flow,
                tenant=tenant,
                caller=who,
            )
            answering = time.monotonic()
            outputs = requests.outputs(results, wanted)
            response = convert.infer_response(request, model, outputs)
        except Exception:
            self._statistics.failed(model.name, started)
            raise
        self._statistics.succeeded(model.name, results, started, time.monotonic() - answering)
        return response


def _stream_error(
    request: pb.ModelInferRequest, error: BaseException
) -> pb.ModelStreamInferResponse:
    """A failed request of a stream: Triton's error_message, which starts with the canonical
    code and the ErrorInfo reason ("INVALID_ARGUMENT IMAGE_UNDECODABLE: ...")."""
    status = to_status(error)
    reason = error.reason if isinstance(error, RecognizerError) else "INTERNAL"
    return pb.ModelStreamInferResponse(
        error_message=f"{code_for(error).name} {reason}: {status.message}",
        infer_response=pb.ModelInferResponse(
            model_name=request.model_name, model_version=request.model_version, id=request.id
        ),
    )


def _deadline(context: Context) -> float | None:
    """The caller's deadline as a time.monotonic() instant, if it set one."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining
