"""The KServe v2 REST routes (the Open Inference Protocol over HTTP), beside /v1:

    GET  /v2                                       server metadata
    GET  /v2/health/live, /v2/health/ready         200, or 400 when not ready
    GET  /v2/models/{name}[/versions/N]            model metadata
    GET  /v2/models/{name}[/versions/N]/ready      200, or 400 (404: no such model)
    POST /v2/models/{name}[/versions/N]/infer      classify

Tensors are JSON as the protocol has them: `data` in row-major order, flat or nested;
BYTES elements are strings, so an IMAGE element is the encoded image in base64 (as KServe's
image examples send it), and classification answers are "score:index:label" strings. The
request, its images and its answer are the gRPC door's (recognizer.v2): the same engine,
tenant, caller, limits, outputs and statistics of success. A failure answers the HTTP code
/v1 would, with the protocol's `{"error": message}` and, beside it, the canonical `status`
and the google.rpc `details` (an ErrorInfo with the reason), as /v1's errors carry them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import recognizer
from recognizer.engine.engine import Engine
from recognizer.errors import (
    DeadlineExceededError,
    InvalidRequestError,
    ModelNotFoundError,
    ModelUnavailableError,
    RecognizerError,
)
from recognizer.http import errors
from recognizer.http.auth import caller_of, tenant_of
from recognizer.http.jsonmap import to_dict
from recognizer.service.metrics import ServerMetrics
from recognizer.service.status import code_for, to_status
from recognizer.v2 import requests
from recognizer.v2.model import EXTENSIONS, PLATFORM, SERVER_NAME, Signature, Tensor
from recognizer.v2.requests import Input, Output, Parameter, Requested

NOT_READY = 400  # the protocol: "a 4xx status code indicating false"


def routes(
    engine: Engine,
    metrics: ServerMetrics,
    *,
    token: Sequence[Middleware],
    health: Sequence[Middleware],
) -> list[Route]:
    """The routes, guarded by `token` (health routes by `health`)."""
    api = V2Api(engine, metrics)
    model = "/v2/models/{name}"
    versioned = "/v2/models/{name}/versions/{version}"
    return [
        Route("/v2", api.server_metadata, middleware=token),
        Route("/v2/health/live", api.live, middleware=health),
        Route("/v2/health/ready", api.ready, middleware=health),
        *(
            route
            for path in (model, versioned)
            for route in (
                Route(path, api.model_metadata, middleware=token),
                Route(f"{path}/ready", api.model_ready, middleware=health),
                Route(f"{path}/infer", api.infer, methods=["POST"], middleware=token),
            )
        ),
    ]


class V2Api:
    """The endpoints, over one engine and the service's metrics."""

    def __init__(self, engine: Engine, metrics: ServerMetrics) -> None:
        self._engine = engine
        self._metrics = metrics

    async def server_metadata(self, request: Request) -> Response:
        return JSONResponse(
            {"name": SERVER_NAME, "version": recognizer.__version__, "extensions": EXTENSIONS}
        )

    async def live(self, request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(self, request: Request) -> Response:
        """Ready as /readyz is: warm, some model working, not leaving."""
        if (reason := self._engine.not_ready()) is not None:
            return error_response(reason, NOT_READY)
        return JSONResponse({"ready": True})

    async def model_ready(self, request: Request) -> Response:
        name = request.path_params["name"]
        version = request.path_params.get("version", "")
        try:
            runner = self._engine.runner(
                name, requests.model_version(self._engine, name, version, "")
            )
        except ModelNotFoundError as error:
            return error_response(error)
        if (reason := self._engine.not_ready()) is not None:
            return error_response(reason, NOT_READY)
        if not runner.health.serving:
            return error_response(ModelUnavailableError(name, "its calls hang or fail"), NOT_READY)
        return JSONResponse({"ready": True})

    async def model_metadata(self, request: Request) -> Response:
        try:
            model = self._signature(request)
        except RecognizerError as error:
            return error_response(error)
        return JSONResponse(
            {
                "name": model.name,
                "versions": [str(version) for version in model.versions],
                "platform": PLATFORM,
                "inputs": [_tensor(spec) for spec in model.inputs],
                "outputs": [_tensor(spec) for spec in model.outputs],
            }
        )

    async def infer(self, request: Request) -> Response:
        """POST .../infer: a request's images classified, its outputs answered."""
        tenant = tenant_of(request)
        name = request.path_params["name"]
        try:
            with self._metrics.observed("http", "v2 infer", tenant, name):
                body = await _body(request)
                model = self._signature(request)
                found = requests.images(_inputs(body), model)
                parameters = _parameters(body.get("parameters"), "parameters")
                how, wanted = requests.options(model, _requested(body), parameters)
                deadline = requests.deadline(parameters, None)
                work = requests.classify(
                    self._engine,
                    found,
                    how,
                    deadline=deadline,
                    flow=object(),
                    tenant=tenant,
                    caller=caller_of(request),
                )
                try:
                    async with asyncio.timeout(_left(deadline)):
                        results = await work
                except TimeoutError:
                    raise DeadlineExceededError("the request's timeout passed") from None
                outputs = requests.outputs(results, wanted)
        except Exception as error:
            return error_response(error)
        answer = {
            "model_name": model.name,
            "model_version": str(model.version),
            "outputs": [_output(output) for output in outputs],
        }
        if isinstance(body.get("id"), str):
            answer["id"] = body["id"]
        return JSONResponse(answer)

    def _signature(self, request: Request) -> Signature:
        return requests.model_signature(
            self._engine,
            request.path_params["name"],
            request.path_params.get("version", ""),
            tenant_of(request),
        )


def error_response(error: BaseException, code: int | None = None) -> JSONResponse:
    """The protocol's `{"error": message}`, with the canonical status and the google.rpc
    details beside it, and /v1's HTTP code and headers (Retry-After, WWW-Authenticate)."""
    status = to_status(error)
    mapped = errors.error_response(error)
    body = {
        "error": status.message,
        "status": code_for(error).name,
        "details": [to_dict(detail, defaults=False) for detail in status.details],
    }
    kept = {name: value for name, value in mapped.headers.items() if name in _ERROR_HEADERS}
    return JSONResponse(body, status_code=code or mapped.status_code, headers=kept)


_ERROR_HEADERS = ("retry-after", "www-authenticate")


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)


