"""Threads and batching delays where the settings say "auto": chosen for the device."""

from __future__ import annotations

from recognizer.config.schema import EngineSettings
from recognizer.engine import sizing


def test_unset_settings_follow_the_device() -> None:
    auto = EngineSettings()
    assert sizing.batch_delay_s(auto, "cpu") == 0
    assert sizing.batch_delay_s(auto, "cuda:0") == sizing.GPU_BATCH_DELAY_S
    assert sizing.inference_workers(auto, "cuda:0") == 1
    assert sizing.inference_workers(auto, "cpu") == sizing.cpus()
    assert sizing.preprocess_threads(auto) == sizing.cpus()
    assert sizing.intra_op_threads(auto, "cpu") == 1  # one worker per core, one core each


def test_set_values_are_kept() -> None:
    fixed = EngineSettings(max_batch_delay_ms=5, inference_workers=3, preprocess_threads=7)
    assert sizing.batch_delay_s(fixed, "cpu") == 0.005
    assert sizing.inference_workers(fixed, "cpu") == 3
    assert sizing.preprocess_threads(fixed) == 7
    assert sizing.intra_op_threads(fixed, "cpu") == max(1, sizing.cpus() // 3)


def test_jpegs_are_decoded_on_the_device_on_cuda_or_when_asked() -> None:
    auto = EngineSettings()
    assert sizing.device_decode(auto, "cuda:0")
    assert not sizing.device_decode(auto, "cpu")
    assert sizing.device_decode(EngineSettings(device_decode="on"), "cpu")
    assert not sizing.device_decode(EngineSettings(device_decode="off"), "cuda:0")
