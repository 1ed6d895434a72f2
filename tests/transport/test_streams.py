"""ClassifyStream over real channels: raw frames, policies, order under load, cleanup, memory."""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from collections.abc import Iterator

import grpc
import numpy as np
import psutil
import pytest

from fakes import ColourNet, colour_model, solid_png
from images import open_image, raw_frame
from recognizer.client import Client
from recognizer.v1 import recognizer_pb2 as pb
from recognizer.v1 import recognizer_pb2_grpc as pb_grpc
from support import ESPRESSO, ServerThread

LATEST = pb.StreamOptions(policy=pb.STREAM_POLICY_LATEST_FRAME)
COLOURS = [(200, 0, 0), (0, 200, 0), (0, 0, 200)]


def raw_request(rgb: np.ndarray, pixel_format: str, **fields: object) -> pb.ClassifyRequest:
    data, stride = raw_frame(rgb, pixel_format, pad=8)
    raw = pb.RawImage(
        width=rgb.shape[1],
        height=rgb.shape[0],
        format=pb.PixelFormat.Value(f"PIXEL_FORMAT_{pixel_format}"),
        row_stride=stride,
        data=data,
    )
    return pb.ClassifyRequest(raw_image=raw, **fields)  # type: ignore[arg-type]


def test_raw_frames_in_every_format_get_the_labels_of_the_same_picture_as_png(
    default_server: ServerThread, photos: dict[str, bytes]
) -> None:
    rgb = np.asarray(open_image(photos["coffee"]).convert("RGB"))
    formats = ["RGB8", "BGR8", "RGBA8", "BGRA8", "GRAY8", "NV12", "I420"]
    requests = [pb.ClassifyRequest(image=photos["coffee"], request_id="png", language="en")]
    requests += [raw_request(rgb, f, request_id=f, language="en") for f in formats]
    with Client(default_server.address) as client:
        png, *raws = list(client.classify_stream(iter(requests)))
    assert [r.request_id for r in raws] == formats
    for response in raws:
        assert not response.HasField("error"), response.error.message
        assert response.labels[0].class_id == png.labels[0].class_id == ESPRESSO
    for exact in raws[:4]:  # the same pixels, so the same scores
        assert [lb.class_id for lb in exact.labels] == [lb.class_id for lb in png.labels]
        assert abs(exact.labels[0].score - png.labels[0].score) < 1e-4


