"""The fidelity gate: does a cheaper model (int8, bf16) change fp32's answers more than
ordinary changes to an image would?

Many views of real photos are ambiguous, and a model's top-1 class on them is not a
stable property of the image: fp32 itself changes its answer on some of them when they
are re-encoded as JPEG, shifted by a pixel, resized with another filter or mirrored
(calibration.BENIGN_CHANGES). That is the floor. A cheaper model passes when, on the
held-out views, it reaches the top-1 agreement and the top-5 containment (fp32's top-1
within its top 5) of the least faithful benign change, each lowered by its 95 % sampling
margin, and moves fp32's top-5 probabilities no more than the benign change that moves
them most. A broken quantisation (calibrated on blank images, say) agrees on a small
fraction of views, far below. BENCHMARKS.md has the figures behind this choice.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from recognizer.engine import sizing
from recognizer.engine.backends.arrays import activate
from recognizer.engine.backends.calibration import HELD_OUT_SEED, benign_sets, image_set
from recognizer.engine.types import Fidelity, QuantizationCheck
from recognizer.models.spec import ModelSpec

HELD_OUT_IMAGES = 300
CHECK_BATCH = 8
Z_95 = 1.96  # the normal quantile of a two-sided 95 % interval

Logits = Callable[[np.ndarray], np.ndarray]


def fidelity(reference: np.ndarray, probabilities: np.ndarray) -> Fidelity:
    """How close `probabilities` come to `reference`'s, row by row (N, classes) each."""
    expected = reference.argmax(1)
    top5 = np.argsort(-probabilities, axis=1)[:, :5]
    reference_top5 = np.argsort(-reference, axis=1)[:, :5]
    difference = np.abs(
        np.take_along_axis(reference, reference_top5, axis=1)
        - np.take_along_axis(probabilities, reference_top5, axis=1)
    )
    return Fidelity(
        top1_agreement=float((probabilities.argmax(1) == expected).mean()),
        top5_containment=float((top5 == expected[:, None]).any(axis=1).mean()),
        mean_top5_difference=float(difference.mean()),
    )


def measure(fp32: Logits, cheaper: Logits, spec: ModelSpec) -> dict[str, Any]:
    """The cheaper model's fidelity to fp32 on the held-out views, and fp32's own under each
    benign change: what prepared.py keeps in the cache entry (JSON), for `check` to judge.
    Each maps a uint8 batch to logits."""
    pixels = image_set(spec.preprocessing, HELD_OUT_IMAGES, seed=HELD_OUT_SEED)
    reference = _probabilities(fp32, pixels, spec)
    changes = {
        change: fidelity(reference, _probabilities(fp32, changed, spec))
        for change, changed in benign_sets(
            spec.preprocessing, HELD_OUT_IMAGES, seed=HELD_OUT_SEED
        ).items()
    }
    return {
        "held_out_images": len(pixels),
        "measured": dataclasses.asdict(fidelity(reference, _probabilities(cheaper, pixels, spec))),
        "benign_changes": {change: dataclasses.asdict(found) for change, found in changes.items()},
    }


def check(measured: dict[str, Any], *, min_agreement: float | None) -> QuantizationCheck:
    """Judge a measurement: against the benign floor, or against `min_agreement` (top-1
    agreement alone) when the operator set one."""
    images = int(measured["held_out_images"])
    found = Fidelity(**measured["measured"])
    if min_agreement is not None:
        required = Fidelity(
            top1_agreement=min_agreement, top5_containment=0.0, mean_top5_difference=1.0
        )
        return QuantizationCheck(
            measured=found, required=required, held_out_images=images, reference_change=""
        )
    changes = {change: Fidelity(**found) for change, found in measured["benign_changes"].items()}
    least = min(changes, key=lambda change: changes[change].top1_agreement)
    required = Fidelity(
        top1_agreement=_lower_bound(changes[least].top1_agreement, images),
        top5_containment=_lower_bound(
            min(found.top5_containment for found in changes.values()), images
        ),
        mean_top5_difference=max(found.mean_top5_difference for found in changes.values()),
    )
    return QuantizationCheck(
        measured=found, required=required, held_out_images=images, reference_change=least
    )


def _lower_bound(share: float, images: int) -> float:
    """The low end of a share's 95 % sampling interval over `images` images."""
    return max(0.0, share - Z_95 * math.sqrt(share * (1 - share) / images))


def _probabilities(logits: Logits, pixels: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Scores for every image, batches run on every core at once (a start-up cost: for a
    large model the gate's 2,100 inferences are most of a cold int8 start)."""
    batches = [pixels[start : start + CHECK_BATCH] for start in range(0, len(pixels), CHECK_BATCH)]
    with ThreadPoolExecutor(sizing.cpus()) as pool:
        found = pool.map(lambda batch: activate(logits(batch), spec.activation), batches)
        return np.concatenate(list(found))


def explain(check: QuantizationCheck) -> str:
    """A check's figures against what they had to reach, for logs and errors."""
    measured, required = check.measured, check.required
    source = (
        f"fp32's own when {check.reference_change}"
        if check.reference_change
        else "--int8-min-agreement"
    )
    parts = [
        f"top-1 agreement {measured.top1_agreement:.1%} (at least"
        f" {required.top1_agreement:.1%}, {source})"
    ]
    if check.reference_change:
        parts += [
            f"fp32's top-1 within its top 5 on {measured.top5_containment:.1%} (at least"
            f" {required.top5_containment:.1%})",
            f"mean top-5 probability difference {measured.mean_top5_difference:.4f} (at most"
            f" {required.mean_top5_difference:.4f})",
        ]
    return "; ".join(parts) + f"; on {check.held_out_images} held-out images"
