"""The real server over real channels: photos, streams, batching, every bad input, fair
shares, health, draining."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from fakes import ColourNet, colour_model, faulty_model, solid_png
from images import noise_png, png_claiming_size
from recognizer.client import AsyncClient, Client, error_status
from recognizer.transport.status import PUSHBACK
from recognizer.v1 import recognizer_pb2 as pb
from recognizer.v1 import recognizer_pb2_grpc as pb_grpc
from support import CAT_CLASSES, ESPRESSO, MILITARY_UNIFORM, MOPED, TRIPOD, ServerThread

EXPECTED_TOP1 = {
    "cat": CAT_CLASSES,
    "coffee": {ESPRESSO},
    "camera": {TRIPOD},
    "motorcycle": {MOPED},
}


@pytest.fixture
def client(default_server: ServerThread) -> Iterator[Client]:
    with Client(default_server.address) as client:
        yield client


def detail(error: grpc.RpcError, kind: type) -> object:
    status = error_status(error)
    assert status is not None, "the status carries google.rpc details"
    for packed in status.details:
        if packed.Is(kind.DESCRIPTOR):
            message = kind()
            packed.Unpack(message)
            return message
    raise AssertionError(f"no {kind.__name__} in {status}")


def failure(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()  # type: ignore[operator]
    return raised.value


# Real photos


@pytest.mark.parametrize("photo", sorted(EXPECTED_TOP1))
def test_real_photos_are_recognised(client: Client, photos: dict[str, bytes], photo: str) -> None:
    response = client.classify(photos[photo], request_id=f"id-{photo}")
    assert response.labels[0].class_id in EXPECTED_TOP1[photo]
    assert response.request_id == f"id-{photo}"
    assert (response.model, response.language, len(response.labels)) == (
        "efficientnet-lite0",
        "zh",
        5,
    )
    scores = [label.score for label in response.labels]
    assert scores == sorted(scores, reverse=True) and 0 < scores[0] <= 1


def test_labels_come_in_chinese_by_default_and_in_english_on_request(
    client: Client, photos: dict[str, bytes]
) -> None:
    chinese = client.classify(photos["coffee"], top_k=1)
    english = client.classify(photos["coffee"], top_k=1, language="en")
    assert (chinese.labels[0].label, english.labels[0].label) == ("浓缩咖啡", "espresso")
    assert english.language == "en"
    uniform = client.classify(photos["hopper"], top_k=3, language="en")
    assert MILITARY_UNIFORM in [label.class_id for label in uniform.labels]


def test_the_response_says_where_the_time_went(client: Client, photos: dict[str, bytes]) -> None:
    timing = client.classify(photos["cat"]).timing
    assert timing.preprocess_us > 0 and timing.inference_us > 0 and timing.batch_size >= 1


def test_top_k_beyond_the_class_count_returns_every_class_ranked(
    client: Client, photos: dict[str, bytes]
) -> None:
    response = client.classify(photos["cat"], top_k=5000, language="en")
    assert len(response.labels) == 1000
    assert len({label.class_id for label in response.labels}) == 1000


def test_min_score_filters_labels(client: Client, photos: dict[str, bytes]) -> None:
    response = client.classify(photos["coffee"], top_k=10, min_score=0.5)
    assert [label.class_id for label in response.labels] == [ESPRESSO]


def test_images_over_grpcs_4_mib_default_are_accepted(client: Client) -> None:
    big = noise_png(1400)
    assert len(big) > 5 * 2**20
    assert len(client.classify(big).labels) == 5


def test_list_models_describes_the_default_model(client: Client) -> None:
    (model,) = client.list_models().models
    assert (model.name, model.num_classes, model.input_width, model.input_height) == (
        "efficientnet-lite0",
        1000,
        224,
        224,
    )
    assert (model.device, list(model.languages), model.max_batch_size) == ("cpu", ["zh", "en"], 8)
    assert model.backend == "openvino"
    assert (model.source_format, model.architecture, model.activation) == (
        "builtin",
        "tf_efficientnet_lite0",
        pb.ACTIVATION_SOFTMAX,
    )
    preprocessing = model.preprocessing
    assert (preprocessing.resize, preprocessing.crop, preprocessing.interpolation) == (
        256,
        224,
        "bilinear",
    )
    assert (list(preprocessing.mean), preprocessing.channel_order) == ([0.5, 0.5, 0.5], "RGB")


# Streams and concurrency


def test_a_stream_answers_every_frame_in_order(client: Client, photos: dict[str, bytes]) -> None:
    names = ["cat", "coffee", "camera", "motorcycle"] * 5
    requests = (pb.ClassifyRequest(image=photos[n], request_id=f"{i}") for i, n in enumerate(names))
    responses = list(client.classify_stream(requests))
    assert [r.request_id for r in responses] == [str(i) for i in range(len(names))]
    for name, response in zip(names, responses, strict=True):
        assert response.labels[0].class_id in EXPECTED_TOP1[name]


def test_a_corrupt_frame_gets_its_own_error_and_the_stream_goes_on(
    client: Client, photos: dict[str, bytes]
) -> None:
    requests = [
        pb.ClassifyRequest(image=photos["cat"], request_id="a"),
        pb.ClassifyRequest(image=photos["coffee"][:2000], request_id="b"),
        pb.ClassifyRequest(image=b"", request_id="c"),
        pb.ClassifyRequest(image=photos["coffee"], request_id="d", model="nope"),
        pb.ClassifyRequest(image=photos["coffee"], request_id="e"),
    ]
    responses = list(client.classify_stream(iter(requests)))
    assert [r.request_id for r in responses] == ["a", "b", "c", "d", "e"]
    assert [r.error.code for r in responses] == [
        grpc.StatusCode.OK.value[0],
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
        grpc.StatusCode.INVALID_ARGUMENT.value[0],
        grpc.StatusCode.NOT_FOUND.value[0],
        grpc.StatusCode.OK.value[0],
    ]
    assert "truncated or corrupt" in responses[1].error.message
    assert responses[4].labels[0].class_id == ESPRESSO


async def test_many_concurrent_calls_are_answered_correctly_and_batched(
    default_server: ServerThread, photos: dict[str, bytes]
) -> None:
    names = sorted(EXPECTED_TOP1) * 10
    async with AsyncClient(default_server.address) as client:
        responses = await asyncio.gather(
            *(client.classify(photos[name], request_id=str(i)) for i, name in enumerate(names))
        )
    for i, (name, response) in enumerate(zip(names, responses, strict=True)):
        assert response.request_id == str(i)
        assert response.labels[0].class_id in EXPECTED_TOP1[name]
    assert max(r.timing.batch_size for r in responses) > 1


def test_a_bad_request_among_good_ones_loses_nothing(
    client: Client, photos: dict[str, bytes]
) -> None:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        good = [pool.submit(client.classify, photos["coffee"]) for _ in range(12)]
        bad = [pool.submit(client.classify, b"junk") for _ in range(4)]
        assert all(f.result().labels[0].class_id == ESPRESSO for f in good)
        for future in bad:
            assert future.exception().code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[union-attr]


# Bad input: a precise status, a clear message, details to act on


@pytest.mark.parametrize(
    ("image", "reason", "message"),
    [
        (b"", "IMAGE_EMPTY", "image is empty"),
        (b"GIF89a but not really", "IMAGE_UNDECODABLE", "not a supported format"),
        (png_claiming_size(9_000, 9_000), "IMAGE_TOO_LARGE", "over the limit"),
        (png_claiming_size(50_000, 50_000), "IMAGE_TOO_LARGE", "over the limit"),
    ],
)
def test_unusable_images_are_invalid_arguments(
    client: Client, image: bytes, reason: str, message: str
) -> None:
    error = failure(lambda: client.classify(image))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.details()
    assert detail(error, error_details_pb2.ErrorInfo).reason == reason  # type: ignore[attr-defined]
    violation = detail(error, error_details_pb2.BadRequest).field_violations[0]  # type: ignore[attr-defined]
    assert violation.field == "image"


def test_a_truncated_photo_is_an_invalid_argument(client: Client, photos: dict[str, bytes]) -> None:
    error = failure(lambda: client.classify(photos["hopper"][:5000]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "truncated or corrupt" in error.details()


def test_an_unknown_model_is_not_found_and_the_served_ones_are_listed(
    client: Client, photos: dict[str, bytes]
) -> None:
    error = failure(lambda: client.classify(photos["cat"], model="resnest101"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "efficientnet-lite0" in error.details()
    resource = detail(error, error_details_pb2.ResourceInfo)
    assert resource.resource_name == "resnest101"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("options", "field"), [({"language": "fr"}, "language"), ({"min_score": 2.0}, "min_score")]
)
def test_bad_options_name_their_field(
    client: Client, photos: dict[str, bytes], options: dict[str, object], field: str
) -> None:
    error = failure(lambda: client.classify(photos["cat"], **options))  # type: ignore[arg-type]
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    violation = detail(error, error_details_pb2.BadRequest).field_violations[0]  # type: ignore[attr-defined]
    assert violation.field == field


def test_a_message_over_the_size_limit_is_refused_and_the_server_goes_on(
    default_server: ServerThread, photos: dict[str, bytes]
) -> None:
    with grpc.insecure_channel(default_server.address) as channel:
        stub = pb_grpc.RecognizerStub(channel)
        error = failure(lambda: stub.Classify(pb.ClassifyRequest(image=b"\0" * (33 << 20))))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert stub.Classify(pb.ClassifyRequest(image=photos["cat"])).labels


def test_a_full_queue_is_resource_exhausted_with_retry_info() -> None:
    with (
        ServerThread(
            [colour_model(network=ColourNet(delay_s=0.3))],
            max_batch_size=1,
            inference_workers=1,
            max_queued_requests=2,
        ) as running,
        grpc.insecure_channel(running.address) as channel,  # no retries: see the refusals
        concurrent.futures.ThreadPoolExecutor(8) as pool,
    ):
        stub = pb_grpc.RecognizerStub(channel)
        request = pb.ClassifyRequest(image=solid_png((0, 0, 200)))
        calls = [pool.submit(stub.Classify, request) for _ in range(8)]
        done = [f.exception() or f.result() for f in calls]
        refused = [e for e in done if isinstance(e, grpc.RpcError)]
        assert 0 < len(refused) <= 6
        assert {e.code() for e in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        retry = detail(refused[0], error_details_pb2.RetryInfo)
        delay = retry.retry_delay  # type: ignore[attr-defined]
        assert delay.seconds + delay.nanos / 1e9 > 0
        assert "retry after" in refused[0].details()
        answered = [r for r in done if isinstance(r, pb.ClassifyResponse)]
        assert len(answered) >= 2 and all(r.labels[0].class_id == 2 for r in answered)


def test_an_expired_deadline_is_deadline_exceeded_and_skips_the_model() -> None:
    network = ColourNet(delay_s=0.4)
    with (
        ServerThread(
            [colour_model(network=network)], max_batch_size=1, inference_workers=1
        ) as running,
        grpc.insecure_channel(running.address) as channel,
    ):
        stub = pb_grpc.RecognizerStub(channel)
        seen = network.images_seen
        slow = stub.Classify.future(pb.ClassifyRequest(image=solid_png((200, 0, 0))))
        time.sleep(0.1)
        error = failure(
            lambda: stub.Classify(pb.ClassifyRequest(image=solid_png((0, 200, 0))), timeout=0.1)
        )
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert slow.result().labels[0].class_id == 0
        time.sleep(0.5)
        assert network.images_seen - seen == 1  # the expired request never reached the model


# Health, draining, shutdown


def test_health_reports_the_server_the_service_and_each_model(client: Client) -> None:
    for service in ("", "recognizer.v1.Recognizer", "efficientnet-lite0"):
        assert client.health(service) == "SERVING"
    error = failure(lambda: client.health("no-such-model"))
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_a_draining_server_finishes_calls_in_flight_and_refuses_new_ones() -> None:
    with (
        ServerThread(
            [colour_model(network=ColourNet(delay_s=0.5))],
            max_batch_size=1,
            inference_workers=1,
            grace_period=5,
        ) as running,
        grpc.insecure_channel(running.address) as channel,
    ):
        stub = pb_grpc.RecognizerStub(channel)
        health = health_pb2_grpc.HealthStub(channel)
        in_flight = [
            stub.Classify.future(pb.ClassifyRequest(image=solid_png((0, 0, 200)))) for _ in range(3)
        ]
        time.sleep(0.2)
        stopping = running.submit(running.server.stop())
        time.sleep(0.1)
        status = health.Check(health_pb2.HealthCheckRequest(service="")).status
        assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        late = failure(lambda: stub.Classify(pb.ClassifyRequest(image=solid_png((9, 9, 9)))))
        assert late.code() == grpc.StatusCode.UNAVAILABLE
        assert [f.result().labels[0].class_id for f in in_flight] == [2, 2, 2]
        stopping.result(timeout=10)


# Exposure


def test_echoed_strings_are_capped(client: Client, photos: dict[str, bytes]) -> None:
    response = client.classify(photos["coffee"], request_id="r" * 5000, top_k=1)
    assert response.request_id == "r" * 256
    error = failure(lambda: client.classify(photos["coffee"], model="m" * 5000))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "(5000 characters)" in error.details() and len(error.details()) < 300
    resource = detail(error, error_details_pb2.ResourceInfo)
    assert resource.resource_name == "m" * 64  # type: ignore[attr-defined]
    language = failure(lambda: client.classify(photos["coffee"], language="l" * 5000))
    assert len(language.details()) < 300
    frames = [pb.ClassifyRequest(image=photos["coffee"], request_id="f" * 1000, top_k=1)]
    (answer,) = client.classify_stream(frames)
    assert answer.request_id == "f" * 256


def test_plaintext_beyond_this_machine_is_warned_about_and_metrics_stay_local(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="recognizer"):
        with ServerThread([colour_model()], metrics_port=0, server={"host": "0.0.0.0"}):
            pass
        warned = caplog.text
        caplog.clear()
        with ServerThread([colour_model()]):
            pass
    assert "serving plaintext on 0.0.0.0, which other machines can reach" in warned
    assert "Serve TLS with --tls-cert FILE --tls-key FILE" in warned
    assert re.search(r"metrics on http://127\.0\.0\.1:\d+/metrics", warned)
    assert "serving plaintext" not in caplog.text  # on loopback


# Fair shares, health that follows the watchdog, and the drain delay


def test_a_flood_from_one_host_costs_another_host_nothing() -> None:
    with ServerThread(
        [colour_model(network=ColourNet(delay_s=0.02))],
        max_batch_size=2,
        inference_workers=1,
        max_queued_requests=16,
        server={"host": "localhost"},  # 127.0.0.1 and ::1: two peers, two callers
    ) as running:
        port = running.server.grpc.port
        stop = threading.Event()
        codes: Counter[grpc.StatusCode] = Counter()
        pushback: set[str] = set()

        def flood() -> None:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.RecognizerStub(channel)
                while not stop.is_set():
                    calls = [
                        stub.Classify.future(pb.ClassifyRequest(image=solid_png((200, 0, 0))))
                        for _ in range(32)
                    ]
                    for call in calls:
                        codes[call.code()] += 1
                        pushback.update(
                            v for k, v in call.trailing_metadata() or () if k == PUSHBACK
                        )

        flooder = threading.Thread(target=flood)
        flooder.start()
        try:
            time.sleep(0.5)
            with grpc.insecure_channel(f"[::1]:{port}") as channel:  # no retries: none needed
                stub = pb_grpc.RecognizerStub(channel)
                image = solid_png((0, 200, 0))
                answers = [stub.Classify(pb.ClassifyRequest(image=image)) for _ in range(20)]
            assert [a.labels[0].class_id for a in answers] == [1] * 20
        finally:
            stop.set()
            flooder.join()
        assert codes[grpc.StatusCode.RESOURCE_EXHAUSTED] > 0
        assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert pushback and all(int(ms) > 0 for ms in pushback)  # RetryInfo, for gRPC's retries


def test_health_follows_the_watchdog_and_the_server_is_not_serving_when_no_model_is() -> None:
    (good, good_backend), (bad, bad_backend) = faulty_model("good"), faulty_model("bad")
    blue = solid_png((0, 0, 200))
    with (
        ServerThread([good, bad], max_batch_size=1, max_failed_batches=1) as running,
        Client(running.address) as client,
    ):

        def until(service: str, status: str) -> None:
            deadline = time.monotonic() + 10
            while client.health(service) != status and time.monotonic() < deadline:
                time.sleep(0.05)

        bad_backend.mode = "fail"
        failure(lambda: client.classify(blue, model="bad"))
        until("bad", "NOT_SERVING")
        assert [client.health(name) for name in ("bad", "good", "")] == [
            "NOT_SERVING",
            "SERVING",
            "SERVING",
        ]
        error = failure(lambda: client.classify(blue, model="bad"))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert detail(error, error_details_pb2.ErrorInfo).reason == "MODEL_UNAVAILABLE"  # type: ignore[attr-defined]
        good_backend.mode = "fail"
        failure(lambda: client.classify(blue, model="good"))
        until("", "NOT_SERVING")
        assert client.health("recognizer.v1.Recognizer") == "NOT_SERVING"
        good_backend.mode = bad_backend.mode = "ok"
        for name in ("good", "bad"):
            until(name, "SERVING")
        assert [client.health(name) for name in ("bad", "good", "")] == ["SERVING"] * 3
        assert client.classify(blue, model="bad").labels[0].class_id == 2


def test_the_drain_delay_says_not_serving_while_still_serving() -> None:
    with (
        ServerThread([colour_model()], server={"drain_delay": 30}) as running,
        Client(running.address) as client,
    ):
        hurry = asyncio.Event()
        stopping = running.submit(running.server.stop(hurry=hurry))
        time.sleep(0.3)
        assert client.health() == "NOT_SERVING"
        assert client.classify(solid_png((0, 0, 200))).labels[0].class_id == 2
        running.run(_set(hurry))  # a second signal: stop waiting
        stopping.result(timeout=10)


async def _set(event: asyncio.Event) -> None:
    event.set()
