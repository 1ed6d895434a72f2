"""The OpenAPI 3.0 document of the HTTP API, served at /openapi.json (and drawn at /docs).

The paths are written here; the schemas of the messages are read from the proto's
descriptors in its JSON mapping as jsonmap.py prints it (the proto's field names, 64-bit
integers as strings, bytes as base64, enums by name), so they cannot drift from what the
API answers. With auth on, the paths that need a token say so (a bearer security scheme,
which the docs page's Authorize button fills in), and may answer 401.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, cast

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from recognizer.http.auth import STREAM_PROTOCOL, TOKEN_PROTOCOL
from recognizer.http.errors import HTTP_FAILURES
from recognizer.http.inputs import OPTION_FIELDS, TIMEOUT_HEADER
from recognizer.http.stream import FRAME_OPTIONS, POLICIES
from recognizer.http.v2 import paths as v2_paths
from recognizer.v1 import recognizer_pb2 as pb

Schema = dict[str, Any]

_SCALARS: dict[int, Schema] = {
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte"},
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldDescriptor.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldDescriptor.TYPE_INT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_SINT32: {"type": "integer", "format": "int32"},
    FieldDescriptor.TYPE_UINT32: {"type": "integer", "format": "int32", "minimum": 0},
    FieldDescriptor.TYPE_INT64: {"type": "string", "format": "int64"},
    FieldDescriptor.TYPE_SINT64: {"type": "string", "format": "int64"},
    FieldDescriptor.TYPE_UINT64: {"type": "string", "format": "int64"},
}
# google.protobuf.Any in JSON: the message's own fields beside its "@type".
_ANY: Schema = {
    "type": "object",
    "properties": {"@type": {"type": "string"}},
    "required": ["@type"],
    "additionalProperties": True,
}
_OPTIONS: dict[str, Schema] = {
    "top_k": {"type": "integer", "minimum": 0, "description": "labels to answer; 0 means 5"},
    "min_score": {"type": "number", "minimum": 0, "maximum": 1},
    "language": {"type": "string", "example": "en", "description": "zh (the default) or en"},
    "model": {"type": "string", "description": "a served model; empty means the default"},
    "request_id": {"type": "string", "description": "echoed in the answer"},
    "priority": {
        "type": "string",
        "enum": ["low", "normal", "high"],
        "description": "how soon it runs beside others waiting, within the tenant's highest;"
        " unset: high for a stream's frames, normal for a call",
    },
}


BEARER = {
    "type": "http",
    "scheme": "bearer",
    "description": "A token of the server's tokens file. A WebSocket may offer it as the"
    f" subprotocol {TOKEN_PROTOCOL}<the token in base64url> beside {STREAM_PROTOCOL}.",
}


def document(version: str, *, guarded: Collection[str] = ()) -> Schema:
    """The whole OpenAPI document; `guarded` are the paths that need a token."""
    schemas: dict[str, Schema] = {"Error": _error_schema()}
    for message in (
        pb.ClassifyRequest,
        pb.ClassifyResponse,
        pb.ListModelsResponse,
        pb.LoadModelRequest,
        pb.LoadModelResponse,
        pb.UnloadModelRequest,
        pb.UnloadModelResponse,
        pb.ReloadConfigResponse,
    ):
        _add_message(cast(Descriptor, message.DESCRIPTOR), schemas)
    paths = _paths()
    components: Schema = {"schemas": schemas}
    if guarded:
        components["securitySchemes"] = {"bearer": BEARER}
    for path in guarded:
        for operation in paths[path].values():
            operation["security"] = [{"bearer": []}]
            operation["responses"]["401"] = _error("401", "no token, or a wrong or revoked one")
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "recognizer",
            "version": version,
            "description": "Image recognition: ranked labels and scores in Chinese and English."
            " The same service as gRPC's recognizer.v1.Recognizer, in the proto's JSON mapping.",
        },
        "paths": paths,
        "components": components,
    }


def _paths() -> dict[str, Schema]:
    return {
        "/v1/classify": {"post": _classify()},
        "/v1/classify/stream": {"get": _stream()},
        "/v1/models": {"get": _get("List the served models", _ref("ListModelsResponse"))},
        "/v1/models/{name}:load": {
            "post": _admin("Load or reload a model", "LoadModelRequest", "LoadModelResponse")
        },
        "/v1/models/{name}:unload": {
            "post": _admin("Unload a model or version", "UnloadModelRequest", "UnloadModelResponse")
        },
        "/v1/config:reload": {
            "post": _admin("Read the config file again", None, "ReloadConfigResponse")
        },
        "/healthz": {"get": _get("Alive", {"type": "object"})},
        "/readyz": {"get": _get("Every model serving, not draining", {"type": "object"})},
        "/metrics": {"get": _metrics()},
        **v2_paths(),
    }


def _classify() -> Schema:
    image = {"type": "string", "format": "binary"}
    form = {
        "type": "object",
        "properties": {"image": image} | {name: _OPTIONS[name] for name in OPTION_FIELDS},
        "required": ["image"],
    }
    parameters = [_query(name) for name in OPTION_FIELDS]
    parameters.append(
        {
            "name": TIMEOUT_HEADER,
            "in": "header",
            "schema": {"type": "number", "exclusiveMinimum": True, "minimum": 0},
            "description": "seconds the caller will wait: past it the answer is 504",
        }
    )
    errors = {
        "400": "invalid image or field",
        "403": "a model off the tenant's list, or a page of another site",
        "404": "unknown model",
        "413": "body over --max-message-mb",
        "415": "content type not accepted",
        "429": "the model's queue is full: retry after Retry-After seconds",
        "500": "a bug",
        "503": "draining: retry on another replica",
        "504": "the deadline passed",
    }
    return {
        "summary": "Classify one image",
        "description": "The image as the body (image/*), as the `image` file of a form, or a"
        " ClassifyRequest in JSON (the image in base64). The query's fields apply to all three;"
        " the body's win.",
        "parameters": parameters,
        "requestBody": {
            "required": True,
            "content": {
                "image/*": {"schema": image},
                "application/octet-stream": {"schema": image},
                "multipart/form-data": {"schema": form},
                "application/json": {"schema": _ref("ClassifyRequest")},
            },
        },
        "responses": {"200": _json("The labels, best first", _ref("ClassifyResponse"))}
        | {code: _error(code, why) for code, why in errors.items()},
    }


def _stream() -> Schema:
    return {
        "summary": "Classify a stream of frames (WebSocket)",
        "description": "Upgrade to a WebSocket. Send each frame as a binary message (an encoded"
        ' image); `{"end": true}` ends them. Each frame is answered in order by a'
        " ClassifyResponse in JSON (classified, `skipped`, or with its `error`); the last"
        ' message is `{"status": ..., "frames": {"answered": n, "skipped": n, "failed": n}}`.',
        "parameters": [
            {"name": "policy", "in": "query", "schema": {"type": "string", "enum": [*POLICIES]}},
            {"name": "max_frame_age_ms", "in": "query", "schema": {"type": "integer"}},
            *(_query(name) for name in FRAME_OPTIONS),
        ],
        "responses": {"101": {"description": "Switching Protocols to WebSocket"}},
    }


def _metrics() -> Schema:
    text = {"text/plain": {"schema": {"type": "string"}}}
    ok = {"description": "The metrics of gRPC and HTTP calls alike", "content": text}
    elsewhere = _error("404", "--host reaches beyond this machine: scrape --metrics-port")
    return {
        "summary": "Prometheus metrics, when --host is a loopback address",
        "responses": {"200": ok, "404": elsewhere},
    }


def _admin(summary: str, request: str | None, response: str) -> Schema:
    """A ModelAdminService call: its request in JSON (every field optional), the admin right."""
    operation: Schema = {
        "summary": summary,
        "description": "Needs the admin right: a tenant with admin=yes in the tokens file;"
        " with auth off, --admin and a caller on loopback.",
        "responses": {
            "200": _json(summary, _ref(response)),
            "400": _error("400", "the model did not load (what served before still does)"),
            "403": _error("403", "no admin right"),
            "404": _error("404", "unknown model or version"),
            "507": _error("507", "not enough memory to load the version beside the old one"),
        },
    }
    if request is not None:
        operation["parameters"] = [
            {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
        ]
        operation["requestBody"] = {
            "required": False,
            "content": {"application/json": {"schema": _ref(request)}},
        }
    return operation


def _get(summary: str, schema: Schema) -> Schema:
    return {"summary": summary, "responses": {"200": _json(summary, schema)}}


def _query(name: str) -> Schema:
    return {"name": name, "in": "query", "schema": _OPTIONS[name]}


def _json(description: str, schema: Schema) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(code: str, description: str) -> Schema:
    response = _json(description, {"$ref": "#/components/schemas/Error"})
    if code == "429":
        response["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
    return response


def _error_schema() -> Schema:
    reasons = sorted({reason for _, reason in HTTP_FAILURES.values()})
    return {
        "type": "object",
        "properties": {
            "error": {
                "type": "object",
                "properties": {
                    "code": {"type": "integer", "description": "the HTTP code"},
                    "message": {"type": "string"},
                    "status": {"type": "string", "description": "the canonical (gRPC) code"},
                    "details": {
                        "type": "array",
                        "items": _ANY,
                        "description": "google.rpc details, an ErrorInfo first, whose `reason`"
                        f" is gRPC's or one of HTTP's own: {', '.join(reasons)}",
                    },
                },
            }
        },
    }


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _add_message(descriptor: Descriptor, schemas: dict[str, Schema]) -> str:
    """Add a message's schema (and those it refers to); returns its name."""
    name = descriptor.name if descriptor.file.package == "recognizer.v1" else descriptor.full_name
    if name in schemas:
        return name
    schemas[name] = {}  # refers to itself: stop here
    properties = {field.name: _field(field, schemas) for field in descriptor.fields}
    schemas[name] = {"type": "object", "properties": properties}
    return name


def _field(field: FieldDescriptor, schemas: dict[str, Schema]) -> Schema:
    if field.message_type is not None:
        if field.message_type.full_name == "google.protobuf.Any":
            schema = _ANY
        else:
            schema = _ref(_add_message(field.message_type, schemas))
    elif field.enum_type is not None:
        schema = {"type": "string", "enum": [value.name for value in field.enum_type.values]}
    else:
        schema = dict(_SCALARS[field.type])
    if field.is_repeated:
        return {"type": "array", "items": schema}
    return schema
