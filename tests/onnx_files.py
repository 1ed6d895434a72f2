"""Tiny real ONNX classifiers, written in a moment, for tests that load and swap models.

A colour model averages each channel of a 32x32 image and names its dominant one: red,
green or blue. `order` permutes which channel each class reads, so two versions of one
model answer the same image differently, and a test can tell which version answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

COLOURS = ("red", "green", "blue")
SIZE = 32


def colour_onnx(
    directory: Path, *, order: Sequence[int] = (0, 1, 2), name: str = "model.onnx"
) -> Path:
    """Write `directory/name` and its English labels beside it; class i reads channel
    order[i]. Returns the model file."""
    directory.mkdir(parents=True, exist_ok=True)
    weights = np.zeros((3, 3), dtype=np.float32)
    for label, channel in enumerate(order):
        weights[channel, label] = 4.0
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["image"], ["means"], axes=[2, 3], keepdims=0),
            helper.make_node("MatMul", ["means", "weights"], ["logits"]),
        ],
        "colours",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])],
        initializer=[numpy_helper.from_array(weights, "weights")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = directory / name
    path.write_bytes(model.SerializeToString())
    (directory / "labels_en.txt").write_text("\n".join(COLOURS) + "\n", encoding="utf-8")
    return path
