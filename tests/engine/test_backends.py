"""Backends: each gives PyTorch's answers, and each device and kind gets the right one."""

from __future__ import annotations

import io
import warnings

import numpy as np
import openvino as ov
import pytest
import torch

from fakes import colour_model
from recognizer.config.schema import EngineSettings
from recognizer.engine.backends import Backend, resolve_device
from recognizer.engine.backends.arrays import activate, top_k_scores
from recognizer.engine.backends.builder import Sources, build, network_kind
from recognizer.engine.backends.graphs import export_to_onnx
from recognizer.engine.backends.onnx_backend import OnnxRuntimeBackend
from recognizer.engine.backends.openvino_backend import OpenVinoBackend
from recognizer.engine.backends.plan import Plan, plans
from recognizer.engine.backends.torch_backend import TorchBackend
from recognizer.engine.engine import ServedModel
from recognizer.errors import BackendError
from recognizer.models.efficientnet_lite0 import PREPROCESSING
from recognizer.models.preprocessing import decode_image, prepare_input
from recognizer.models.spec import LoadedModel, OnnxGraph

CPU = torch.device("cpu")
HAS_BF16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def backend(model: LoadedModel, kind: str, precision: str = "auto") -> Backend:
    """The model on the backends `recognizer serve --backend KIND --precision ...` tries."""
    settings = EngineSettings(backend=kind, precision=precision)  # type: ignore[arg-type]
    return build(plans(settings, "cpu", network_kind(model)), model.spec, Sources.of(model))[1]


def photo_batch(photos: dict[str, bytes]) -> np.ndarray:
    return np.stack([prepare_input(decode_image(p), PREPROCESSING) for p in photos.values()])


@pytest.mark.parametrize("kind", ["openvino", "onnxruntime"])
def test_graph_backends_rank_real_photos_as_pytorch_does(
    default_loaded: LoadedModel,
    default_model: ServedModel,
    photos: dict[str, bytes],
    kind: str,
) -> None:
    batch = photo_batch(photos)
    scores, class_ids = backend(default_loaded, kind)(batch, 5)
    torch_scores, torch_ids = default_model.backend(batch, 5)
    assert (class_ids == torch_ids).all()
    assert np.abs(scores - torch_scores).max() < 1e-4


@pytest.mark.skipif(not HAS_BF16, reason="this CPU has no bfloat16 (AMX or AVX512-BF16)")
def test_bfloat16_on_openvino_stays_close_to_pytorch(
    default_loaded: LoadedModel, default_model: ServedModel, photos: dict[str, bytes]
) -> None:
    batch = photo_batch(photos)
    fast = backend(default_loaded, "openvino", precision="bf16")
    scores, class_ids = fast(batch, 1000)
    reference = np.zeros_like(scores)
    torch_scores, torch_ids = default_model.backend(batch, 1000)
    np.put_along_axis(reference, torch_ids, torch_scores, axis=1)
    got = np.zeros_like(scores)
    np.put_along_axis(got, class_ids, scores, axis=1)
    assert np.abs(got - reference).max() < 0.05


@pytest.mark.parametrize("kind", ["openvino", "onnxruntime"])
def test_a_user_onnx_file_with_float_input_is_normalised_for_it(
    default_loaded: LoadedModel, kind: str
) -> None:
    network = default_loaded.network
    assert isinstance(network, torch.nn.Module)
    stream = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            network,
            (torch.zeros(1, 3, 224, 224),),
            stream,
            input_names=["x"],
            dynamic_axes={"x": {0: "n"}},
            dynamo=False,
        )
    user_file = LoadedModel(default_loaded.spec, OnnxGraph(stream.getvalue()))
    pixels = np.random.default_rng(1).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    float_input = backend(user_file, kind)
    plan = Plan(device="cpu", runtime="onnxruntime", precision="fp32", workers=None, threads=1)
    exported = OnnxRuntimeBackend(export_to_onnx(default_loaded), default_loaded.spec, plan)
    assert (float_input(pixels, 3)[1] == exported(pixels, 3)[1]).all()


