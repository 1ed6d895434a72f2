"""Plans: what the settings and a model's kind make of a backend, before anything is built."""

from __future__ import annotations

import pytest

from recognizer.config.schema import EngineSettings
from recognizer.engine import sizing
from recognizer.engine.backends.plan import Plan, plans


def runtimes(settings: EngineSettings, device: str, network: str) -> list[str]:
    return [plan.runtime for plan in plans(settings, device, network)]  # type: ignore[arg-type]


def test_auto_tries_the_runtimes_fastest_first_for_each_kind_of_model() -> None:
    auto = EngineSettings()
    assert runtimes(auto, "cpu", "pytorch") == ["openvino", "onnxruntime", "torch"]
    assert runtimes(auto, "cpu", "onnx") == ["openvino", "onnxruntime"]
    assert runtimes(auto, "cpu", "torchscript") == ["torch"]
    assert runtimes(auto, "cuda:0", "pytorch") == ["torch"]
    assert runtimes(auto, "cuda:0", "onnx") == ["onnxruntime"]
    assert runtimes(EngineSettings(backend="onnxruntime"), "cpu", "pytorch") == ["onnxruntime"]


def test_plans_resolve_precision_per_device_and_take_every_core() -> None:
    (cpu, *_) = plans(EngineSettings(), "cpu", "pytorch")
    assert (cpu.precision, cpu.workers, cpu.threads) == ("fp32", None, sizing.cpus())
    (cuda,) = plans(EngineSettings(), "cuda:0", "pytorch")
    assert cuda.precision == "fp16"
    (int8, *_) = plans(EngineSettings(precision="int8"), "cpu", "onnx")
    assert int8.precision == "int8"


@pytest.mark.parametrize(
    ("workers", "threads", "device", "per_worker"),
    [(None, 8, "cpu", 1), (2, 8, "cpu", 4), (3, 8, "cpu", 2), (None, 8, "cuda:0", 4)],
)
def test_threads_are_shared_by_the_threads_calling_a_runtime(
    workers: int | None, threads: int, device: str, per_worker: int
) -> None:
    plan = Plan(
        device=device, runtime="onnxruntime", precision="fp32", workers=workers, threads=threads
    )
    if workers is None and device == "cpu":
        per_worker = max(1, threads // sizing.cpus())
    assert plan.threads_per_worker == per_worker
