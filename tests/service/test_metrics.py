"""Prometheus metrics, scraped over HTTP from a real server after real calls, and the call
skeleton every door counts its calls through."""

from __future__ import annotations

import logging
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fakes import colour_model, solid_png
from recognizer.client import Client
from recognizer.errors import InvalidImageError
from recognizer.v1 import recognizer_pb2 as pb
from support import ServerThread


def scrape(running: ServerThread) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    url = f"http://127.0.0.1:{running.server.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_calls_frames_batches_and_cache() -> None:
    with (
        ServerThread(
            [colour_model()],
            metrics_port=0,
            max_batch_size=4,
            max_batch_delay_ms=20,
            cache_entries=16,
        ) as running,
        Client(running.address) as client,
    ):
        image = solid_png((200, 0, 0))
        client.classify(image)
        client.classify(image)  # a cache hit
        with pytest.raises(grpc.RpcError):
            client.classify(b"junk")
        frames = (pb.ClassifyRequest(image=solid_png((0, 0, 9 * i))) for i in range(1, 9))
        assert len(list(client.classify_stream(frames))) == 8
        metrics = scrape(running)

    grpc_calls = (("model", "colours"), ("transport", "grpc"))
    ok = metrics[("recognizer_requests_total", (("code", "OK"), *grpc_calls))]
    assert ok == 10
    invalid = ("recognizer_requests_total", (("code", "INVALID_ARGUMENT"), *grpc_calls))
    assert metrics[invalid] == 1
    assert metrics[("recognizer_request_seconds_count", (("model", "colours"),))] == 11
    batches = metrics[("recognizer_batch_size_count", (("model", "colours"),))]
    images = metrics[("recognizer_batch_size_sum", (("model", "colours"),))]
    assert images == 9 and batches < images  # the stream's frames shared batches
    assert metrics[("recognizer_cache_lookups_total", (("result", "hit"),))] == 1
    assert metrics[("recognizer_queued_requests", (("model", "colours"),))] == 0
    assert metrics[("recognizer_open_streams", ())] == 0
    assert metrics[("recognizer_model_serving", (("model", "colours"),))] == 1
    assert metrics[("recognizer_decoding_bytes", ())] == 0


class ClientLeft(Exception):
    """What a door raises when its caller went away (HTTP's ClientGone)."""


def test_every_door_observes_its_calls_through_one_skeleton(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`observed` counts a call OK or by its error's code, re-raises the error for the door
    to convert, logs only errors no RecognizerError explains, and leaves `passing`
    exceptions uncounted."""
    with ServerThread([colour_model()], metrics_port=0) as running:
        metrics = running.server.metrics
        with metrics.observed("http", "classify", model="colours"):
            pass
        with pytest.raises(InvalidImageError), metrics.observed("http", "classify") as call:
            call.model = "colours"  # learnt from the request
            raise InvalidImageError("image is empty", reason="IMAGE_EMPTY")
        with pytest.raises(ZeroDivisionError), metrics.observed("http", "classify", "", "colours"):
            _ = 1 / 0
        left = metrics.observed("http", "classify", "", "colours", passing=(ClientLeft,))
        with pytest.raises(ClientLeft), left:
            raise ClientLeft
        counted = scrape(running)

    def count(code: str) -> float:
        labels = (("code", code), ("model", "colours"), ("transport", "http"))
        return counted.get(("recognizer_requests_total", labels), 0.0)

    assert (count("OK"), count("INVALID_ARGUMENT"), count("INTERNAL")) == (1, 1, 1)
    assert counted[("recognizer_request_seconds_count", (("model", "colours"),))] == 3
    logged = [record for record in caplog.records if record.levelno == logging.ERROR]
    assert [record.getMessage() for record in logged] == ["http classify failed"]
    assert logged[0].exc_info is not None and logged[0].exc_info[0] is ZeroDivisionError
