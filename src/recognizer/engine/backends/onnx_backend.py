"""The ONNX Runtime backend, the fastest way to run our models on a CPU.

PyTorch models are exported at start-up with normalisation folded into the graph, so
the graph takes the uint8 NHWC batch as it is; the export is checked against PyTorch
before it is served. ONNX files from users take normalised float NCHW input, which is
prepared here with numpy.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from recognizer.errors import BackendError
from recognizer.models.spec import LoadedModel, ModelSpec, OnnxGraph

# Largest difference in any class probability tolerated between the export and PyTorch.
EXPORT_TOLERANCE = 1e-4


class OnnxRuntimeBackend:
    """One ONNX Runtime session shared by the worker threads, each call on `threads` threads.

    Spinning is off, so idle inference threads leave the cores to image decoding.
    """

    name = "onnxruntime"

    def __init__(
        self, graph: OnnxGraph, spec: ModelSpec, *, device: torch.device, threads: int
    ) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if device.type == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise BackendError(
                    f"{spec.name} needs onnxruntime-gpu to run on {device}; install it, or"
                    " serve it on the CPU"
                )
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self._session = ort.InferenceSession(graph.data, options, providers=providers)
        except Exception as error:  # onnxruntime raises its own untyped errors
            raise BackendError(f"ONNX Runtime cannot load {spec.name}: {error}") from error
        self.device = str(device)
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise BackendError(f"{spec.name} has {len(inputs)} ONNX inputs; an image model has one")
        (model_input,) = inputs
        self._input = model_input.name
        self._takes_pixels = model_input.type == "tensor(uint8)"
        self._mean = np.asarray(spec.preprocessing.mean, np.float32) * 255
        self._inv_std = 1 / (np.asarray(spec.preprocessing.std, np.float32) * 255)
        self._activation = spec.activation

    def __call__(self, pixels: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        inputs = pixels if self._takes_pixels else self._normalise(pixels)
        logits = self._session.run(None, {self._input: inputs})[0]
        return top_k_scores(activate(logits, self._activation), top_k)

    def _normalise(self, pixels: np.ndarray) -> np.ndarray:
        scaled = (pixels.astype(np.float32) - self._mean) * self._inv_std
        return np.ascontiguousarray(scaled.transpose(0, 3, 1, 2))


def activate(logits: np.ndarray, activation: str) -> np.ndarray:
    """Softmax (single-label) or sigmoid (multi-label) over the class axis, in float32."""
    logits = logits.astype(np.float32, copy=False)
    if activation == "sigmoid":
        scores: np.ndarray = 1 / (1 + np.exp(-logits))
    else:
        exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
        scores = exponentials / exponentials.sum(axis=1, keepdims=True)
    return scores


def top_k_scores(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best (scores, class ids) per row, best first."""
    k = min(k, scores.shape[1])
    if k < scores.shape[1]:
        candidates = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        candidates = np.broadcast_to(np.arange(k), scores.shape).copy()
    order = np.argsort(-np.take_along_axis(scores, candidates, axis=1), axis=1, kind="stable")
    class_ids = np.take_along_axis(candidates, order, axis=1)
    return np.take_along_axis(scores, class_ids, axis=1), class_ids


class _PixelsToLogits(torch.nn.Module):
    """uint8 NHWC pixels -> normalised float NCHW -> the network's logits."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, model: LoadedModel) -> None:
        super().__init__()
        assert isinstance(model.network, torch.nn.Module)
        self.network = model.network.eval()
        preprocessing = model.spec.preprocessing
        self.register_buffer("mean", torch.tensor(preprocessing.mean).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(preprocessing.std).view(1, 3, 1, 1) * 255)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        batch = pixels.permute(0, 3, 1, 2).float()
        logits: torch.Tensor = self.network((batch - self.mean) / self.std)
        return logits


def export_to_onnx(model: LoadedModel) -> OnnxGraph:
    """Export a PyTorch model for ONNX Runtime and check it gives PyTorch's answers."""
    wrapper = _PixelsToLogits(model).eval()
    size = model.spec.preprocessing.crop
    sample = torch.from_numpy(
        np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    )
    try:
        with (
            tempfile.TemporaryDirectory() as scratch,
            warnings.catch_warnings(),
            torch.inference_mode(),
        ):
            warnings.simplefilter("ignore")  # the TorchScript-based exporter is deprecated
            # The dynamo exporter cannot yet trace timm's "same" padding with a dynamic batch.
            path = Path(scratch) / "model.onnx"
            torch.onnx.export(
                wrapper,
                (sample,),
                path,
                input_names=["pixels"],
                output_names=["logits"],
                dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=18,
                dynamo=False,
            )
            graph = OnnxGraph(path.read_bytes())
    except Exception as error:  # exporters fail in many ways; the caller may fall back
        raise BackendError(f"{model.spec.name} cannot be exported to ONNX: {error}") from error
    _check_export(graph, model, wrapper, sample.numpy())
    return graph


def _check_export(
    graph: OnnxGraph, model: LoadedModel, wrapper: torch.nn.Module, sample: np.ndarray
) -> None:
    backend = OnnxRuntimeBackend(graph, model.spec, device=torch.device("cpu"), threads=1)
    with torch.inference_mode():
        expected = activate(wrapper(torch.from_numpy(sample)).numpy(), model.spec.activation)
    scores, class_ids = backend(sample, model.spec.num_classes)
    got = np.empty_like(expected)
    np.put_along_axis(got, class_ids, scores, axis=1)
    difference = float(np.abs(got - expected).max())
    if difference > EXPORT_TOLERANCE or (got.argmax(1) != expected.argmax(1)).any():
        raise BackendError(
            f"the ONNX export of {model.spec.name} differs from PyTorch by {difference:.2e}"
            f" (tolerance {EXPORT_TOLERANCE:.0e})"
        )
