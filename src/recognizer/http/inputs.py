"""Read a ClassifyRequest from HTTP: query fields, then the body by its content type.

    image/* or application/octet-stream   the body is the image
    multipart/form-data                   an `image` file, and fields as in the query
    application/json                      a ClassifyRequest in the proto's JSON mapping

The query's fields (`top_k`, `min_score`, `language`, `model`, `request_id`, `priority`:
low, normal or high) come first and the body's win over them. The deadline is
`X-Request-Timeout`, in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from google.protobuf import json_format
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from recognizer.errors import QUOTED_CHARS, InvalidRequestError, quoted
from recognizer.priorities import PRIORITY_NAMES
from recognizer.v1 import recognizer_pb2 as pb

TIMEOUT_HEADER = "X-Request-Timeout"
OPTION_FIELDS = ("top_k", "min_score", "language", "model", "request_id", "priority")
IMAGE_FIELD = "image"
_UINT32_MAX = 2**32 - 1


async def classify_request(request: Request) -> pb.ClassifyRequest:
    """The request as the gRPC message it stands for."""
    message = pb.ClassifyRequest()
    merge_options(message, request.query_params)
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type.startswith("image/") or media_type == "application/octet-stream":
        message.image = await request.body()
    elif media_type == "multipart/form-data":
        await _merge_form(message, request)
    elif media_type == "application/json":
        _merge_json(message, await request.body())
    else:
        raise HTTPException(
            415,
            f"Content-Type {quoted(media_type or '(none)')} is not accepted: send the image itself"
            " (image/*), a multipart/form-data form with an `image` file, or application/json",
        )
    return message


def merge_options(
    message: pb.ClassifyRequest, fields: Mapping[str, str], names: Sequence[str] = OPTION_FIELDS
) -> None:
    """Set the options in `fields` (query or form strings); names not in `names` are refused."""
    for name, value in fields.items():
        if name not in names:
            raise InvalidRequestError(
                f"unknown field {quoted(name)}; the fields are {', '.join(names)}",
                field=name[:QUOTED_CHARS],
            )
        match name:
            case "top_k":
                message.top_k = whole_number(name, value)
            case "min_score":
                message.min_score = _number(name, value)
            case "priority":
                message.priority = _priority(name, value)
            case _:
                setattr(message, name, value)


def _priority(name: str, value: str) -> pb.Priority:
    """A priority class by its name: low, normal or high."""
    priority = PRIORITY_NAMES.get(value.strip().lower())
    if priority is None:
        raise InvalidRequestError(
            f"{name} must be low, normal or high, not {quoted(value)}", field=name
        )
    return priority


def timeout(request: Request) -> float | None:
    """Seconds the caller will wait, from X-Request-Timeout; None when it sets none."""
    value = request.headers.get(TIMEOUT_HEADER)
    if value is None:
        return None
    seconds = _number(TIMEOUT_HEADER, value)
    if seconds <= 0:
        raise InvalidRequestError(
            f"{TIMEOUT_HEADER} must be a positive number of seconds, got {quoted(value)}",
            field=TIMEOUT_HEADER,
        )
    return seconds


async def _merge_form(message: pb.ClassifyRequest, request: Request) -> None:
    async with request.form(max_files=1, max_fields=len(OPTION_FIELDS)) as form:
        fields: dict[str, str] = {}
        for name, value in form.multi_items():
            if isinstance(value, str) and name != IMAGE_FIELD:
                fields[name] = value
            elif isinstance(value, UploadFile) and name == IMAGE_FIELD:
                message.image = await value.read()
            else:
                raise InvalidRequestError(
                    f"the image goes in a file field named {IMAGE_FIELD!r}",
                    field=name[:QUOTED_CHARS],
                )
        merge_options(message, fields)


def _merge_json(message: pb.ClassifyRequest, body: bytes) -> None:
    try:
        json_format.Parse(body, message)
    except (json_format.ParseError, UnicodeDecodeError) as error:
        raise InvalidRequestError(
            f"the body is not a ClassifyRequest in JSON (UTF-8): {quoted(str(error), 200)}",
            field="body",
        ) from None


def whole_number(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if not 0 <= number <= _UINT32_MAX:
        raise InvalidRequestError(
            f"{name} must be a whole number >= 0, got {quoted(value)}", field=name
        )
    return number


def _number(name: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise InvalidRequestError(f"{name} must be a number, got {quoted(value)}", field=name)
    return number
