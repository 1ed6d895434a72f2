"""grpc's health service, answering each caller only about what it may know of.

Probes (Kubernetes', Envoy's, `recognizer health`) ask for "" (the whole server) or the
service's name, and send no token (--public-health). A model's own health says that the
model is served, so with auth on it is answered only to a tenant that may use the model,
as ListModels lists only those: to anyone else a served model's name is as unknown as a
name never served (Check: NOT_FOUND; Watch: SERVICE_UNKNOWN).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2

Context = grpc.aio.ServicerContext[Any, Any]


class HealthServicer(health.aio.HealthServicer):
    """The health service; `may_know(service)` says whether the caller being served may learn
    how that service is."""

    def __init__(self, may_know: Callable[[str], bool]) -> None:
        super().__init__()
        self._may_know = may_know

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: Context
    ) -> health_pb2.HealthCheckResponse:
        if not self._may_know(request.service):
            await context.abort(grpc.StatusCode.NOT_FOUND)
        return await super().Check(request, context)

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Context) -> None:
        if self._may_know(request.service):
            await super().Watch(request, context)
            return
        unknown = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        await context.write(health_pb2.HealthCheckResponse(status=unknown))
        await asyncio.get_running_loop().create_future()  # as for a name never served: ever