def test_activations_and_top_k() -> None:
    logits = np.array([[1.0, 3.0, 2.0], [0.0, 0.0, 5.0]], dtype=np.float32)
    softmax = activate(logits, "softmax")
    assert np.allclose(softmax.sum(axis=1), 1)
    assert np.allclose(activate(logits, "sigmoid"), 1 / (1 + np.exp(-logits)))
    scores, ids = top_k_scores(softmax, 2)
    assert ids[0].tolist() == [1, 2] and ids[1, 0] == 2
    assert (np.diff(scores, axis=1) <= 0).all()
    _, order = top_k_scores(softmax, 10)
    assert order.shape == (2, 3) and order[0].tolist() == [1, 2, 0]


def test_auto_picks_openvino_on_the_cpu(default_loaded: LoadedModel) -> None:
    chosen = backend(default_loaded, "auto")
    assert isinstance(chosen, OpenVinoBackend) and chosen.device == "cpu"
    assert backend(default_loaded, "torch").name == "torch"
    assert backend(default_loaded, "onnxruntime").name == "onnxruntime"


@pytest.mark.parametrize(
    ("kind", "precision", "message"),
    [
        ("onnxruntime", "bf16", "onnxruntime runs efficientnet-lite0 in fp32 on cpu, not bf16"),
        ("torch", "fp16", "torch runs efficientnet-lite0 in fp32 on cpu, not fp16"),
        ("openvino", "fp16", "openvino runs efficientnet-lite0 in fp32, bf16, int8 on cpu, not"),
    ],
)
def test_precisions_a_backend_cannot_run_are_start_up_errors(
    default_loaded: LoadedModel, kind: str, precision: str, message: str
) -> None:
    with pytest.raises(BackendError, match=message):
        backend(default_loaded, kind, precision=precision)


class Unexportable(torch.nn.Module):
    """Runs in PyTorch but has no ONNX form: its forward leaves the traced graph."""

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        means = pixels.mean(dim=(2, 3)).numpy()
        return torch.from_numpy(np.ascontiguousarray(means))


def test_a_model_that_will_not_export_falls_back_to_torch_under_auto_only() -> None:
    spec = colour_model().spec
    model = LoadedModel(spec, Unexportable())
    assert isinstance(backend(model, "auto"), TorchBackend)
    for kind in ("openvino", "onnxruntime"):
        with pytest.raises(BackendError, match="ONNX"):
            backend(model, kind)


class MeanColour(torch.nn.Module):
    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels.mean(dim=(2, 3))


def test_torchscript_models_run_on_torch_unless_onnxruntime_is_demanded() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript is deprecated
        scripted = torch.jit.trace(MeanColour(), torch.zeros(1, 3, 8, 8))
    model = LoadedModel(colour_model().spec, scripted)
    chosen = backend(model, "auto")
    assert chosen.name == "torch"
    pixels = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    pixels[1, ..., 2] = 255
    assert chosen(pixels, 1)[1][:, 0].tolist() == [0, 2]
    with pytest.raises(BackendError, match="cannot be exported to ONNX"):
        backend(model, "onnxruntime")


def test_a_model_too_large_for_the_device_is_a_start_up_error_that_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def out_of_memory(self: TorchBackend, model: LoadedModel, **kwargs: object) -> None:
        raise torch.OutOfMemoryError(
            "CUDA out of memory. Tried to allocate 600.00 MiB (GPU 0; 7.79 GiB total)\nmore"
        )

    model = LoadedModel(colour_model().spec, MeanColour())
    monkeypatch.setattr(TorchBackend, "__init__", out_of_memory)
    with pytest.raises(BackendError) as raised:
        backend(model, "torch")
    assert str(raised.value) == (
        "colours does not fit in the memory of cpu (CUDA out of memory. Tried to allocate"
        " 600.00 MiB (GPU 0; 7.79 GiB total)): serve it on another device, or fewer models"
        " beside it"
    )


