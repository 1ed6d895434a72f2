"""recognizer.v1 messages in the proto's JSON mapping, so HTTP answers what gRPC answers.

Fields keep the proto's names (`class_id`, as grpcurl prints them and as the query's
`top_k` is spelled; the mapping allows this, and parsers take both spellings) and are
printed even at their defaults (a label of class 0 keeps its `class_id`); 64-bit
integers are strings and bytes base64, as the mapping says.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from starlette.responses import JSONResponse


def to_dict(message: Message, *, defaults: bool = True) -> dict[str, Any]:
    """The message as JSON values; `defaults=False` leaves out fields at their defaults."""
    return json_format.MessageToDict(
        message, always_print_fields_with_no_presence=defaults, preserving_proto_field_name=True
    )


def response(message: Message, status_code: int = 200) -> JSONResponse:
    return JSONResponse(to_dict(message), status_code=status_code)
