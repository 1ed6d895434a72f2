"""A configured model on the backend that serves it: prepared once, then read from the cache.

    config ─► its files' digest and the settings ─► key ─► cached? ─► spec and backend
                                                            │ no         (no PyTorch)
                                                            ▼
      load (PyTorch) ─► export to ONNX ─► check against PyTorch ─► [int8: quantise with
      NNCF ─► measure its fidelity to fp32] [auto on a bf16 CPU: measure bf16's fidelity
      and speed] ─► a new cache entry

Models on the CPU's graph backends go through the cache (store.py); models on PyTorch
(CUDA, TorchScript, a network that will not export) and ONNX files in fp32, which need
no preparation, are loaded as they are. Every backend comes from the settings' plans
(plan.py) through the one builder (builder.py). An int8 model serves only if it passes the
fidelity gate (fidelity.py), measured once when it is made and judged at every start; if
it does not, the server refuses to start, or serves that model in fp32 when
--int8-fallback says so.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from recognizer.config.models import ModelConfig
from recognizer.config.schema import EngineSettings
from recognizer.engine.backends import Backend
from recognizer.engine.backends.builder import Sources, build, network_kind
from recognizer.engine.backends.plan import NetworkKind, Plan, plans
from recognizer.engine.backends.store import Entry, ModelStore, cache_key, versions
from recognizer.errors import BackendError, QuantizationError
from recognizer.logs import LogFormat
from recognizer.models.integrity import file_sha256
from recognizer.models.loading import describe_model, load_model, model_file, resolve_source
from recognizer.models.spec import LoadedModel, ModelSpec, OnnxGraph

logger = logging.getLogger(__name__)

GRAPH = "model.onnx"
INT8_GRAPH = "int8.xml"
COMPILED = "openvino"  # OpenVINO's compiled models, for the next start
BF16_MIN_SPEEDUP = 1.1  # "auto" takes bf16 only when clearly faster (a start-up measurement)
THROUGHPUT_SECONDS = 1.0


def load_backend(
    config: ModelConfig, settings: EngineSettings, *, device: str, allow_code: bool = False
) -> tuple[ModelSpec, Backend]:
    """The model a config names, on its backend, from the cache when it is there;
    `allow_code` as in models.loading.resolve_source."""
    config, source_format = resolve_source(config, allow_code=allow_code)
    candidates = plans(settings, device, _network_kind(source_format))
    if candidates[0].precision == "int8":
        refusal = _int8_refusal(source_format, device, settings)
        if refusal:
            if settings.int8_fallback != "fp32":
                raise BackendError(f"{config.name}: {refusal}")
            logger.warning(
                "%s: %s; serving it in fp32 (--int8-fallback fp32)", config.name, refusal
            )
            fp32 = settings.model_copy(update={"precision": "fp32"})
            return load_backend(config, fp32, device=device, allow_code=allow_code)
    if not _cacheable(source_format, settings, device):
        model = load_model(config, allow_code=allow_code)
        _, backend = build(
            plans(settings, device, network_kind(model)), model.spec, Sources.of(model)
        )
        return model.spec, backend
    key = _key(config, source_format, settings)
    built: dict[str, Any] = {}  # backends a cold start built, by precision: not built twice
    with _store(settings.model_cache_dir) as store:
        entry = store.get(key)
        if entry is not None:
            logger.info("%s: prepared model read from the cache (%s)", config.name, entry.folder)
        else:
            loaded = load_model(config, allow_code=allow_code)
            try:
                entry = store.put(
                    key, lambda folder: _prepare(folder, loaded, source_format, settings, built)
                )
            except _NotExportable as error:  # PyTorch serves it, uncached, as before
                logger.warning("%s; serving it on PyTorch", error)
                torch_plan = dataclasses.replace(candidates[0], runtime="torch")
                return loaded.spec, build([torch_plan], loaded.spec, Sources.of(loaded))[1]
            if settings.model_cache_dir is not None:
                logger.info("%s: prepared model cached in %s", config.name, entry.folder)
        spec = describe_model(config, source_format, entry.description)
        backend = _serve(entry, spec, candidates[0], settings, built)
    return spec, backend


@dataclasses.dataclass(frozen=True, kw_only=True)
class Preparation:
    """Models to prepare in another process (cli/prepare.py), with everything that decides
    what their cache entries hold; pickled, so the configs travel whole (their base folders
    and label files included)."""

    models: Sequence[ModelConfig]
    engine: EngineSettings
    device: str
    allow_code: bool
    log_level: str
    log_format: LogFormat = "text"


def needs_preparation(
    config: ModelConfig, settings: EngineSettings, *, device: str, allow_code: bool = False
) -> bool:
    """Whether load_backend would make a new cache entry for this model (importing
    PyTorch to export it), rather than read one or load the model as it is."""
    if settings.model_cache_dir is None:
        return False
    config, source_format = resolve_source(config, allow_code=allow_code)
    if not _cacheable(source_format, settings, device):
        return False
    key = _key(config, source_format, settings)
    return ModelStore(settings.model_cache_dir).get(key) is None


def cached_graph(config: ModelConfig, settings: EngineSettings) -> Path | None:
    """The graph file a CPU start with these settings serves from, if it is in the cache."""
    if settings.model_cache_dir is None:
        return None
    config, source_format = resolve_source(config)
    entry = ModelStore(settings.model_cache_dir).get(_key(config, source_format, settings))
    if entry is None:
        return None
    if settings.precision == "int8":
        return entry.path(str(entry.description["int8"]["graph"]))
    return entry.path(str(entry.description["graph"]))


def _network_kind(source_format: str) -> NetworkKind:
    kinds: dict[str, NetworkKind] = {"torchscript": "torchscript", "onnx": "onnx"}
    return kinds.get(source_format, "pytorch")


def _cacheable(source_format: str, settings: EngineSettings, device: str) -> bool:
    """Served from a prepared graph: the CPU's graph backends, for any model but
    TorchScript, and an ONNX file only when it is quantised (else it is served as it is)."""
    return (
        device == "cpu"
        and settings.backend in ("auto", "openvino", "onnxruntime")
        and source_format != "torchscript"
        and (source_format != "onnx" or settings.precision == "int8")
    )


def _key(config: ModelConfig, source_format: str, settings: EngineSettings) -> str:
    """Everything that decides what preparing this model makes, as a cache key ("auto"
    precision is its own key: its entry records the precision it chose)."""
    return cache_key(
        {
            "model": file_sha256(model_file(config, source_format)),
            "source_format": source_format,
            "config": config.model_dump(
                mode="json", exclude={"name", "labels", "base_dir", "path"}
            ),
            "backend": settings.backend,
            "precision": settings.precision,
            "versions": versions("openvino", "onnxruntime", "torch", "timm", "nncf"),
            "int8": _int8_key() if settings.precision == "int8" else None,
        }
    )


class _NotExportable(Exception):
    """The network cannot become a graph; PyTorch serves it."""


def _int8_refusal(source_format: str, device: str, settings: EngineSettings) -> str | None:
    """Why int8 cannot serve this model here, or None."""
    if device != "cpu":
        return f"int8 runs on the CPU (OpenVINO), not on {device}"
    if settings.backend not in ("auto", "openvino"):
        return f"int8 runs on OpenVINO, not {settings.backend}"
    if source_format == "torchscript":
        return "int8 needs a model OpenVINO can read, and TorchScript runs on PyTorch only"
    return None


def _int8_key() -> dict[str, Any]:
    from recognizer.engine.backends import calibration, fidelity, int8

    return {
        "recipe": int8.RECIPE,
        "vnni": int8.has_vnni(),
        "photos": calibration.photo_digest(),
        "calibration_images": int8.CALIBRATION_IMAGES,
        "held_out_images": fidelity.HELD_OUT_IMAGES,
    }


@contextmanager
def _store(root: Path | None) -> Iterator[ModelStore]:
    """The cache at `root`; with the cache off, or where it cannot be written (a read-only
    home, say), new entries go to a folder that lasts for this load only."""
    with tempfile.TemporaryDirectory(prefix="recognizer-models-") as scratch:
        yield ModelStore(root or Path(scratch), fallback=Path(scratch))


def _prepare(
    folder: Path,
    model: LoadedModel,
    source_format: str,
    settings: EngineSettings,
    built: dict[str, Any],
) -> Mapping[str, Any]:
    """Export (and quantise) the model into `folder`, check it, and describe it."""
    spec = model.spec
    candidates = plans(settings, "cpu", _network_kind(source_format))
    precision = candidates[0].precision
    graph = model.network if isinstance(model.network, OnnxGraph) else None
    if graph is None:
        from recognizer.engine.backends.graphs import export_to_onnx

        try:
            graph = export_to_onnx(model)
        except BackendError as error:
            if precision != "fp32" or settings.backend != "auto":
                raise
            raise _NotExportable(str(error)) from error
    (folder / GRAPH).write_bytes(graph.data)
    if precision == "int8":  # quantised from OpenVINO's fp32
        graph_plans = [dataclasses.replace(candidates[0], runtime="openvino", precision="fp32")]
    else:
        graph_plans = [plan for plan in candidates if plan.runtime != "torch"]
    network = None if isinstance(model.network, OnnxGraph) else model.network
    try:
        plan, backend = build(graph_plans, spec, Sources(network=network, graph=folder / GRAPH))
    except BackendError as error:  # no graph backend runs it as PyTorch does
        if precision != "fp32" or settings.backend != "auto" or network is None:
            raise
        raise _NotExportable(str(error)) from error
    built[plan.precision] = backend
    description: dict[str, Any] = {
        "source_format": source_format,
        "architecture": spec.architecture,
        "num_classes": spec.num_classes,
        "preprocessing": dataclasses.asdict(spec.preprocessing),
        "activation": spec.activation,
        "max_batch_size": spec.max_batch_size,
        "backend": plan.runtime,
        "graph": GRAPH,
        "precision": plan.precision,
    }
    if precision == "int8":
        description["int8"] = _quantize(folder, spec, plan, built)
    elif settings.precision == "auto" and plan.runtime == "openvino":
        description.update(_fastest_precision(folder, spec, plan, built))
    return description


def _quantize(folder: Path, spec: ModelSpec, fp32: Plan, built: dict[str, Any]) -> dict[str, Any]:
    """Quantise the fp32 model, save it, and measure its fidelity to fp32."""
    import openvino as ov

    from recognizer.engine.backends import fidelity, int8
    from recognizer.engine.backends.arrays import GraphInputs

    original = ov.Core().read_model(folder / GRAPH)
    inputs = GraphInputs(spec, takes_pixels=original.input(0).get_element_type() == ov.Type.u8)
    logger.info(
        "%s: quantising to int8 on %d views of the shipped photos (NNCF)",
        spec.name,
        int8.CALIBRATION_IMAGES,
    )
    quantized = int8.quantize(original, spec, inputs)
    ov.save_model(quantized, folder / INT8_GRAPH, compress_to_fp16=False)
    del original, quantized
    int8_plan = dataclasses.replace(fp32, precision="int8")
    built["int8"] = build([int8_plan], spec, Sources(graph=folder / INT8_GRAPH))[1]
    measured = fidelity.measure(built["fp32"].logits, built["int8"].logits, spec)
    logger.info(
        "%s: int8 against fp32 on %d held-out images: %s",
        spec.name,
        measured["held_out_images"],
        fidelity.explain(fidelity.check(measured, min_agreement=None)),
    )
    return {"graph": INT8_GRAPH, **measured}


def _fastest_precision(
    folder: Path, spec: ModelSpec, fp32: Plan, built: dict[str, Any]
) -> dict[str, Any]:
    """For "auto" on OpenVINO: bf16 where the CPU runs it natively, passes the fidelity gate
    and is clearly faster than fp32; else fp32. The measurement is kept with the choice."""
    import openvino as ov

    from recognizer.engine.backends import fidelity
    from recognizer.engine.backends.throughput import measure_throughput

    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        return {"precision": "fp32", "precision_choice": "this CPU has no native bfloat16"}
    bf16_plan = dataclasses.replace(fp32, precision="bf16")
    built["bf16"] = build([bf16_plan], spec, Sources(graph=folder / GRAPH))[1]
    measured = fidelity.measure(built["fp32"].logits, built["bf16"].logits, spec)
    rates = {
        precision: measure_throughput(
            built[precision], spec.preprocessing.crop, 1, workers=2, seconds=THROUGHPUT_SECONDS
        )
        for precision in ("fp32", "bf16")
    }
    faithful = fidelity.check(measured, min_agreement=None).passed
    chosen = "bf16" if faithful and rates["bf16"] >= BF16_MIN_SPEEDUP * rates["fp32"] else "fp32"
    why = (
        f"bf16 {rates['bf16']:.0f} images/s against fp32's {rates['fp32']:.0f};"
        f" {'within' if faithful else 'outside'} the fidelity gate"
    )
    logger.info("%s: auto precision is %s (%s)", spec.name, chosen, why)
    return {"precision": chosen, "precision_choice": why, "bf16": measured}


def _serve(
    entry: Entry,
    spec: ModelSpec,
    plan: Plan,
    settings: EngineSettings,
    built: dict[str, Any],
) -> Backend:
    """The backend an entry describes, after the int8 gate."""
    from recognizer.engine.backends import fidelity

    description = entry.description
    fp32 = dataclasses.replace(
        plan, runtime=description["backend"], precision=description["precision"]
    )
    if plan.precision != "int8":
        return built.get(fp32.precision) or _from_entry(entry, spec, fp32, description["graph"])
    check = fidelity.check(description["int8"], min_agreement=settings.int8_min_agreement)
    if check.passed:
        backend: Backend = built.get("int8") or _from_entry(
            entry, spec, dataclasses.replace(fp32, precision="int8"), INT8_GRAPH
        )
        backend.quantization_check = check
        return backend
    refusal = f"{spec.name} in int8 falls short of the fidelity gate: {fidelity.explain(check)}"
    if settings.int8_fallback != "fp32":
        raise QuantizationError(
            f"{refusal}. Serve it in fp32, set --int8-min-agreement, or set --int8-fallback fp32"
        )
    logger.warning("%s; serving it in fp32 (--int8-fallback fp32)", refusal)
    fallback = built.get("fp32") or _from_entry(entry, spec, fp32, description["graph"])
    fallback.quantization_check = check  # ListModels says why it is not int8
    return fallback


def _from_entry(entry: Entry, spec: ModelSpec, plan: Plan, graph: str) -> Backend:
    sources = Sources(graph=entry.path(graph), compiled_cache=entry.path(COMPILED))
    return build([plan], spec, sources)[1]
