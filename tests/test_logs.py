"""Log lines for machines: the JSON formatter, the caller's trace id, and the access log's
sampling (the whole path, through both doors, is in tests/cli/test_main.py)."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from recognizer.logs import AccessLog, JsonFormatter, trace_id


def record(message: str, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("recognizer.test", logging.WARNING, __file__, 1, message, (), None)
    made.__dict__.update(extra)
    return made


def test_a_json_line_has_the_records_fields_and_those_of_a_call() -> None:
    line = json.loads(
        JsonFormatter().format(
            record("refused 字", status="UNAUTHENTICATED", tenant="", peer="::1")
        )
    )
    assert line.keys() == {"time", "level", "logger", "message", "status", "peer"}
    assert (line["level"], line["logger"], line["message"]) == (
        "WARNING",
        "recognizer.test",
        "refused 字",
    )
    assert line["time"].endswith("+00:00")


def test_a_json_line_carries_its_exception_on_the_same_line() -> None:
    try:
        _ = 1 / 0
    except ZeroDivisionError:
        failed = record("failed")
        failed.exc_info = sys.exc_info()
    text = JsonFormatter().format(failed)
    assert "\n" not in text
    assert "ZeroDivisionError" in json.loads(text)["exception"]


TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(
    ("traceparent", "expected"),
    [
        (f"00-{TRACE}-00f067aa0ba902b7-01", TRACE),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", ""),  # invalid: all zeros
        (f"00-{TRACE.upper()}-00f067aa0ba902b7-01", ""),  # upper case
        (f"00-{TRACE}-01", ""),
        ("", ""),
    ],
)
def test_the_trace_id_is_read_from_a_valid_traceparent_only(
    traceparent: str, expected: str
) -> None:
    assert trace_id({"traceparent": traceparent}) == expected


def test_a_sampled_access_log_keeps_every_failure(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "recognizer.access")
    sampled = AccessLog(enabled=True, sample=0.0)
    for _ in range(20):
        sampled.write(0.0, ok=True, status="OK", door="grpc")
    sampled.write(0.0, ok=False, status="INTERNAL", door="grpc", request_id="x" * 1000)
    AccessLog().write(0.0, ok=False, status="INTERNAL", door="grpc")  # off
    assert [line.status for line in caplog.records] == ["INTERNAL"]  # type: ignore[attr-defined]
    assert len(caplog.records[0].request_id) == 256  # type: ignore[attr-defined]
