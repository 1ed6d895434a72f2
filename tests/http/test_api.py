"""The HTTP API over real HTTP on loopback: the same answers as gRPC, and every error of
gRPC's table with its HTTP code, reason and details."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import socket
import time
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from google.protobuf import json_format
from prometheus_client.parser import text_string_to_metric_families

from fakes import POISON, ColourNet, colour_model, faulty_model, solid_png
from images import png_claiming_size, raw_frame
from recognizer.client import Client
from recognizer.service.convert import MAX_REQUEST_ID_CHARS
from recognizer.v1 import recognizer_pb2 as pb
from recognizer.v1 import recognizer_pb2_grpc as pb_grpc
from support import CAT_CLASSES, ESPRESSO, ServerThread

JPEG = {"Content-Type": "image/jpeg"}
PNG = {"Content-Type": "image/png"}


@pytest.fixture
def http(default_server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=default_server.http_url, timeout=60) as client:
        yield client


def error_of(response: httpx.Response, code: int, status: str, reason: str) -> dict[str, Any]:
    """The error body, checked: HTTP code, canonical status, and the ErrorInfo first."""
    assert response.status_code == code, response.text
    assert response.headers["content-type"] == "application/json"
    error: dict[str, Any] = response.json()["error"]
    assert (error["code"], error["status"]) == (code, status)
    info = error["details"][0]
    assert info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert (info["reason"], info["domain"]) == (reason, "recognizer")
    return error


def detail(error: dict[str, Any], kind: str) -> dict[str, Any]:
    found = [d for d in error["details"] if d["@type"] == f"type.googleapis.com/google.rpc.{kind}"]
    assert found, f"no {kind} in {error}"
    return found[0]


# Answers


def test_an_image_sent_as_the_body_a_form_or_json_gets_one_answer(
    http: httpx.Client, photos: dict[str, bytes]
) -> None:
    coffee = photos["coffee"]
    raw = http.post("/v1/classify?top_k=3&language=en", content=coffee, headers=PNG)
    form = http.post(
        "/v1/classify",
        files={"image": ("coffee.png", coffee, "image/png")},
        data={"top_k": "3", "language": "en"},
    )
    as_json = http.post(
        "/v1/classify",
        json={"image": base64.b64encode(coffee).decode(), "top_k": 3, "language": "en"},
    )
    answers = [r.json() for r in (raw, form, as_json)]
    assert [r.status_code for r in (raw, form, as_json)] == [200, 200, 200]
    assert answers[0]["labels"][0] == {
        "class_id": ESPRESSO,
        "label": "espresso",
        "score": pytest.approx(answers[0]["labels"][0]["score"]),
    }
    for answer in answers:
        assert [label["class_id"] for label in answer["labels"]] == [
            label["class_id"] for label in answers[0]["labels"]
        ]
        assert (answer["model"], answer["language"]) == ("efficientnet-lite0", "en")
        timing = answer["timing"]
        assert int(timing["preprocess_us"]) > 0 and int(timing["inference_us"]) > 0


@pytest.mark.parametrize("language", ["zh", "en"])
def test_http_and_grpc_give_identical_labels_and_scores(
    default_server: ServerThread, http: httpx.Client, photos: dict[str, bytes], language: str
) -> None:
    with Client(default_server.address) as client:
        over_grpc = client.classify(photos["hopper"], top_k=10, language=language)
    response = http.post(
        f"/v1/classify?top_k=10&language={language}", content=photos["hopper"], headers=JPEG
    )
    over_http = json_format.Parse(response.text, pb.ClassifyResponse())
    assert list(over_http.labels) == list(over_grpc.labels)  # class ids, names, float32 scores
    assert (over_http.model, over_http.language) == (over_grpc.model, over_grpc.language)


def test_query_fields_apply_the_body_wins_and_the_request_id_comes_back(
    http: httpx.Client, photos: dict[str, bytes]
) -> None:
    response = http.post(
        "/v1/classify?top_k=4&request_id=from-query",
        files={"image": ("cat.png", photos["cat"])},
        data={"top_k": "1", "request_id": "from-form"},
    )
    answer = response.json()
    assert answer["request_id"] == "from-form"
    assert [label["class_id"] for label in answer["labels"]] in [[c] for c in CAT_CLASSES]
    assert answer["language"] == "zh"


def test_a_raw_frame_in_json_is_classified(http: httpx.Client) -> None:
    from PIL import Image

    from support import PHOTOS

    rgb = np.asarray(Image.open(PHOTOS["coffee"]).convert("RGB"))
    data, stride = raw_frame(rgb, "RGB8")
    height, width, _ = rgb.shape
    raw = {
        "width": width,
        "height": height,
        "format": "PIXEL_FORMAT_RGB8",
        "row_stride": stride,
        "data": base64.b64encode(data).decode(),
    }
    response = http.post("/v1/classify", json={"raw_image": raw, "top_k": 1})
    assert response.json()["labels"][0]["class_id"] == ESPRESSO


def test_list_models_answers_what_grpc_answers(
    default_server: ServerThread, http: httpx.Client
) -> None:
    with Client(default_server.address) as client:
        over_grpc = client.list_models()
    over_http = json_format.Parse(http.get("/v1/models").text, pb.ListModelsResponse())
    assert over_http == over_grpc


def test_health_and_readiness(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "SERVING"}
    assert http.get("/readyz").json() == {"status": "SERVING"}  # no model named: a probe needs none


def test_metrics_on_the_http_port_count_http_calls_apart(http: httpx.Client) -> None:
    http.post("/v1/classify", content=solid_png((200, 0, 0)), headers=PNG)
    http.post("/v1/classify", content=b"junk", headers=PNG)
    text = http.get("/metrics").text
    counts = {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "recognizer_requests_total"
    }
    http_calls = (("model", "efficientnet-lite0"), ("transport", "http"))
    assert counts[(("code", "OK"), *http_calls)] >= 1
    assert counts[(("code", "INVALID_ARGUMENT"), *http_calls)] >= 1


# Errors: gRPC's table, over HTTP


@pytest.mark.parametrize(
    ("image", "reason", "message"),
    [
        (b"", "IMAGE_EMPTY", "image is empty"),
        (b"GIF89a but not really", "IMAGE_UNDECODABLE", "not a supported format"),
        (png_claiming_size(9_000, 9_000), "IMAGE_TOO_LARGE", "over the limit"),
    ],
)
def test_unusable_images_are_400_with_the_grpc_reason(
    http: httpx.Client, image: bytes, reason: str, message: str
) -> None:
    error = error_of(
        http.post("/v1/classify", content=image, headers=PNG), 400, "INVALID_ARGUMENT", reason
    )
    assert message in error["message"]
    assert detail(error, "BadRequest")["field_violations"][0]["field"] == "image"


def test_a_truncated_photo_is_400_image_corrupt(
    http: httpx.Client, photos: dict[str, bytes]
) -> None:
    response = http.post("/v1/classify", content=photos["hopper"][:5000], headers=JPEG)
    error = error_of(response, 400, "INVALID_ARGUMENT", "IMAGE_CORRUPT")
    assert "truncated or corrupt" in error["message"]


@pytest.mark.parametrize(
    ("raw", "reason", "field"),
    [
        ({"width": 4, "height": 4, "format": "PIXEL_FORMAT_RGB8", "data": "AAAA"},
         "RAW_SIZE_MISMATCH", "raw_image.data"),
        ({"width": 0, "height": 4, "format": "PIXEL_FORMAT_RGB8", "data": "AAAA"},
         "RAW_IMAGE_INVALID", "raw_image"),
        ({"width": 4, "height": 4, "format": 99, "data": "AAAA"},
         "RAW_IMAGE_INVALID", "raw_image.format"),
    ],
)  # fmt: skip
def test_bad_raw_frames_are_400_with_the_grpc_reason(
    http: httpx.Client, raw: dict[str, Any], reason: str, field: str
) -> None:
    error = error_of(
        http.post("/v1/classify", json={"raw_image": raw}), 400, "INVALID_ARGUMENT", reason
    )
    assert detail(error, "BadRequest")["field_violations"][0]["field"] == field


def test_an_unknown_model_is_404_and_the_served_ones_are_named(
    http: httpx.Client, photos: dict[str, bytes]
) -> None:
    response = http.post("/v1/classify?model=resnest101", content=photos["cat"], headers=PNG)
    error = error_of(response, 404, "NOT_FOUND", "MODEL_NOT_FOUND")
    assert "efficientnet-lite0" in error["message"]
    assert detail(error, "ResourceInfo")["resource_name"] == "resnest101"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("language=fr", "language"),
        ("min_score=2", "min_score"),
        ("top_k=three", "top_k"),
        ("top_k=-1", "top_k"),
        ("min_score=nan", "min_score"),
        ("topk=3", "topk"),
    ],
)
def test_bad_fields_are_400_and_name_the_field(
    http: httpx.Client, photos: dict[str, bytes], query: str, field: str
) -> None:
    response = http.post(f"/v1/classify?{query}", content=photos["cat"], headers=PNG)
    error = error_of(response, 400, "INVALID_ARGUMENT", "INVALID_REQUEST")
    assert detail(error, "BadRequest")["field_violations"][0]["field"] == field


def test_an_echoed_request_id_is_cut_to_the_length_grpc_echoes(
    http: httpx.Client, default_server: ServerThread, photos: dict[str, bytes]
) -> None:
    long = "r" * 100_000
    body = json_format.MessageToJson(pb.ClassifyRequest(image=photos["cat"], request_id=long))
    json_type = {"Content-Type": "application/json"}
    over_http = http.post("/v1/classify", content=body, headers=json_type)
    with Client(default_server.address) as client:
        over_grpc = client.classify(photos["cat"], request_id=long)
    assert over_http.json()["request_id"] == over_grpc.request_id == "r" * MAX_REQUEST_ID_CHARS


def test_a_long_unknown_field_name_is_quoted_short(http: httpx.Client) -> None:
    response = http.post(f"/v1/classify?{'n' * 5000}=1", content=b"x", headers=PNG)
    error = error_of(response, 400, "INVALID_ARGUMENT", "INVALID_REQUEST")
    assert len(error["message"]) < 300


def test_json_that_is_not_a_classify_request_is_400(http: httpx.Client) -> None:
    not_utf8 = b'{"request_id": "\xff\xfe"}'
    for body in (b"{not json", b'{"image": "not base64!"}', b'{"colour": "red"}', not_utf8):
        response = http.post(
            "/v1/classify", content=body, headers={"Content-Type": "application/json"}
        )
        error = error_of(response, 400, "INVALID_ARGUMENT", "INVALID_REQUEST")
        assert detail(error, "BadRequest")["field_violations"][0]["field"] == "body"


def test_a_form_without_an_image_file_is_400(http: httpx.Client) -> None:
    response = http.post("/v1/classify", files={"photo": ("x.png", b"...")})
    error_of(response, 400, "INVALID_ARGUMENT", "INVALID_REQUEST")
    response = http.post("/v1/classify", data={"top_k": "1"}, files={"x": ("", b"")})
    error_of(response, 400, "INVALID_ARGUMENT", "INVALID_REQUEST")


def test_other_content_types_are_415(http: httpx.Client) -> None:
    for headers in ({"Content-Type": "text/plain"}, {}):
        response = http.post("/v1/classify", content=b"hello", headers=headers)
        error = error_of(response, 415, "INVALID_ARGUMENT", "UNSUPPORTED_MEDIA_TYPE")
        assert "image/*" in error["message"]


def test_unknown_paths_are_404_and_wrong_methods_405(http: httpx.Client) -> None:
    error_of(http.get("/v2/classify"), 404, "NOT_FOUND", "ROUTE_NOT_FOUND")
    response = http.get("/v1/classify")
    error_of(response, 405, "UNIMPLEMENTED", "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "POST"


def test_a_body_over_the_size_limit_is_413_and_the_server_goes_on() -> None:
    with (
        ServerThread([colour_model()], http=True, max_message_mb=1) as running,
        httpx.Client(base_url=running.http_url, timeout=60) as http,
    ):
        big = b"\0" * (2 << 20)
        error = error_of(
            http.post("/v1/classify", content=big, headers=PNG),
            413,
            "RESOURCE_EXHAUSTED",
            "MESSAGE_TOO_LARGE",
        )
        assert "--max-message-mb" in error["message"]
        chunked = http.post("/v1/classify", content=iter([big[: 1 << 20], big]), headers=PNG)
        error_of(chunked, 413, "RESOURCE_EXHAUSTED", "MESSAGE_TOO_LARGE")
        form = http.post("/v1/classify", files={"image": ("big.png", big)})
        error_of(form, 413, "RESOURCE_EXHAUSTED", "MESSAGE_TOO_LARGE")
        ok = http.post("/v1/classify", content=solid_png((0, 0, 200)), headers=PNG)
        assert ok.json()["labels"][0]["class_id"] == 2


def test_a_full_queue_is_429_with_retry_after_and_retry_info() -> None:
    with (
        ServerThread(
            [colour_model(network=ColourNet(delay_s=0.3))],
            http=True,
            max_batch_size=1,
            inference_workers=1,
            max_queued_requests=2,
        ) as running,
        httpx.Client(base_url=running.http_url, timeout=60) as http,
        concurrent.futures.ThreadPoolExecutor(8) as pool,
    ):
        image = solid_png((0, 0, 200))
        calls = [
            pool.submit(http.post, "/v1/classify", content=image, headers=PNG) for _ in range(8)
        ]
        responses = [call.result() for call in calls]
        refused = [r for r in responses if r.status_code != 200]
        assert 0 < len(refused) <= 6
        for response in refused:
            error = error_of(response, 429, "RESOURCE_EXHAUSTED", "QUEUE_FULL")
            assert "retry after" in error["message"]
            assert int(response.headers["retry-after"]) >= 1
            assert detail(error, "RetryInfo")["retry_delay"].endswith("s")
        answered = [r.json() for r in responses if r.status_code == 200]
        assert len(answered) >= 2 and all(a["labels"][0]["class_id"] == 2 for a in answered)


def test_a_deadline_from_the_header_is_504_and_the_request_skips_the_model() -> None:
    network = ColourNet(delay_s=0.4)
    with (
        ServerThread(
            [colour_model(network=network)], http=True, max_batch_size=1, inference_workers=1
        ) as running,
        httpx.Client(base_url=running.http_url, timeout=60) as http,
        concurrent.futures.ThreadPoolExecutor(2) as pool,
    ):
        seen = network.images_seen
        slow = pool.submit(http.post, "/v1/classify", content=solid_png((200, 0, 0)), headers=PNG)
        time.sleep(0.1)
        late = http.post(
            "/v1/classify",
            content=solid_png((0, 200, 0)),
            headers={**PNG, "X-Request-Timeout": "0.1"},
        )
        error = error_of(late, 504, "DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED")
        assert "X-Request-Timeout" in error["message"]
        assert slow.result().json()["labels"][0]["class_id"] == 0
        time.sleep(0.5)
        assert network.images_seen - seen == 1  # the expired request never reached the model


@pytest.mark.parametrize("value", ["soon", "0", "-1", "inf"])
def test_a_bad_timeout_header_is_400(http: httpx.Client, value: str) -> None:
    response = http.post(
        "/v1/classify", content=solid_png((1, 2, 3)), headers={**PNG, "X-Request-Timeout": value}
    )
    error = error_of(response, 400, "INVALID_ARGUMENT", "INVALID_REQUEST")
    assert detail(error, "BadRequest")["field_violations"][0]["field"] == "X-Request-Timeout"


def test_a_caller_that_hangs_up_is_dropped_before_the_model() -> None:
    network = ColourNet(delay_s=0.4)
    with (
        ServerThread(
            [colour_model(network=network)], http=True, max_batch_size=1, inference_workers=1
        ) as running,
        grpc.insecure_channel(running.address) as channel,
    ):
        seen = network.images_seen
        slow = pb_grpc.RecognizerStub(channel).Classify.future(
            pb.ClassifyRequest(image=solid_png((200, 0, 0)))
        )
        time.sleep(0.1)
        body = solid_png((0, 200, 0))
        port = int(running.http_url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as caller:
            caller.sendall(
                b"POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            time.sleep(0.1)  # queued behind the slow one
        assert slow.result().labels[0].class_id == 0
        time.sleep(0.6)
        assert network.images_seen - seen == 1  # the abandoned request never ran
        assert running.engine.pending() == 0


def test_a_bug_is_500_internal_with_a_generic_message() -> None:
    with (
        ServerThread([colour_model()], http=True) as running,
        httpx.Client(base_url=running.http_url, timeout=60) as http,
    ):
        response = http.post("/v1/classify", content=solid_png(POISON), headers=PNG)
        error = error_of(response, 500, "INTERNAL", "INTERNAL")
        assert "poisoned" not in error["message"] and "server log" in error["message"]
        ok = http.post("/v1/classify", content=solid_png((0, 200, 0)), headers=PNG)
        assert ok.json()["labels"][0]["class_id"] == 1


def test_draining_finishes_requests_in_flight_and_answers_503() -> None:
    with (
        ServerThread(
            [colour_model(network=ColourNet(delay_s=0.5))],
            http=True,
            max_batch_size=1,
            inference_workers=1,
            grace_period=5,
        ) as running,
        httpx.Client(base_url=running.http_url, timeout=60) as http,
        concurrent.futures.ThreadPoolExecutor(4) as pool,
    ):
        image = solid_png((0, 0, 200))
        in_flight = [
            pool.submit(http.post, "/v1/classify", content=image, headers=PNG) for _ in range(3)
        ]
        time.sleep(0.2)
        stopping = running.submit(running.server.stop())
        time.sleep(0.1)
        error_of(http.get("/readyz"), 503, "UNAVAILABLE", "SHUTTING_DOWN")
        assert http.get("/healthz").status_code == 200
        late = http.post("/v1/classify", content=image, headers=PNG)
        error_of(late, 503, "UNAVAILABLE", "SHUTTING_DOWN")
        assert [f.result().json()["labels"][0]["class_id"] for f in in_flight] == [2, 2, 2]
        stopping.result(timeout=10)
        with pytest.raises(httpx.ConnectError):
            httpx.get(running.http_url + "/healthz", timeout=5)


def test_readiness_follows_the_drain_delay_and_the_watchdog() -> None:
    served, backend = faulty_model()
    with (
        ServerThread(
            [served], http=True, max_failed_batches=2, server={"drain_delay": 30}
        ) as running,
        httpx.Client(base_url=running.http_url, timeout=30) as http,
    ):
        image = solid_png((0, 0, 200))
        backend.mode = "fail"  # a sticky device error: the calls and the probe fail
        for _ in range(3):
            error_of(
                http.post("/v1/classify", content=image, headers=PNG), 500, "INTERNAL", "INTERNAL"
            )
        deadline = time.monotonic() + 10
        while http.get("/readyz").status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.05)
        error_of(http.get("/readyz"), 503, "UNAVAILABLE", "MODEL_UNAVAILABLE")
        refused = http.post("/v1/classify", content=image, headers=PNG)
        error_of(refused, 503, "UNAVAILABLE", "MODEL_UNAVAILABLE")
        backend.mode = "ok"
        while http.get("/readyz").status_code != 200 and time.monotonic() < deadline + 10:
            time.sleep(0.05)
        assert http.get("/readyz").status_code == 200

        hurry = asyncio.Event()
        stopping = running.submit(running.server.stop(hurry=hurry))
        time.sleep(0.3)
        error_of(http.get("/readyz"), 503, "UNAVAILABLE", "SHUTTING_DOWN")
        answer = http.post("/v1/classify", content=image, headers=PNG)  # still served
        assert answer.json()["labels"][0]["class_id"] == 2
        running.run(_set(hurry))
        stopping.result(timeout=10)


def test_a_caller_over_its_rate_limit_gets_429_with_retry_after() -> None:
    with (
        ServerThread([colour_model()], http=True, rate_limit=0.2, rate_limit_burst=1) as running,
        httpx.Client(base_url=running.http_url, timeout=30) as http,
    ):
        image = solid_png((0, 0, 200))
        assert http.post("/v1/classify", content=image, headers=PNG).status_code == 200
        refused = http.post("/v1/classify", content=image, headers=PNG)
        error_of(refused, 429, "RESOURCE_EXHAUSTED", "RATE_LIMITED")
        assert 1 <= int(refused.headers["Retry-After"]) <= 5


async def _set(event: asyncio.Event) -> None:
    event.set()