def _tensor(spec: Tensor) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype, "shape": spec.shape}


def _output(output: Output) -> dict[str, Any]:
    if isinstance(output.data, list):
        data: list[Any] = [element.decode() for element in output.data]
    else:
        data = output.data.ravel().tolist()
    return {
        "name": output.name,
        "datatype": output.datatype,
        "shape": list(output.shape),
        "data": data,
    }


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InvalidRequestError(f"the body is not JSON: {error}", field="body") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("the body must be a JSON object", field="body")
    return body


def _inputs(body: dict[str, Any]) -> list[Input]:
    sent = body.get("inputs")
    if not isinstance(sent, list):
        raise InvalidRequestError("`inputs` must be a list of tensors", field="inputs")
    found = []
    for index, tensor in enumerate(sent):
        field = f"inputs[{index}]"
        if not isinstance(tensor, dict):
            raise InvalidRequestError("an input must be a JSON object", field=field)
        name, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
        if not isinstance(name, str) or not isinstance(datatype, str):
            raise InvalidRequestError("an input needs a `name` and a `datatype`", field=field)
        if not isinstance(shape, list) or not all(_whole(dim) for dim in shape):
            raise InvalidRequestError(
                "`shape` must be a list of whole numbers", field=f"{field}.shape"
            )
        data = _bytes(tensor.get("data"), field) if datatype == "BYTES" else _uint8(tensor, field)
        found.append(Input(name, datatype, tuple(shape), data, field))
    return found


