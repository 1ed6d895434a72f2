"""The one builder: plans and a model's sources become a backend, checked where they can be.

Whatever a model comes from (a PyTorch network loaded now, a cache entry's graph file, a
user's ONNX file), `build` tries its plans in order and returns the first backend that
builds and, when the PyTorch network is at hand, gives PyTorch's answers: probabilities
within EXPORT_TOLERANCE and the same top-1 in fp32, within REDUCED_PRECISION_TOLERANCE in
bf16 and fp16. A failed plan is logged and the next one tried; when none builds, the error
says why each failed.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recognizer.engine.backends import Backend
from recognizer.engine.backends.plan import NetworkKind, Plan
from recognizer.errors import BackendError
from recognizer.models.spec import LoadedModel, ModelSpec, OnnxGraph

logger = logging.getLogger(__name__)

# Largest difference in any class probability tolerated between a backend and PyTorch:
# in float32, and in bfloat16 or float16 (whose short mantissas move probabilities by a
# few 0.01).
EXPORT_TOLERANCE = 1e-4
REDUCED_PRECISION_TOLERANCE = 0.05

Graph = Path | OnnxGraph
"""An ONNX graph, or OpenVINO's IR, as a file or (ONNX only) in memory."""


@dataclass(frozen=True, kw_only=True)
class Sources:
    """What a model's backends can be built from.

    `network` is the PyTorch module (or TorchScript) when one is loaded: what the torch
    runtime runs, and what every other runtime's answers are checked against. `graph` is
    the model as a graph, or a function that exports it when a plan first needs it;
    `compiled_cache` is where OpenVINO keeps what it compiles from a graph file.
    """

    network: Any = None
    graph: Graph | Callable[[], Graph] | None = None
    compiled_cache: Path | None = None

    @classmethod
    def of(cls, model: LoadedModel) -> Sources:
        """A loaded model's sources: its ONNX graph as it is, or its network, which graph
        runtimes get exported (once, whichever of them takes it)."""
        if isinstance(model.network, OnnxGraph):
            return cls(graph=model.network)

        @functools.cache
        def export() -> Graph:
            from recognizer.engine.backends.graphs import export_to_onnx

            return export_to_onnx(model)

        return cls(network=model.network, graph=export)


def network_kind(model: LoadedModel) -> NetworkKind:
    """What kind of network a loaded model is, as plan.auto_runtimes needs to know."""
    if isinstance(model.network, OnnxGraph):
        return "onnx"
    import torch

    return "torchscript" if isinstance(model.network, torch.jit.ScriptModule) else "pytorch"


def build(plans: Sequence[Plan], spec: ModelSpec, sources: Sources) -> tuple[Plan, Backend]:
    """The first plan whose backend builds (and runs as PyTorch does, where that can be
    checked), with that backend."""
    failures: list[str] = []
    for index, plan in enumerate(plans):
        try:
            backend = _build(plan, spec, sources)
            if sources.network is not None and plan.runtime != "torch":
                from recognizer.engine.backends.graphs import check_against_torch

                exact = plan.precision == "fp32"
                check_against_torch(
                    backend,
                    LoadedModel(spec, sources.network),
                    name=plan.runtime,
                    tolerance=EXPORT_TOLERANCE if exact else REDUCED_PRECISION_TOLERANCE,
                    same_top1=exact,
                )
            return plan, backend
        except BackendError as error:
            failures.append(str(error))
            if index + 1 < len(plans):
                logger.warning("%s; trying %s next", error, plans[index + 1].runtime)
    raise BackendError("; ".join(failures))


def _build(plan: Plan, spec: ModelSpec, sources: Sources) -> Backend:
    refusal = _refusal(plan, spec)
    if refusal:
        raise BackendError(refusal)
    if plan.runtime == "torch":
        if sources.network is None:
            raise BackendError(f"{spec.name} is an ONNX model; it runs on onnxruntime or openvino")
        return _torch(plan, LoadedModel(spec, sources.network))
    graph = sources.graph() if callable(sources.graph) else sources.graph
    if graph is None:
        raise BackendError(f"{spec.name} has no graph for {plan.runtime} to run")
    if plan.runtime == "openvino":
        from recognizer.engine.backends.openvino_backend import OpenVinoBackend

        return OpenVinoBackend(graph, spec, plan, compiled_cache=sources.compiled_cache)
    from recognizer.engine.backends.onnx_backend import OnnxRuntimeBackend

    return OnnxRuntimeBackend(graph, spec, plan)


def _refusal(plan: Plan, spec: ModelSpec) -> str | None:
    """Why a runtime cannot run a model on this plan's device in its precision, or None."""
    on_cpu = plan.device == "cpu"
    runs = {
        "openvino": ("fp32", "bf16", "int8") if on_cpu else (),
        "onnxruntime": ("fp32",),
        "torch": ("fp32",) if on_cpu else ("fp32", "fp16"),
    }[plan.runtime]
    if not runs:
        return f"OpenVINO runs {spec.name} on the CPU only, not on {plan.device}"
    if plan.precision not in runs:
        return (
            f"{plan.runtime} runs {spec.name} in {', '.join(runs)} on {plan.device},"
            f" not {plan.precision}"
        )
    return None


def _torch(plan: Plan, model: LoadedModel) -> Backend:
    import torch

    from recognizer.engine.backends.torch_backend import TorchBackend

    device = torch.device(plan.device)
    if device.type == "cpu":
        torch.set_num_threads(plan.threads_per_worker)
    try:
        return TorchBackend(model, device=device, half=plan.precision == "fp16")
    except torch.OutOfMemoryError as error:
        raise BackendError(
            f"{model.spec.name} does not fit in the memory of {device}"
            f" ({str(error).splitlines()[0]}): serve it on another device, or fewer models"
            " beside it"
        ) from error
