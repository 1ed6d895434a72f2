"""What every graph backend (ONNX Runtime, OpenVINO) does in numpy: input, scores, top-k.

Exported graphs take the uint8 NHWC batch as it is; ONNX files from users take
normalised float NCHW input instead, prepared here. Scores (softmax or sigmoid) and
top-k are computed here too, the same for every graph backend. No PyTorch: a model
served from the cache never imports it.
"""

from __future__ import annotations

import numpy as np

from recognizer.models.spec import ModelSpec


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
