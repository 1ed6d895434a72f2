"""Priority classes by the names people write (low, normal, high), named once for the
HTTP door and `recognizer bench`, from the contract's enum. Only the generated messages
here, so a client process imports it without the engine.
"""

from __future__ import annotations

from typing import cast

from recognizer.v1 import recognizer_pb2 as pb

PRIORITY_NAMES = {
    name.removeprefix("PRIORITY_").lower(): cast("pb.Priority", number)
    for name, number in pb.Priority.items()
    if number != pb.PRIORITY_UNSPECIFIED
}
