"""The model admin calls over HTTP, mirroring gRPC's ModelAdminService as Google's custom
methods spell them: POST /v1/models/{name}:load, /v1/models/{name}:unload and
/v1/config:reload, each taking the gRPC request (its fields optional) in the proto's JSON
mapping and answering its response. The admin right is checked as over gRPC."""

from __future__ import annotations

from typing import TypeVar

from google.protobuf import json_format
from google.protobuf.message import Message
from starlette.requests import Request
from starlette.responses import Response

from recognizer.errors import InvalidRequestError, quoted
from recognizer.http import jsonmap
from recognizer.http.auth import tenant_of
from recognizer.http.errors import error_response
from recognizer.security.addresses import canonical_host
from recognizer.security.policy import Security
from recognizer.service import convert
from recognizer.service.metrics import ServerMetrics
from recognizer.service.models import ModelManager
from recognizer.v1 import recognizer_pb2 as pb

M = TypeVar("M", bound=Message)


class Admin:
    """The admin endpoints, over the service's model manager."""

    def __init__(self, models: ModelManager, security: Security, metrics: ServerMetrics) -> None:
        self._models = models
        self._security = security
        self._metrics = metrics

    async def load(self, request: Request) -> Response:
        """POST /v1/models/{name}:load: a LoadModelRequest; a LoadModelResponse."""
        tenant = tenant_of(request)
        name = request.path_params["name"]
        try:
            with self._metrics.observed("http", "LoadModel", tenant, name):
                self._check(request)
                message = await _body(request, pb.LoadModelRequest())
                versions = await self._models.load(name, message.source)
        except Exception as error:
            return error_response(error)
        return jsonmap.response(pb.LoadModelResponse(versions=convert.to_versions(versions)))

    async def unload(self, request: Request) -> Response:
        """POST /v1/models/{name}:unload: an UnloadModelRequest; an UnloadModelResponse."""
        tenant = tenant_of(request)
        name = request.path_params["name"]
        try:
            with self._metrics.observed("http", "UnloadModel", tenant, name):
                self._check(request)
                message = await _body(request, pb.UnloadModelRequest())
                versions = await self._models.unload(name, message.version)
        except Exception as error:
            return error_response(error)
        return jsonmap.response(pb.UnloadModelResponse(versions=convert.to_versions(versions)))

    async def reload(self, request: Request) -> Response:
        """POST /v1/config:reload: a ReloadConfigResponse."""
        tenant = tenant_of(request)
        try:
            with self._metrics.observed("http", "ReloadConfig", tenant):
                self._check(request)
                changes = await self._models.reload_config()
        except Exception as error:
            return error_response(error)
        return jsonmap.response(
            pb.ReloadConfigResponse(changes=[convert.to_model_change(c) for c in changes])
        )

    def _check(self, request: Request) -> None:
        client = request.client
        self._security.check_admin(
            tenant_of(request), canonical_host(client.host if client else "")
        )


async def _body(request: Request, message: M) -> M:
    """The request's JSON body read into `message`; no body is an empty message (the model's
    name is the path's, whatever the body says)."""
    body = await request.body()
    if body.strip():
        try:
            json_format.Parse(body, message)
        except (json_format.ParseError, UnicodeDecodeError) as error:
            kind = type(message).__name__
            raise InvalidRequestError(
                f"the body is not a {kind} in JSON (UTF-8): {quoted(str(error), 200)}",
                field="body",
            ) from None
    return message
