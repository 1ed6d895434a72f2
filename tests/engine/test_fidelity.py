"""The fidelity gate: a cheaper model judged against fp32's own answers under benign changes."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import openvino as ov
import pytest

from recognizer.engine.backends import fidelity, int8
from recognizer.engine.backends.arrays import GraphInputs
from recognizer.engine.backends.graphs import export_to_onnx
from recognizer.engine.backends.openvino_backend import OpenVinoBackend
from recognizer.engine.backends.plan import Plan
from recognizer.engine.types import Fidelity
from recognizer.models.spec import LoadedModel

FP32 = Plan(device="cpu", runtime="openvino", precision="fp32", workers=None, threads=2)


def found(top1: float, top5: float, difference: float) -> dict[str, float]:
    return {"top1_agreement": top1, "top5_containment": top5, "mean_top5_difference": difference}


def measurement(measured: dict[str, float]) -> dict[str, object]:
    return {
        "held_out_images": 300,
        "measured": measured,
        "benign_changes": {"mirrored": found(0.82, 0.99, 0.024), "shifted": found(0.88, 1.0, 0.01)},
    }


def test_fidelity_counts_top1_top5_and_the_probability_difference() -> None:
    reference = np.array([[0.7, 0.2, 0.1, 0, 0, 0], [0.1, 0.6, 0.3, 0, 0, 0]])
    other = np.array([[0.6, 0.3, 0.1, 0, 0, 0], [0.0, 0.1, 0.9, 0, 0, 0]])
    measured = fidelity.fidelity(reference, other)
    assert measured.top1_agreement == 0.5 and measured.top5_containment == 1.0
    assert measured.mean_top5_difference == pytest.approx((0.2 + 1.2) / 10)


def test_the_floor_is_the_least_faithful_benign_change_less_its_sampling_margin() -> None:
    check = fidelity.check(measurement(found(0.80, 0.99, 0.02)), min_agreement=None)
    assert check.reference_change == "mirrored" and check.passed
    margin = 1.96 * (0.82 * 0.18 / 300) ** 0.5
    assert check.required.top1_agreement == pytest.approx(0.82 - margin)
    assert check.required.mean_top5_difference == 0.024
    for failing in (found(0.70, 0.99, 0.02), found(0.80, 0.95, 0.02), found(0.80, 0.99, 0.03)):
        refused = fidelity.check(measurement(failing), min_agreement=None)
        assert not refused.passed
        assert "at least" in fidelity.explain(refused) and "mirrored" in fidelity.explain(refused)


def test_a_set_min_agreement_judges_top1_alone() -> None:
    check = fidelity.check(measurement(found(0.60, 0.5, 0.5)), min_agreement=0.6)
    assert check.passed and check.reference_change == ""
    assert check.required == Fidelity(
        top1_agreement=0.6, top5_containment=0.0, mean_top5_difference=1.0
    )


def test_a_broken_quantisation_is_refused(default_loaded: LoadedModel) -> None:
    """Calibrated on blank images, the activation ranges are wrong and the gate says so."""
    spec = default_loaded.spec
    with tempfile.TemporaryDirectory() as scratch:
        graph = Path(scratch) / "model.onnx"
        graph.write_bytes(export_to_onnx(default_loaded).data)
        original = ov.Core().read_model(graph)
        blank = np.zeros((30, 224, 224, 3), dtype=np.uint8)
        inputs = GraphInputs(spec, takes_pixels=True)
        broken = int8.quantize(original, spec, inputs, calibration=blank)
        fp32 = OpenVinoBackend(graph, spec, FP32)
        quantized = OpenVinoBackend(broken, spec, FP32)
        check = fidelity.check(
            fidelity.measure(fp32.logits, quantized.logits, spec), min_agreement=None
        )
    assert not check.passed
    assert check.measured.top1_agreement < check.required.top1_agreement
