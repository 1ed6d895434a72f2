"""recognizer.v1 messages in the proto's JSON mapping, so HTTP answers what gRPC answers.

Fields are printed even at their defaults (a label of class 0 keeps its `classId`), in
lowerCamelCase, with 64-bit integers as strings and bytes as base64, as the mapping says.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from starlette.responses import JSONResponse


def to_dict(message: Message) -> dict[str, Any]:
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def response(message: Message, status_code: int = 200) -> JSONResponse:
    return JSONResponse(to_dict(message), status_code=status_code)