@pytest.mark.parametrize("device", ["cuda:0", "tpu", "cuda:99"])
def test_devices_that_are_not_there_are_start_up_errors(device: str) -> None:
    if device == "cuda:0" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(BackendError):
        resolve_device(device)


def test_auto_device_is_the_cpu_without_cuda() -> None:
    assert resolve_device("auto") == ("cuda:0" if torch.cuda.is_available() else "cpu")


def test_openvino_takes_calls_asynchronously_with_the_same_answers(
    default_loaded: LoadedModel, photos: dict[str, bytes]
) -> None:
    import threading

    chosen = backend(default_loaded, "openvino")
    assert isinstance(chosen, OpenVinoBackend)
    assert chosen.slots == 2 * chosen._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
    batch = photo_batch(photos)
    expected = chosen(batch, 5)
    answers: list[object] = []
    threads: set[str] = set()
    ended = threading.Semaphore(0)

    def done(result: object) -> None:
        answers.append(result)
        threads.add(threading.current_thread().name)
        ended.release()

    calls = 3 * chosen.slots  # more than it has requests: submit waits for one to be free
    for _ in range(calls):
        chosen.submit(batch, 5, done)
    for _ in range(calls):
        assert ended.acquire(timeout=60)
    for scores, class_ids in answers:  # type: ignore[misc]
        assert (class_ids == expected[1]).all() and np.allclose(scores, expected[0], atol=1e-6)
    assert threading.current_thread().name not in threads  # the runtime's threads answered


def test_openvino_calls_hold_their_inputs_until_they_end(
    default_loaded: LoadedModel, photos: dict[str, bytes]
) -> None:
    """The engine's batch is gone once it is submitted; the runtime reads it in place, so
    the call must keep it: memory freed and written over would change the answers."""
    import threading

    chosen = backend(default_loaded, "openvino")
    assert isinstance(chosen, OpenVinoBackend)
    batch = photo_batch(photos)
    expected = [chosen(batch[[row]], 5) for row in range(len(batch))]
    answers: dict[int, object] = {}
    ended = threading.Semaphore(0)
    calls = 6 * chosen.slots
    for call in range(calls):

        def done(result: object, call: int = call) -> None:
            answers[call] = result
            ended.release()

        chosen.submit(batch[[call % len(batch)]].copy(), 5, done)
        np.full(batch[:1].shape, 255, dtype=batch.dtype)  # written where the copy was
    for _ in range(calls):
        assert ended.acquire(timeout=60)
    for call, (scores, class_ids) in answers.items():  # type: ignore[misc]
        want_scores, want_ids = expected[call % len(batch)]
        assert (class_ids == want_ids).all() and np.allclose(scores, want_scores, atol=1e-6)


def test_openvino_answers_many_submitting_threads_whose_answers_are_slow_to_read(
    default_loaded: LoadedModel,
) -> None:
    """More callers than requests, each submitting as soon as its last answer arrives, with
    answers that take a while to read: two callers given one request ("busy"), or a request
    started while its last answer is still being read, would fail or hang here."""
    import threading

    chosen = backend(default_loaded, "openvino")
    assert isinstance(chosen, OpenVinoBackend)
    pixels = np.zeros((1, 224, 224, 3), dtype=np.uint8)
    answered = [0] * (chosen.slots + 2)

    def caller(index: int) -> None:
        for _ in range(15):
            ended = threading.Event()

            def done(result: object, ended: threading.Event = ended) -> None:
                sum(range(20_000))  # holds the GIL for a while, on the runtime's thread
                ended.set()

            chosen.submit(pixels, 1, done)
            ended.wait()
            answered[index] += 1

    threads = [
        threading.Thread(target=caller, args=(i,), daemon=True) for i in range(len(answered))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert answered == [15] * len(answered)
