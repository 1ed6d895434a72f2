"""The JSON API: each endpoint reads its request, awaits the engine, answers a message.

Classify goes through Engine.classify as a gRPC call does, so admission, batching, the
cache and the limits are the same; its answer is the same ClassifyResponse. The caller's
tenant (named by auth.py; "" with auth off) goes with it, as gRPC's servicer passes it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from recognizer.engine.engine import Engine
from recognizer.errors import DeadlineExceededError
from recognizer.http import inputs, jsonmap
from recognizer.http.auth import caller_of, tenant_of
from recognizer.http.errors import error_response
from recognizer.service import convert
from recognizer.service.metrics import ServerMetrics
from recognizer.v1 import recognizer_pb2 as pb

T = TypeVar("T")

CLIENT_CLOSED_REQUEST = 499  # nginx's code for a caller that hung up; nobody reads it


class ClientGone(Exception):
    """The caller closed the connection before its answer was ready."""


class Api:
    """The endpoints, over one engine and the service's metrics."""

    def __init__(self, engine: Engine, metrics: ServerMetrics) -> None:
        self._engine = engine
        self._metrics = metrics

    async def classify(self, request: Request) -> Response:
        """POST /v1/classify: one image, answered as a ClassifyResponse."""
        started = time.monotonic()
        tenant = tenant_of(request)
        passing = (HTTPException, ClientGone)
        try:
            with self._metrics.observed("http", "classify", tenant, passing=passing) as call:
                message = await inputs.classify_request(request)
                call.model = message.model
                seconds = inputs.timeout(request)
                deadline = None if seconds is None else started + seconds
                work = self._engine.classify(
                    convert.to_image(message),
                    convert.to_options(message),
                    deadline=deadline,
                    tenant=tenant,
                    caller=caller_of(request),
                )
                try:
                    async with asyncio.timeout(_left(deadline)):
                        result = await _unless_gone(request, work)
                except TimeoutError:
                    raise DeadlineExceededError(
                        f"the deadline ({inputs.TIMEOUT_HEADER}: {seconds}) passed"
                    ) from None
        except HTTPException:
            raise  # HTTP's own failures: errors.http_exception answers them
        except ClientGone:
            return Response(status_code=CLIENT_CLOSED_REQUEST)
        except Exception as error:
            return error_response(error)
        return jsonmap.response(convert.to_response(convert.request_id(message), result))

    async def list_models(self, request: Request) -> Response:
        """GET /v1/models: every version of the models the caller's tenant may use, and its
        state, as a ListModelsResponse."""
        tenant = tenant_of(request)
        models = convert.to_versions(
            [e for e in self._engine.models.entries() if self._engine.may_use(tenant, e.name)]
        )
        return jsonmap.response(pb.ListModelsResponse(models=models))

    async def healthz(self, request: Request) -> Response:
        """GET /healthz: the process is up and answering (draining included)."""
        return JSONResponse({"status": "SERVING"})

    async def readyz(self, request: Request) -> Response:
        """GET /readyz: the models are warm, some model works, and the server is not leaving.
        It names no model: a probe needs none, and /v1/models lists a tenant's own."""
        if (reason := self._engine.not_ready()) is not None:
            return error_response(reason)
        return JSONResponse({"status": "SERVING"})

    async def metrics(self, request: Request) -> Response:
        """GET /metrics: the service's Prometheus metrics, gRPC and HTTP alike."""
        return Response(generate_latest(self._metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def metrics_elsewhere(self, request: Request) -> Response:
        """GET /metrics on a port other machines reach: the metrics stay on --metrics-port,
        which answers beyond this machine only when --metrics-host says so."""
        raise HTTPException(
            404,
            "the metrics are not served on an HTTP port other machines can reach: scrape"
            " --metrics-port",
        )


def _left(deadline: float | None) -> float | None:
    """Seconds until a time.monotonic() deadline (None: no deadline)."""
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


async def _unless_gone(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, or cancel it (the engine then drops the job) if the caller hangs up.

    The body has been read, so the next ASGI message is the disconnect.
    """
    answer = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnect(request))
    try:
        await asyncio.wait((answer, gone), return_when=asyncio.FIRST_COMPLETED)
        if answer.done():
            return answer.result()
        raise ClientGone()
    finally:
        answer.cancel()
        gone.cancel()


async def _disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
