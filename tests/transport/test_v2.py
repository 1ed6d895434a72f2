"""Triton's gRPC protocol through PyPI's tritonclient, against real servers: the shipped
photos get the labels and scores recognizer.v1 gives them, as encoded images and as pixels,
unary, streamed and async; tokens, errors, metadata and statistics as Triton's clients and
perf_analyzer read them."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
import tritonclient.grpc.aio as triton_aio
from PIL import Image
from tritonclient.utils import InferenceServerException

from fakes import colour_model, solid_png
from recognizer.client import Client
from recognizer.config.schema import SecuritySettings
from recognizer.v1 import recognizer_pb2 as v1
from recognizer.v1 import recognizer_pb2_grpc as v1_grpc
from recognizer.v2.inference import grpc_service_pb2 as pb
from recognizer.v2.inference import grpc_service_pb2_grpc as pb_grpc
from support import ServerThread, error_reason

MODEL = "efficientnet-lite0"
SHIPPED = sorted(Path(str(resources.files("recognizer.models") / "data" / "photos")).glob("*.jpg"))
TOKEN = "q9Xc1kF0b7WvN2yH4tLm8a"


@pytest.fixture(scope="module")
def client(default_server: ServerThread) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(default_server.address) as connected:
        yield connected


@pytest.fixture(scope="module")
def v1_client(default_server: ServerThread) -> Iterator[Client]:
    with Client(default_server.address, timeout=60) as connected:
        yield connected


def image_input(*images: bytes) -> triton.InferInput:
    tensor = triton.InferInput("IMAGE", [len(images), 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[image] for image in images], dtype=np.object_))
    return tensor


def pixel_input(pixels: np.ndarray) -> triton.InferInput:
    tensor = triton.InferInput("PIXELS", list(pixels.shape), "UINT8")
    tensor.set_data_from_numpy(pixels)
    return tensor


def top(count: int) -> list[triton.InferRequestedOutput]:
    return [triton.InferRequestedOutput("PROBABILITIES", class_count=count)]


def parsed(row: np.ndarray) -> list[tuple[int, str, np.float32]]:
    """Triton's "score:index:label" strings as (class id, label, score)."""
    found = []
    for element in row:
        score, index, label = element.decode().split(":", 2)
        found.append((int(index), label, np.float32(score)))
    return found


def expected(response: v1.ClassifyResponse) -> list[tuple[int, str, np.float32]]:
    return [(label.class_id, label.label, np.float32(label.score)) for label in response.labels]


def assert_same(got: list[tuple[int, str, np.float32]], want: list[tuple[int, str, np.float32]]):
    """The same classes, labels and scores; scores within 1e-5, since a batch of other
    images can move a float32 in its last bits."""
    assert [(class_id, label) for class_id, label, _ in got] == [
        (class_id, label) for class_id, label, _ in want
    ]
    assert [score for *_, score in got] == pytest.approx([score for *_, score in want], abs=1e-5)


def test_the_shipped_photos_get_recognizer_v1s_labels_and_scores(
    client: triton.InferenceServerClient, v1_client: Client
) -> None:
    assert len(SHIPPED) >= 10
    for start in range(0, len(SHIPPED), 4):  # several images a request
        batch = SHIPPED[start : start + 4]
        images = image_input(*(path.read_bytes() for path in batch))
        result = client.infer(MODEL, [images], outputs=top(5))
        rows = result.as_numpy("PROBABILITIES")
        assert rows.shape == (len(batch), 5)
        for path, row in zip(batch, rows, strict=True):
            assert_same(parsed(row), expected(v1_client.classify(path, top_k=5)))


def test_the_probabilities_are_every_class_score_as_float32(
    client: triton.InferenceServerClient, v1_client: Client
) -> None:
    photo = SHIPPED[0].read_bytes()
    scores = client.infer(MODEL, [image_input(photo)]).as_numpy("PROBABILITIES")
    assert scores.dtype == np.float32 and scores.shape == (1, 1000)
    assert scores.sum() == pytest.approx(1.0, abs=1e-4)
    best = np.argsort(-scores[0])[:3]
    want = v1_client.classify(photo, top_k=3)
    assert [int(i) for i in best] == [label.class_id for label in want.labels]
    assert scores[0, best] == pytest.approx([label.score for label in want.labels], abs=1e-5)


