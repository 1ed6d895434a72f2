"""The ModelAdminService servicer: each call checks the admin right, then delegates to the
model manager (service/models.py) and converts its answer. Errors go to the door
(transport/door.py), which ends the call with their status."""

from __future__ import annotations

from typing import Any

import grpc

from recognizer.security.policy import Security
from recognizer.service import convert
from recognizer.service.metrics import ServerMetrics
from recognizer.service.models import ModelManager
from recognizer.transport.auth import current_tenant
from recognizer.transport.callers import peer_host
from recognizer.v1 import recognizer_pb2 as pb
from recognizer.v1 import recognizer_pb2_grpc as pb_grpc

Context = grpc.aio.ServicerContext[Any, Any]


class ModelAdminServicer(pb_grpc.ModelAdminServiceServicer):
    """Serves recognizer.v1.ModelAdminService on top of a ModelManager."""

    def __init__(self, models: ModelManager, security: Security, metrics: ServerMetrics) -> None:
        self._models = models
        self._security = security
        self._metrics = metrics

    async def LoadModel(
        self, request: pb.LoadModelRequest, context: Context
    ) -> pb.LoadModelResponse:
        tenant = current_tenant()
        with self._metrics.observed("grpc", "LoadModel", tenant, request.name):
            self._admin(context)
            versions = await self._models.load(request.name, request.source)
        return pb.LoadModelResponse(versions=convert.to_versions(versions))

    async def UnloadModel(
        self, request: pb.UnloadModelRequest, context: Context
    ) -> pb.UnloadModelResponse:
        tenant = current_tenant()
        with self._metrics.observed("grpc", "UnloadModel", tenant, request.name):
            self._admin(context)
            versions = await self._models.unload(request.name, request.version)
        return pb.UnloadModelResponse(versions=convert.to_versions(versions))

    async def ReloadConfig(
        self, request: pb.ReloadConfigRequest, context: Context
    ) -> pb.ReloadConfigResponse:
        tenant = current_tenant()
        with self._metrics.observed("grpc", "ReloadConfig", tenant):
            self._admin(context)
            changes = await self._models.reload_config()
        return pb.ReloadConfigResponse(changes=[convert.to_model_change(c) for c in changes])

    def _admin(self, context: Context) -> None:
        """Refuse a caller without the admin right."""
        self._security.check_admin(current_tenant(), peer_host(context.peer()))