def _bytes(data: object, field: str) -> list[bytes]:
    """A BYTES tensor's elements: base64 strings."""
    try:
        return [base64.b64decode(_string(element), validate=True) for element in _flat(data)]
    except (binascii.Error, TypeError, ValueError):
        raise InvalidRequestError(
            "BYTES elements must be strings: an image in base64", field=f"{field}.data"
        ) from None


def _flat(data: object) -> Iterator[object]:
    if not isinstance(data, list):
        raise TypeError("not a list")
    for item in data:
        if isinstance(item, list):
            yield from _flat(item)
        else:
            yield item


def _string(element: object) -> str:
    if not isinstance(element, str):
        raise TypeError("not a string")
    return element


def _uint8(tensor: dict[str, Any], field: str) -> bytes:
    """A numeric tensor's data as bytes, if every value is within [0, 255]."""
    try:
        values = np.asarray(tensor.get("data"), dtype=np.int64).ravel()
    except (TypeError, ValueError):
        raise InvalidRequestError(
            "`data` must be numbers, in row-major order", field=f"{field}.data"
        ) from None
    if values.size and (values.min() < 0 or values.max() > 255):
        raise InvalidRequestError("UINT8 values must be within [0, 255]", field=f"{field}.data")
    return values.astype(np.uint8).tobytes()


def _parameters(sent: object, field: str) -> dict[str, Parameter]:
    if sent is None:
        return {}
    if not isinstance(sent, dict) or not all(
        isinstance(value, str | int | float | bool) for value in sent.values()
    ):
        raise InvalidRequestError("`parameters` must map names to plain values", field=field)
    return dict(sent)


def _requested(body: dict[str, Any]) -> list[Requested]:
    sent = body.get("outputs") or []
    if not isinstance(sent, list):
        raise InvalidRequestError("`outputs` must be a list", field="outputs")
    found = []
    for index, output in enumerate(sent):
        field = f"outputs[{index}]"
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise InvalidRequestError("an output needs a `name`", field=field)
        parameters = _parameters(output.get("parameters"), f"{field}.parameters")
        class_count = parameters.get(requests.CLASS_COUNT, 0)
        if not _whole(class_count):
            raise InvalidRequestError(
                f"{requests.CLASS_COUNT} must be a whole number",
                field=f"{field}.parameters.{requests.CLASS_COUNT}",
            )
        found.append(Requested(output["name"], int(class_count), field))
    return found


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def paths() -> dict[str, Any]:
    """The routes for the OpenAPI document: the protocol's own JSON, described briefly."""
    json_object = {"application/json": {"schema": {"type": "object"}}}

    def operation(summary: str, path: str, **more: Any) -> dict[str, Any]:
        names = [name for name in ("name", "version") if f"{{{name}}}" in path]
        return {
            "summary": summary,
            "parameters": [
                {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                for name in names
            ],
            "responses": {"200": {"description": summary, "content": json_object}},
            **more,
        }

    found: dict[str, Any] = {
        "/v2": {"get": operation("Server metadata", "/v2")},
        "/v2/health/live": {"get": operation("Alive", "")},
        "/v2/health/ready": {"get": operation("Ready (400: not ready)", "")},
    }
    for path in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        found[path] = {"get": operation("Model metadata", path)}
        found[f"{path}/ready"] = {"get": operation("The model is ready (400: not)", path)}
        found[f"{path}/infer"] = {
            "post": operation(
                "Classify images (a KServe v2 inference request)",
                path,
                description="Input IMAGE (BYTES: images in base64, shape [n, 1]) or PIXELS"
                " (UINT8: RGB pixels, shape [n, height, width, 3]); output PROBABILITIES (FP32"
                " [n, classes]) or, with its parameter `classification: k`, the top k as"
                ' "score:index:label" strings; the request parameter `language` names the'
                " labels' language (zh by default).",
                requestBody={"required": True, "content": json_object},
            )
        }
    return found
