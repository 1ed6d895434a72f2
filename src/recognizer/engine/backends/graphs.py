"""How PyTorch models become graphs for the graph backends: the export, and its check.

PyTorch models are exported to ONNX at start-up with normalisation folded into the
graph, so the graph takes the uint8 NHWC batch as it is, and every export is checked
against PyTorch before it is served. Only a cold start imports this module (and
PyTorch): a cached export is served without it (store.py).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from recognizer.engine.backends import Backend
from recognizer.engine.backends.arrays import activate
from recognizer.errors import BackendError
from recognizer.models.spec import LoadedModel, OnnxGraph


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
