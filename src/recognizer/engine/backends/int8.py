"""int8 on the CPU: NNCF's post-training quantisation of the OpenVINO model, then a gate.

Why NNCF and not ONNX Runtime's quantiser: the model runs on OpenVINO, and NNCF is
OpenVINO's own quantiser: it places FakeQuantize nodes where OpenVINO's CPU plugin fuses
them into int8 kernels, knows which CPUs need the overflow fix, and quantises
OpenVINO models directly, whatever they were read from (our ONNX exports, users' ONNX
files). ONNX Runtime's QDQ models would have to be run by ONNX Runtime, the slower
backend here, or translated by OpenVINO with less control.

The recipe (measured, BENCHMARKS.md): calibrate on CALIBRATION_IMAGES views of the shipped
photos (calibration.py), with the overflow fix on every layer (CPUs without VNNI
saturate 16-bit sums of int8 products otherwise), then compare with fp32 on
HELD_OUT_IMAGES other views: top-1 agreement and the mean difference of the top-5
probabilities. The engine refuses (or falls back to fp32) below the agreement required.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from recognizer.engine.backends.arrays import activate
from recognizer.engine.backends.calibration import CALIBRATION_SEED, HELD_OUT_SEED, image_set
from recognizer.models.spec import ModelSpec

logger = logging.getLogger(__name__)

CALIBRATION_IMAGES = 300
HELD_OUT_IMAGES = 300
CHECK_BATCH = 8
RECIPE = "nncf-ptq-overflow-fix-all/1"  # part of the cache key: change it with the recipe


class Agreement:
    """How a quantised model's answers compare with fp32's on the same images."""

    def __init__(self, top1_agreement: float, mean_top5_difference: float, images: int) -> None:
        self.top1_agreement = top1_agreement
        self.mean_top5_difference = mean_top5_difference
        self.images = images

    def as_json(self) -> dict[str, float | int]:
        return {
            "top1_agreement": self.top1_agreement,
            "mean_top5_difference": self.mean_top5_difference,
            "held_out_images": self.images,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Agreement:
        return cls(
            float(data["top1_agreement"]),
            float(data["mean_top5_difference"]),
            int(data["held_out_images"]),
        )


def quantize(model: Any, spec: ModelSpec, inputs: Callable[[np.ndarray], np.ndarray]) -> Any:
    """An int8 copy of an OpenVINO model, calibrated on views of the shipped photos.

    `inputs` turns uint8 pixels into what the model's input takes (GraphInputs).
    """
    import nncf
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        OverflowFix,
    )

    pixels = image_set(spec.preprocessing, CALIBRATION_IMAGES, seed=CALIBRATION_SEED)
    dataset = nncf.Dataset([inputs(pixels[index : index + 1]) for index in range(len(pixels))])
    return nncf.quantize(
        model,
        dataset,
        subset_size=CALIBRATION_IMAGES,
        advanced_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE),
    )


def compare(
    reference: Callable[[np.ndarray], np.ndarray],
    quantized: Callable[[np.ndarray], np.ndarray],
    spec: ModelSpec,
) -> Agreement:
    """Top-1 agreement and mean top-5 probability difference on the held-out views.

    `reference` and `quantized` map a uint8 batch to logits.
    """
    pixels = image_set(spec.preprocessing, HELD_OUT_IMAGES, seed=HELD_OUT_SEED)
    agree, differences = 0, []
    for start in range(0, len(pixels), CHECK_BATCH):
        batch = pixels[start : start + CHECK_BATCH]
        expected = activate(reference(batch), spec.activation)
        got = activate(quantized(batch), spec.activation)
        agree += int((expected.argmax(1) == got.argmax(1)).sum())
        top5 = np.argsort(-expected, axis=1)[:, :5]
        differences.append(
            np.abs(
                np.take_along_axis(expected, top5, axis=1) - np.take_along_axis(got, top5, axis=1)
            ).mean(axis=1)
        )
    return Agreement(agree / len(pixels), float(np.concatenate(differences).mean()), len(pixels))