def test_a_raw_frame_of_the_wrong_size_fails_alone(default_server: ServerThread) -> None:
    good = np.zeros((32, 32, 3), dtype=np.uint8)
    bad = pb.ClassifyRequest(
        raw_image=pb.RawImage(width=32, height=32, format=pb.PIXEL_FORMAT_RGB8, data=b"\0" * 100),
        request_id="bad",
    )
    requests = [
        raw_request(good, "RGB8", request_id="a"),
        bad,
        raw_request(good, "NV12", request_id="b"),
    ]
    with Client(default_server.address) as client:
        responses = list(client.classify_stream(iter(requests)))
    assert [r.request_id for r in responses] == ["a", "bad", "b"]
    assert responses[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "has 100 bytes" in responses[1].error.message
    assert responses[0].labels and responses[2].labels


def test_unary_calls_take_raw_frames_too(
    default_server: ServerThread, photos: dict[str, bytes]
) -> None:
    rgb = np.asarray(open_image(photos["coffee"]).convert("RGB"))
    with grpc.insecure_channel(default_server.address) as channel:
        response = pb_grpc.RecognizerStub(channel).Classify(raw_request(rgb, "BGR8"))
    assert response.labels[0].class_id == ESPRESSO


@pytest.fixture(scope="module")
def slow_server() -> Iterator[ServerThread]:
    """A server whose model takes 40 ms a batch, one batch at a time: easy to fall behind."""
    model = colour_model(network=ColourNet(delay_s=0.04))
    with ServerThread([model], max_batch_size=2, inference_workers=1) as running:
        yield running


def camera(
    count: int, fps: float, options: pb.StreamOptions | None = None
) -> Iterator[pb.ClassifyRequest]:
    for index in range(count):
        request = pb.ClassifyRequest(
            image=solid_png(COLOURS[index % 3], size=16), request_id=str(index), top_k=1
        )
        if index == 0 and options is not None:
            request.stream_options.CopyFrom(options)
        yield request
        time.sleep(1 / fps)


def test_latest_frame_skips_when_the_server_falls_behind(slow_server: ServerThread) -> None:
    with grpc.insecure_channel(slow_server.address) as channel:
        call = pb_grpc.RecognizerStub(channel).ClassifyStream(camera(60, fps=200, options=LATEST))
        responses = list(call)
        trailers = dict(call.trailing_metadata())
    assert [r.request_id for r in responses] == [str(i) for i in range(60)]
    skipped = [r for r in responses if r.skipped]
    assert len(skipped) >= 20 and all(not r.labels for r in skipped)
    assert not responses[-1].skipped
    for response in responses:
        if not response.skipped:
            assert response.labels[0].class_id == int(response.request_id) % 3
    assert trailers["recognizer-frames-skipped"] == str(len(skipped))
    assert trailers["recognizer-frames-answered"] == str(60 - len(skipped))
    assert trailers["recognizer-frames-failed"] == "0"


def test_every_frame_never_skips_when_the_server_falls_behind(slow_server: ServerThread) -> None:
    every = pb.StreamOptions(policy=pb.STREAM_POLICY_EVERY_FRAME)
    with grpc.insecure_channel(slow_server.address) as channel:
        responses = list(pb_grpc.RecognizerStub(channel).ClassifyStream(camera(40, 200, every)))
    assert [r.request_id for r in responses] == [str(i) for i in range(40)]
    assert not any(r.skipped for r in responses)
    assert all(r.labels[0].class_id == int(r.request_id) % 3 for r in responses)


def test_invalid_stream_options_end_the_stream(slow_server: ServerThread) -> None:
    options = pb.StreamOptions(policy=pb.STREAM_POLICY_EVERY_FRAME, max_frame_age_ms=50)
    with (
        grpc.insecure_channel(slow_server.address) as channel,
        pytest.raises(grpc.RpcError) as raised,
    ):
        list(pb_grpc.RecognizerStub(channel).ClassifyStream(camera(3, 100, options)))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "max_frame_age_ms" in raised.value.details()


def test_order_holds_across_concurrent_streams_and_unary_calls() -> None:
    images = [solid_png(colour) for colour in COLOURS]

    def stream(client: Client, offset: int) -> list[pb.ClassifyResponse]:
        requests = (
            pb.ClassifyRequest(image=images[(i + offset) % 3], request_id=str(i)) for i in range(40)
        )
        return list(client.classify_stream(requests))

    with (
        ServerThread([colour_model()], max_batch_size=4, max_batch_delay_ms=2) as running,
        Client(running.address) as client,
        concurrent.futures.ThreadPoolExecutor(10) as pool,
    ):
        streams = [pool.submit(stream, client, offset) for offset in range(6)]
        unary = [pool.submit(client.classify, images[i % 3]) for i in range(30)]
        for offset, future in enumerate(streams):
            responses = future.result()
            assert [r.request_id for r in responses] == [str(i) for i in range(40)]
            expected = [(i + offset) % 3 for i in range(40)]
            assert [r.labels[0].class_id for r in responses] == expected
        assert [f.result().labels[0].class_id for f in unary] == [i % 3 for i in range(30)]


def test_a_client_that_cancels_mid_stream_leaves_nothing_behind(slow_server: ServerThread) -> None:
    with grpc.insecure_channel(slow_server.address) as channel:
        call = pb_grpc.RecognizerStub(channel).ClassifyStream(camera(1000, fps=500))
        next(call)
        call.cancel()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (
        slow_server.engine.open_streams or slow_server.engine.pending()
    ):
        time.sleep(0.05)
    assert slow_server.engine.open_streams == 0
    assert slow_server.engine.pending() == 0


def test_a_long_stream_keeps_memory_flat() -> None:
    """The soak check, shortened for CI; RECOGNIZER_SOAK_FRAMES=20000 runs it at full length."""
    frames = int(os.environ.get("RECOGNIZER_SOAK_FRAMES", "4000"))
    warm_up = frames // 5
    process = psutil.Process()
    rss: dict[str, int] = {}
    done = threading.Event()

    def requests() -> Iterator[pb.ClassifyRequest]:
        image = solid_png(COLOURS[1], size=24)
        for index in range(frames):
            if index == warm_up:
                rss["warm"] = process.memory_info().rss
            yield pb.ClassifyRequest(image=image, request_id=str(index), top_k=1)
        done.set()

    with (
        ServerThread([colour_model()], max_batch_size=8) as running,
        Client(running.address) as client,
    ):
        answered = sum(1 for r in client.classify_stream(requests()) if r.labels)
    growth_mib = (process.memory_info().rss - rss["warm"]) / 2**20
    assert done.is_set() and answered == frames
    print(f"soak: {frames} frames, resident memory grew {growth_mib:.1f} MiB after warm-up")
    assert growth_mib < 20, f"resident memory grew {growth_mib:.1f} MiB over {frames} frames"
