"""What the graph backends (ONNX Runtime, OpenVINO) share: the export, input, scores, check.

PyTorch models are exported to ONNX at start-up with normalisation folded into the
graph, so the graph takes the uint8 NHWC batch as it is. ONNX files from users take
normalised float NCHW input instead, prepared here with numpy. Scores (softmax or
sigmoid) and top-k are computed here too, the same for every graph backend, and every
export is checked against PyTorch before it is served.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from recognizer.engine.backends import Backend
from recognizer.errors import BackendError
from recognizer.models.spec import LoadedModel, ModelSpec, OnnxGraph


class GraphInputs:
    """Turns the engine's uint8 NHWC batch into what a graph's one input takes."""

    def __init__(self, spec: ModelSpec, *, takes_pixels: bool) -> None:
        self.takes_pixels = takes_pixels
        self._mean = np.asarray(spec.preprocessing.mean, np.float32) * 255
        self._inv_std = 1 / (np.asarray(spec.preprocessing.std, np.float32) * 255)

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        if self.takes_pixels:
            return pixels
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
    """Export a PyTorch model to an ONNX graph taking uint8 NHWC pixels."""
    size = model.spec.preprocessing.crop
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
                _PixelsToLogits(model).eval(),
                (check_sample(size),),
                path,
                input_names=["pixels"],
                output_names=["logits"],
                dynamic_axes={"pixels": {0: "batch"}, "logits": {0: "batch"}},
                opset_version=18,
                dynamo=False,
            )
            return OnnxGraph(path.read_bytes())
    except Exception as error:  # exporters fail in many ways; the caller may fall back
        raise BackendError(f"{model.spec.name} cannot be exported to ONNX: {error}") from error


def check_sample(size: int) -> torch.Tensor:
    """Two fixed images of noise: what an export is checked on."""
    pixels = np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    return torch.from_numpy(pixels)


def check_against_torch(
    backend: Backend, model: LoadedModel, *, name: str, tolerance: float, same_top1: bool
) -> None:
    """Refuse a backend whose class probabilities differ from PyTorch's beyond `tolerance`."""
    sample = check_sample(model.spec.preprocessing.crop)
    with torch.inference_mode():
        logits = _PixelsToLogits(model).eval()(sample).numpy()
    expected = activate(logits, model.spec.activation)
    scores, class_ids = backend(sample.numpy(), model.spec.num_classes)
    got = np.empty_like(expected)
    np.put_along_axis(got, class_ids, scores, axis=1)
    difference = float(np.abs(got - expected).max())
    if difference > tolerance or (same_top1 and (got.argmax(1) != expected.argmax(1)).any()):
        raise BackendError(
            f"{name} runs {model.spec.name} {difference:.2e} away from PyTorch"
            f" (tolerance {tolerance:.0e})"
        )