def test_labels_are_chinese_by_default_and_english_on_request(
    client: triton.InferenceServerClient, v1_client: Client
) -> None:
    photo = SHIPPED[1].read_bytes()
    chinese = parsed(
        client.infer(MODEL, [image_input(photo)], outputs=top(3)).as_numpy("PROBABILITIES")[0]
    )
    english = client.infer(
        MODEL, [image_input(photo)], outputs=top(3), parameters={"language": "en"}
    ).as_numpy("PROBABILITIES")[0]
    assert_same(chinese, expected(v1_client.classify(photo, top_k=3)))
    assert_same(parsed(english), expected(v1_client.classify(photo, top_k=3, language="en")))
    assert chinese[0][1] != parsed(english)[0][1]


def test_pixels_are_classified_as_recognizer_v1s_raw_frames(
    client: triton.InferenceServerClient, default_server: ServerThread
) -> None:
    frames = []
    for path in SHIPPED[:2]:
        with Image.open(path) as opened:
            frames.append(np.asarray(opened.convert("RGB").resize((320, 240)), dtype=np.uint8))
    pixels = np.stack(frames)
    rows = client.infer(MODEL, [pixel_input(pixels)], outputs=top(3)).as_numpy("PROBABILITIES")
    for frame, row in zip(frames, rows, strict=True):
        raw = v1.RawImage(width=320, height=240, format=v1.PIXEL_FORMAT_RGB8, data=frame.tobytes())
        with grpc.insecure_channel(default_server.address) as channel:
            stub = v1_grpc.RecognizerStub(channel)
            want = stub.Classify(v1.ClassifyRequest(raw_image=raw, top_k=3), timeout=60)
        assert_same(parsed(row), expected(want))


def test_a_stream_answers_each_request_by_its_id_and_goes_on_after_a_bad_one(
    client: triton.InferenceServerClient, v1_client: Client
) -> None:
    answers: queue.Queue[tuple[object, object]] = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    try:
        for index, path in enumerate(SHIPPED[:5]):
            client.async_stream_infer(
                MODEL, [image_input(path.read_bytes())], request_id=str(index), outputs=top(3)
            )
        client.async_stream_infer(MODEL, [image_input(b"not an image")], request_id="bad")
        client.async_stream_infer(
            MODEL, [image_input(SHIPPED[5].read_bytes())], request_id="5", outputs=top(3)
        )
        results = {}
        errors = []
        for _ in range(7):
            result, error = answers.get(timeout=120)
            if error is not None:
                errors.append(str(error))
            else:
                assert isinstance(result, triton.InferResult)
                results[result.get_response().id] = result.as_numpy("PROBABILITIES")[0]
    finally:
        client.stop_stream()
    assert sorted(results) == [str(i) for i in range(6)]
    for index, row in results.items():
        assert_same(parsed(row), expected(v1_client.classify(SHIPPED[int(index)], top_k=3)))
    assert len(errors) == 1 and errors[0].startswith("INVALID_ARGUMENT IMAGE_UNDECODABLE: ")


async def test_the_asyncio_client_classifies_concurrently(
    default_server: ServerThread, v1_client: Client
) -> None:
    import asyncio

    async with triton_aio.InferenceServerClient(default_server.address) as aio:
        results = await asyncio.gather(
            *(
                aio.infer(MODEL, [image_input(path.read_bytes())], outputs=top(2))
                for path in SHIPPED[:6]
            )
        )
    for path, result in zip(SHIPPED[:6], results, strict=True):
        assert_same(
            parsed(result.as_numpy("PROBABILITIES")[0]),
            expected(v1_client.classify(path, top_k=2)),
        )


def test_health_metadata_and_config_say_what_perf_analyzer_needs(
    client: triton.InferenceServerClient,
) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL) and not client.is_model_ready("nope")
    server = client.get_server_metadata(as_json=True)
    assert server["name"] == "recognizer" and "classification" in server["extensions"]
    assert "statistics" in server["extensions"]
    metadata = client.get_model_metadata(MODEL, as_json=True)
    config = client.get_model_config(MODEL, as_json=True)["config"]
    assert [t["name"] for t in metadata["inputs"]] == [t["name"] for t in config["input"]]
    assert [t["name"] for t in metadata["outputs"]] == [t["name"] for t in config["output"]]
    assert metadata["inputs"][0] == {"name": "IMAGE", "datatype": "BYTES", "shape": ["-1", "1"]}
    assert metadata["outputs"][0]["shape"] == ["-1", "1000"]
    assert all(t["optional"] for t in config["input"])  # a request sends one or the other
    assert config["input"][1]["format"] == "FORMAT_NHWC"
    assert config["max_batch_size"] == 8 and config["platform"] == "recognizer"
    assert "dynamic_batching" in config


