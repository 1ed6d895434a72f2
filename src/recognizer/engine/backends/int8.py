"""int8 on the CPU: NNCF's post-training quantisation of the OpenVINO model, then a gate.

Why NNCF and not ONNX Runtime's quantiser: the model runs on OpenVINO, and NNCF is
OpenVINO's own quantiser: it places FakeQuantize nodes where OpenVINO's CPU plugin fuses
them into int8 kernels, knows which CPUs need the overflow fix, and quantises
OpenVINO models directly, whatever they were read from (our ONNX exports, users' ONNX
files). ONNX Runtime's QDQ models would have to be run by ONNX Runtime, the slower
backend here, or translated by OpenVINO with less control.

The recipe (measured, BENCHMARKS.md): calibrate on CALIBRATION_IMAGES views of the
shipped photos (calibration.py); keep in fp32 the layers int8 hurts most and speeds least
(the first convolution, which sees raw pixels; the classifier, whose small differences
reorder close classes; depthwise convolutions, whose few weights per channel quantise
coarsely and which run no faster in int8 without VNNI); and, on CPUs without VNNI, the
overflow fix on every layer (their 16-bit sums of int8 products saturate otherwise).

An int8 model serves only if it passes the fidelity gate (fidelity.py), measured once
when it is made and judged at every start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from recognizer.engine.backends.calibration import CALIBRATION_SEED, image_set
from recognizer.models.spec import ModelSpec

CALIBRATION_IMAGES = 300
# Part of the cache key: change it with the recipe or the measurement.
RECIPE = "nncf-ptq/fp32-first-classifier-depthwise/overflow-fix-without-vnni/benign-floor/2"
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def has_vnni(cpuinfo: str | None = None) -> bool:
    """Whether this CPU multiplies int8 with VNNI (or AMX), which needs no overflow fix."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as file:
                cpuinfo = file.read()
        except OSError:
            return False
    flags = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")
    return any(flag in flags.split() for flag in VNNI_FLAGS)


def kept_in_fp32(model: Any) -> list[str]:
    """The layers the recipe leaves in fp32: the first convolution, the last matrix product
    (the classifier) and every depthwise convolution."""
    convolutions = ("Convolution", "GroupConvolution")
    ops = list(model.get_ordered_ops())
    first = next((op for op in ops if op.get_type_name() in convolutions), None)
    last = next(
        (op for op in reversed(ops) if op.get_type_name() in ("MatMul", *convolutions)), None
    )
    depthwise = [op for op in ops if op.get_type_name() == "GroupConvolution" and _depthwise(op)]
    chosen = [op for op in (first, last, *depthwise) if op is not None]
    return list(dict.fromkeys(op.get_friendly_name() for op in chosen))


def _depthwise(op: Any) -> bool:
    """A grouped convolution with one input and one output channel per group."""
    shape = op.input_value(1).get_partial_shape()  # [groups, out/group, in/group, kh, kw]
    return bool(shape.is_static and shape[1].get_length() == 1 and shape[2].get_length() == 1)


def quantize(
    model: Any,
    spec: ModelSpec,
    inputs: Callable[[np.ndarray], np.ndarray],
    *,
    calibration: np.ndarray | None = None,
) -> Any:
    """An int8 copy of an OpenVINO model, calibrated on views of the shipped photos (or on
    `calibration`, uint8 pixels); `inputs` turns pixels into what the model's input takes."""
    import nncf
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        OverflowFix,
    )

    nncf.set_log_level(logging.WARNING)  # not a line per layer kept in fp32
    pixels = calibration
    if pixels is None:
        pixels = image_set(spec.preprocessing, CALIBRATION_IMAGES, seed=CALIBRATION_SEED)
    dataset = nncf.Dataset([inputs(pixels[index : index + 1]) for index in range(len(pixels))])
    overflow_fix = OverflowFix.DISABLE if has_vnni() else OverflowFix.ENABLE
    return nncf.quantize(
        model,
        dataset,
        subset_size=len(pixels),
        ignored_scope=nncf.IgnoredScope(names=kept_in_fp32(model)),
        advanced_parameters=AdvancedQuantizationParameters(overflow_fix=overflow_fix),
    )
