"""The WebSocket stream with a real WebSocket client: ClassifyStream's answers, policies,
per-frame errors and counts, for browsers."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from fakes import ColourNet, colour_model, solid_png
from recognizer.client import Client
from recognizer.config.schema import SecuritySettings
from recognizer.v1 import recognizer_pb2 as pb
from support import CAT_CLASSES, ESPRESSO, ServerThread

END = json.dumps({"end": True})
SHOP, VISION = "q9Xc1kF0b7WvN2yH4tLm8a", "Zt8MvA3pQ6rJ1uE5sKx0bw"
RED, GREEN, BLUE = (200, 0, 0), (0, 200, 0), (0, 0, 200)


@contextmanager
def stream(running: ServerThread, query: str = "") -> Iterator[ClientConnection]:
    url = running.http_url.replace("http://", "ws://") + "/v1/classify/stream"
    with connect(f"{url}?{query}", max_size=None, open_timeout=30) as websocket:
        yield websocket


def read_all(websocket: ClientConnection) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Every answer, then the closing summary; the server closes after it."""
    answers = []
    while "frames" not in (message := json.loads(websocket.recv(timeout=60))):
        answers.append(message)
    with pytest.raises(ConnectionClosed):
        websocket.recv(timeout=10)
    return answers, message


def close_code(websocket: ClientConnection) -> tuple[int | None, str | None]:
    assert websocket.close_code is not None
    return websocket.close_code, websocket.close_reason


def test_frames_are_answered_in_order_with_their_own_errors_and_counted(
    default_server: ServerThread, photos: dict[str, bytes]
) -> None:
    frames = [photos["coffee"], photos["cat"], photos["coffee"][:2000], b"", photos["cat"]]
    with stream(default_server, "top_k=1&language=en") as websocket:
        for frame in frames:
            websocket.send(frame)
        websocket.send(END)
        answers, summary = read_all(websocket)
        assert close_code(websocket) == (1000, "")
    assert [a["request_id"] for a in answers] == ["0", "1", "2", "3", "4"]
    assert answers[0]["labels"][0]["class_id"] == ESPRESSO
    assert answers[0]["labels"][0]["label"] == "espresso"
    assert answers[1]["labels"][0]["class_id"] in CAT_CLASSES
    reasons = [a["error"]["details"][0]["reason"] for a in answers[2:4]]
    assert reasons == ["IMAGE_CORRUPT", "IMAGE_EMPTY"]
    assert answers[2]["error"]["code"] == 3  # INVALID_ARGUMENT, as ClassifyStream answers it
    assert answers[4]["labels"][0]["class_id"] in CAT_CLASSES
    assert summary == {
        "status": {"code": 0, "message": "", "details": []},
        "frames": {"answered": 3, "skipped": 0, "failed": 2},
    }


def test_the_stream_answers_what_grpcs_stream_answers(
    default_server: ServerThread, photos: dict[str, bytes]
) -> None:
    names = ["coffee", "hopper", "motorcycle"]
    with Client(default_server.address) as client:
        requests = (
            pb.ClassifyRequest(image=photos[n], top_k=5, request_id=str(i))
            for i, n in enumerate(names)
        )
        over_grpc = list(client.classify_stream(requests))
    with stream(default_server, "top_k=5") as websocket:
        for name in names:
            websocket.send(photos[name])
        websocket.send(END)
        answers, _ = read_all(websocket)
    over_http = [json_format.ParseDict(a, pb.ClassifyResponse()) for a in answers]
    assert [list(r.labels) for r in over_http] == [list(r.labels) for r in over_grpc]


def test_latest_frame_skips_frames_the_model_cannot_keep_up_with() -> None:
    with (
        ServerThread(
            [colour_model(network=ColourNet(delay_s=0.2))],
            http=True,
            max_batch_size=1,
            inference_workers=1,
        ) as running,
        stream(running, "policy=latest&max_frame_age_ms=5000") as websocket,
    ):
        colours = [RED, GREEN, BLUE] * 4
        for colour in colours:
            websocket.send(solid_png(colour))
        websocket.send(END)
        answers, summary = read_all(websocket)
    assert [a["request_id"] for a in answers] == [str(i) for i in range(len(colours))]
    skipped = [a for a in answers if a["skipped"]]
    classified = [a for a in answers if not a["skipped"]]
    assert skipped and all(not a["labels"] for a in skipped)
    for answer in classified:
        colour = colours[int(answer["request_id"])]
        assert answer["labels"][0]["class_id"] == colour.index(200)
    assert not answers[-1]["skipped"]  # the newest frame always gets its turn
    assert summary["frames"] == {"answered": len(classified), "skipped": len(skipped), "failed": 0}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("policy=sometimes", "policy"),
        ("max_frame_age_ms=100", "stream_options.max_frame_age_ms"),
        ("max_frame_age_ms=-5&policy=latest", "max_frame_age_ms"),
        ("request_id=x", "request_id"),
        ("top_k=many", "top_k"),
    ],
)
def test_invalid_options_end_the_stream_before_any_frame(
    default_server: ServerThread, query: str, field: str
) -> None:
    with stream(default_server, query) as websocket:
        answers, summary = read_all(websocket)
        assert close_code(websocket) == (1008, "INVALID_REQUEST")
    assert answers == []
    status = summary["status"]
    assert status["code"] == 3
    violation = next(d for d in status["details"] if "field_violations" in d)
    assert violation["field_violations"][0]["field"] == field