def test_statistics_count_the_requests_answered(client: triton.InferenceServerClient) -> None:
    def successes() -> int:
        stats = client.get_inference_statistics(MODEL, as_json=True)["model_stats"][0]
        return int(stats["inference_stats"]["success"].get("count", 0))

    before = successes()
    client.infer(MODEL, [image_input(SHIPPED[0].read_bytes(), SHIPPED[1].read_bytes())])
    assert successes() == before + 1
    stats = client.get_inference_statistics(MODEL, as_json=True)["model_stats"][0]
    assert int(stats["inference_count"]) >= int(stats["execution_count"]) > 0


@pytest.mark.parametrize(
    ("inputs", "outputs", "reason"),
    [
        ([image_input(b"not an image")], None, "IMAGE_UNDECODABLE"),
        ([image_input(*[solid_png((9, 9, 9))] * 9)], None, "INVALID_REQUEST"),  # > batch of 8
        ([pixel_input(np.zeros((1, 4, 4, 4), np.uint8))], None, "INVALID_REQUEST"),
        ([], None, "INVALID_REQUEST"),
        ([image_input(b"x")], [triton.InferRequestedOutput("LOGITS")], "INVALID_REQUEST"),
    ],
    ids=["undecodable", "over-max-batch-size", "four-channels", "no-input", "unknown-output"],
)
def test_a_bad_request_is_invalid_argument_with_its_reason(
    client: triton.InferenceServerClient,
    default_server: ServerThread,
    inputs: list[triton.InferInput],
    outputs: list[triton.InferRequestedOutput] | None,
    reason: str,
) -> None:
    with pytest.raises(InferenceServerException) as raised:
        client.infer(MODEL, inputs, outputs=outputs)
    assert raised.value.status() == "StatusCode.INVALID_ARGUMENT"
    # The same call over plain gRPC, for the google.rpc details tritonclient does not show.
    request = pb.ModelInferRequest(model_name=MODEL)
    for tensor in inputs:
        request.inputs.append(tensor._get_tensor())
        request.raw_input_contents.append(tensor._get_content())
    for output in outputs or ():
        request.outputs.append(output._get_tensor())
    with (
        grpc.insecure_channel(default_server.address) as channel,
        pytest.raises(grpc.RpcError) as failed,
    ):
        pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
    assert failed.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(failed.value) == reason


def test_an_unknown_model_is_not_found(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as raised:
        client.infer("nope", [image_input(SHIPPED[0].read_bytes())])
    assert raised.value.status() == "StatusCode.NOT_FOUND"
    assert "efficientnet-lite0" in raised.value.message()


def test_methods_it_does_not_serve_are_unimplemented(
    client: triton.InferenceServerClient,
) -> None:
    with pytest.raises(InferenceServerException) as raised:
        client.get_model_repository_index()
    assert raised.value.status() == "StatusCode.UNIMPLEMENTED"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    """Tokens on (plaintext on loopback), health left open."""
    tokens = tmp_path_factory.mktemp("tokens") / "tokens"
    tokens.write_text(f"shop:{TOKEN}\n", encoding="utf-8")
    with ServerThread([colour_model()], security=SecuritySettings(tokens_file=tokens)) as server:
        yield server


def test_with_auth_on_a_token_is_needed_and_health_stays_open(guarded: ServerThread) -> None:
    png = solid_png((0, 0, 200))
    with triton.InferenceServerClient(guarded.address) as client:
        assert client.is_server_ready() and client.is_model_ready("colours")
        with pytest.raises(InferenceServerException) as raised:
            client.infer("colours", [image_input(png)], outputs=top(1))
        assert raised.value.status() == "StatusCode.UNAUTHENTICATED"
        with pytest.raises(InferenceServerException):
            client.get_model_metadata("colours", headers={"authorization": "Bearer wrong"})
        result = client.infer(
            "colours",
            [image_input(png)],
            outputs=top(1),
            parameters={"language": "en"},
            headers={"authorization": f"Bearer {TOKEN}"},
        )
    assert parsed(result.as_numpy("PROBABILITIES")[0])[0][:2] == (2, "blue")


def test_a_request_timeout_parameter_is_its_deadline(client: triton.InferenceServerClient) -> None:
    """tritonclient's `timeout` (microseconds) bounds the request on the server."""
    with pytest.raises(InferenceServerException) as raised:
        client.infer(MODEL, [image_input(solid_png((120, 30, 41)))], timeout=1)
    assert raised.value.status() == "StatusCode.DEADLINE_EXCEEDED"
