"""The process's log: lines for people, or one JSON object a line for machines
(--log-format json), and the access log of both doors (--access-log).

A JSON line has `time` (UTC, RFC 3339), `level`, `logger` and `message`, then whichever of
ACCESS_FIELDS apply to it (the door, method, status and reason of a call, its request id,
the caller's trace id, tenant, model, peer), and `exception` with a traceback. Nothing
secret is given to a log line: not a token, a key or an image's bytes; a request id the
client chose is cut to 256 characters, as every door's echo of it is.

The access log writes one line a call when it ends, on the logger `recognizer.access`:
every call that failed, and `sample` of those answered (--access-log-sample), so that a
busy server can keep its errors without a line per answer.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
ACCESS_FIELDS = (
    "door",
    "method",
    "status",
    "reason",
    "duration_ms",
    "request_id",
    "trace_id",
    "tenant",
    "model",
    "peer",
)
MAX_FIELD_CHARS = 256

_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")

access_logger = logging.getLogger("recognizer.access")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: the record's own fields, then those of ACCESS_FIELDS it has."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in ACCESS_FIELDS:
            value = getattr(record, field, None)
            if value not in (None, ""):
                line[field] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(level: str, log_format: LogFormat = "text") -> None:
    """Log to stderr at `level`, in `log_format`; a no-op once configured."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = logging.StreamHandler()
    json_lines = log_format == "json"
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.captureWarnings(json_lines)  # a warning is a line like any other


def trace_id(headers: Mapping[str, str]) -> str:
    """The caller's W3C trace id, from its `traceparent` header or metadata; "" without one
    (or a malformed one), so that a call's lines can be found beside its caller's."""
    match = _TRACEPARENT.fullmatch(headers.get("traceparent", "").strip())
    if match is None or match.group(1) == "0" * 32:
        return ""
    return match.group(1)


class AccessLog:
    """Writes calls' access lines: none when off, else every failed call and `sample` of
    the answered ones."""

    def __init__(self, *, enabled: bool = False, sample: float = 1.0) -> None:
        self.enabled = enabled
        self._sample = sample

    def write(self, started: float, *, ok: bool, status: str, **fields: str) -> None:
        """A call begun at `started` (time.monotonic()) ended with `status` (a canonical code
        or an HTTP status; `ok` if answered); `fields` are ACCESS_FIELDS."""
        if not self.enabled or (ok and random.random() >= self._sample):
            return
        duration_ms = round((time.monotonic() - started) * 1000, 1)
        kept = {name: value[:MAX_FIELD_CHARS] for name, value in fields.items() if value}
        details = " ".join(
            f"{name}={value}" for name, value in kept.items() if name not in ("door", "method")
        )
        access_logger.info(
            "%s %s %s %.1f ms%s",
            kept.get("door", ""),
            kept.get("method", ""),
            status,
            duration_ms,
            f" {details}" if details else "",
            extra={**kept, "status": status, "duration_ms": duration_ms},
        )