def test_a_text_message_other_than_end_ends_the_stream_after_its_frames(
    default_server: ServerThread,
) -> None:
    with stream(default_server) as websocket:
        websocket.send(solid_png(RED))
        websocket.send("hello")
        answers, summary = read_all(websocket)
        assert close_code(websocket) == (1008, "INVALID_REQUEST")
    assert len(answers) == 1 and answers[0]["labels"]
    assert summary["frames"] == {"answered": 1, "skipped": 0, "failed": 0}


def test_a_frame_over_the_size_limit_closes_with_1009() -> None:
    with (
        ServerThread([colour_model()], http=True, max_message_mb=1) as running,
        stream(running) as websocket,
    ):
        websocket.send(b"\0" * (2 << 20))
        with pytest.raises(ConnectionClosed):
            websocket.recv(timeout=30)
        assert websocket.close_code == 1009
        with stream(running) as again:
            again.send(solid_png(GREEN))
            again.send(END)
            answers, _ = read_all(again)
        assert answers[0]["labels"][0]["class_id"] == 1


def test_draining_answers_the_frames_read_then_closes_with_1012() -> None:
    with (
        ServerThread(
            [colour_model(network=ColourNet(delay_s=0.3))],
            http=True,
            max_batch_size=1,
            inference_workers=1,
            grace_period=5,
        ) as running,
        stream(running) as websocket,
    ):
        for _ in range(2):
            websocket.send(solid_png(BLUE))
        time.sleep(0.2)
        stopping = running.submit(running.server.stop())
        answers, summary = read_all(websocket)
        assert close_code(websocket) == (1012, "SHUTTING_DOWN")
        stopping.result(timeout=10)
    assert [a["labels"][0]["class_id"] for a in answers] == [2, 2]
    assert summary["status"]["code"] == 14  # UNAVAILABLE
    assert summary["frames"]["answered"] == 2


def test_a_client_that_leaves_mid_stream_frees_the_server() -> None:
    with ServerThread(
        [colour_model(network=ColourNet(delay_s=0.2))], http=True, inference_workers=1
    ) as running:
        with stream(running) as websocket:
            for _ in range(4):
                websocket.send(solid_png(RED))
            json.loads(websocket.recv(timeout=30))
        deadline = time.monotonic() + 10
        while running.engine.open_streams and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running.engine.open_streams == 0
        with stream(running) as again:
            again.send(solid_png(GREEN))
            again.send(END)
            answers, _ = read_all(again)
        assert answers[0]["labels"][0]["class_id"] == 1


def test_a_stream_that_sends_nothing_or_stops_sending_is_closed_in_time() -> None:
    settings = {"first_frame_timeout": 0.5, "stream_idle_timeout": 0.5}
    with ServerThread([colour_model()], http=True, server=settings) as running:
        with stream(running) as websocket:
            answers, summary = read_all(websocket)
            assert close_code(websocket) == (1008, "FIRST_FRAME_TIMEOUT")
        assert answers == [] and summary["status"]["code"] == 4  # DEADLINE_EXCEEDED
        with stream(running) as websocket:
            websocket.send(solid_png(RED))
            answers, summary = read_all(websocket)
            assert close_code(websocket) == (1008, "STREAM_IDLE")
        assert [a["labels"][0]["class_id"] for a in answers] == [0]
        assert summary["frames"]["answered"] == 1
        assert running.engine.open_streams == 0


def test_one_callers_streams_cannot_take_every_call(tmp_path: Path) -> None:
    """A tenant holds every call with streams; another tenant's stream takes the place of
    its newest, and the first tenant's next handshake is refused (429)."""
    tokens = tmp_path / "tokens"
    tokens.write_text(f"shop:{SHOP}\nvision:{VISION}\n", encoding="utf-8")
    security = SecuritySettings(tokens_file=tokens)
    settings = {"max_concurrent_rpcs": 4}
    with ServerThread([colour_model()], http=True, server=settings, security=security) as running:
        url = running.http_url.replace("http://", "ws://") + "/v1/classify/stream"

        def opened(token: str) -> ClientConnection:
            websocket = sockets.enter_context(
                connect(url, additional_headers={"Authorization": f"Bearer {token}"})
            )
            websocket.send(solid_png(RED))
            assert json.loads(websocket.recv(timeout=60))["labels"][0]["class_id"] == 0
            return websocket

        with ExitStack() as sockets:
            shops = [opened(SHOP) for _ in range(4)]
            vision = opened(VISION)
            answers, summary = read_all(shops[-1])  # the newest gave its place up
            assert answers == []
            assert close_code(shops[-1]) == (1013, "TOO_MANY_CALLS")
            assert summary["status"]["code"] == 8  # RESOURCE_EXHAUSTED
            with (
                pytest.raises(InvalidStatus) as refused,
                connect(url, additional_headers={"Authorization": f"Bearer {SHOP}"}),
            ):
                pass
            assert refused.value.response.status_code == 429
            vision.send(solid_png(BLUE))
            assert json.loads(vision.recv(timeout=60))["labels"][0]["class_id"] == 2
