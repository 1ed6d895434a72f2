"""A configured model on the backend that serves it: prepared once, then read from the cache.

    config ─► its files' digest and the settings ─► key ─► cached? ─► spec and backend
                                                            │ no         (no PyTorch)
                                                            ▼
      load (PyTorch) ─► export to ONNX ─► check against PyTorch ─► [int8: quantise with
      NNCF ─► compare with fp32 on held-out images] ─► a new cache entry

Models on the CPU's graph backends go through the cache (store.py); models on PyTorch
(CUDA, TorchScript, a network that will not export) and ONNX files in fp32, which need
no preparation, are loaded as they are. An int8 model serves only if its top-1 agreement
with fp32 reaches --int8-min-agreement, measured once when it is made and compared with
the setting at every start; below it the server refuses to start, or serves that model
in fp32 when --int8-fallback says so.
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
from recognizer.config.schema import EngineSettings, Precision
from recognizer.engine.backends import Backend, create_backend, resolve_precision
from recognizer.engine.backends.store import Entry, ModelStore, cache_key, versions
from recognizer.engine.types import QuantizationCheck
from recognizer.errors import BackendError, QuantizationError
from recognizer.models.integrity import file_sha256
from recognizer.models.loading import describe_model, load_model, model_file, resolve_source
from recognizer.models.spec import LoadedModel, ModelSpec, OnnxGraph

logger = logging.getLogger(__name__)

GRAPH = "model.onnx"
INT8_GRAPH = "int8.xml"
COMPILED = "openvino"  # OpenVINO's compiled models, for the next start
GRAPH_BACKENDS = ("openvino", "onnxruntime")


@dataclasses.dataclass
class _Built:
    """Backends a cold start built while preparing an entry, so they are not built twice."""

    fp32: Any = None
    int8: Any = None


def load_backend(
    config: ModelConfig,
    settings: EngineSettings,
    *,
    device: str,
    workers: int,
    threads_per_worker: int,
    allow_code: bool = False,
) -> tuple[ModelSpec, Backend]:
    """The model a config names, on its backend, from the cache when it is there;
    `allow_code` as in models.loading.resolve_source."""
    config, source_format = resolve_source(config, allow_code=allow_code)
    precision = resolve_precision(settings.precision, device)
    if precision == "int8":
        refusal = _int8_refusal(source_format, device, settings)
        if refusal:
            if settings.int8_fallback != "fp32":
                raise BackendError(f"{config.name}: {refusal}")
            logger.warning(
                "%s: %s; serving it in fp32 (--int8-fallback fp32)", config.name, refusal
            )
            settings = settings.model_copy(update={"precision": "fp32"})
            return load_backend(
                config,
                settings,
                device=device,
                workers=workers,
                threads_per_worker=threads_per_worker,
                allow_code=allow_code,
            )
    if not _cacheable(source_format, settings, device, precision):
        model = load_model(config, allow_code=allow_code)
        backend = create_backend(
            model,
            device=device,
            kind=settings.backend,
            workers=workers,
            threads_per_worker=threads_per_worker,
            precision=precision,
        )
        return model.spec, backend
    key = _key(config, source_format, settings, precision)
    built = _Built()
    with _store(settings.model_cache_dir) as store:
        entry = store.get(key)
        if entry is not None:
            logger.info("%s: prepared model read from the cache (%s)", config.name, entry.folder)
        else:
            loaded = load_model(config, allow_code=allow_code)
            try:
                entry = store.put(
                    key,
                    lambda folder: _prepare(
                        folder,
                        loaded,
                        source_format,
                        settings,
                        precision,
                        workers,
                        threads_per_worker,
                        built,
                    ),
                )
            except _NotExportable as error:  # PyTorch serves it, uncached, as before
                logger.warning("%s; serving it on PyTorch", error)
                return loaded.spec, create_backend(
                    loaded,
                    device=device,
                    kind="torch",
                    workers=workers,
                    threads_per_worker=threads_per_worker,
                    precision=precision,
                )
            if settings.model_cache_dir is not None:
                logger.info("%s: prepared model cached in %s", config.name, entry.folder)
        spec = describe_model(config, source_format, entry.description)
        backend = _serve(entry, spec, settings, precision, workers, threads_per_worker, built)
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
    workers: int
    threads_per_worker: int
    log_level: str


def needs_preparation(
    config: ModelConfig, settings: EngineSettings, *, device: str, allow_code: bool = False
) -> bool:
    """Whether load_backend would make a new cache entry for this model (importing
    PyTorch to export it), rather than read one or load the model as it is."""
    if settings.model_cache_dir is None:
        return False
    config, source_format = resolve_source(config, allow_code=allow_code)
    precision = resolve_precision(settings.precision, device)
    if not _cacheable(source_format, settings, device, precision):
        return False
    key = _key(config, source_format, settings, precision)
    return ModelStore(settings.model_cache_dir).get(key) is None


def _cacheable(
    source_format: str, settings: EngineSettings, device: str, precision: Precision
) -> bool:
    """Served from a prepared graph: the CPU's graph backends, for any model but
    TorchScript, and an ONNX file only when it is quantised (else it is served as it is)."""
    return (
        device == "cpu"
        and settings.backend in ("auto", *GRAPH_BACKENDS)
        and source_format != "torchscript"
        and (source_format != "onnx" or precision == "int8")
    )


def cached_graph(config: ModelConfig, settings: EngineSettings) -> Path | None:
    """The graph file a CPU start with these settings serves from, if it is in the cache."""
    if settings.model_cache_dir is None:
        return None
    config, source_format = resolve_source(config)
    precision = resolve_precision(settings.precision, "cpu")
    entry = ModelStore(settings.model_cache_dir).get(
        _key(config, source_format, settings, precision)
    )
    if entry is None:
        return None
    if precision == "int8":
        return entry.path(str(entry.description["int8"]["graph"]))
    return entry.path(str(entry.description["graph"]))


def _key(
    config: ModelConfig, source_format: str, settings: EngineSettings, precision: Precision
) -> str:
    """Everything that decides what preparing this model makes, as a cache key."""
    return cache_key(
        {
            "model": file_sha256(model_file(config, source_format)),
            "source_format": source_format,
            "config": config.model_dump(
                mode="json", exclude={"name", "labels", "base_dir", "path"}
            ),
            "backend": settings.backend,
            "precision": precision,
            "versions": versions("openvino", "onnxruntime", "torch", "timm", "nncf"),
            "int8": _int8_key() if precision == "int8" else None,
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
    from recognizer.engine.backends import calibration, int8

    return {
        "recipe": int8.RECIPE,
        "photos": calibration.photo_digest(),
        "calibration_images": int8.CALIBRATION_IMAGES,
        "held_out_images": int8.HELD_OUT_IMAGES,
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
    precision: Precision,
    workers: int,
    threads_per_worker: int,
    built: _Built,
) -> Mapping[str, Any]:
    """Export (and quantise) the model into `folder`, check it, and describe it."""
    from recognizer.engine.backends import choose_graph_backend

    spec = model.spec
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
    try:
        kind, built.fp32 = choose_graph_backend(
            model,
            folder / GRAPH,
            kind="openvino" if precision == "int8" else settings.backend,
            workers=workers,
            threads_per_worker=threads_per_worker,
            precision="fp32" if precision == "int8" else precision,
        )
    except BackendError as error:  # no graph backend runs it as PyTorch does
        if precision != "fp32" or settings.backend != "auto" or graph is model.network:
            raise
        raise _NotExportable(str(error)) from error
    description: dict[str, Any] = {
        "source_format": source_format,
        "architecture": spec.architecture,
        "num_classes": spec.num_classes,
        "preprocessing": dataclasses.asdict(spec.preprocessing),
        "activation": spec.activation,
        "max_batch_size": spec.max_batch_size,
        "backend": kind,
        "graph": GRAPH,
    }
    if precision == "int8":
        description["int8"] = _quantize(folder, spec, built, workers, threads_per_worker)
    return description


def _quantize(
    folder: Path, spec: ModelSpec, built: _Built, workers: int, threads_per_worker: int
) -> dict[str, Any]:
    """Quantise the fp32 model, save it, and measure how well it agrees with fp32."""
    import openvino as ov

    from recognizer.engine.backends import int8
    from recognizer.engine.backends.arrays import GraphInputs
    from recognizer.engine.backends.openvino_backend import OpenVinoBackend

    fp32 = ov.Core().read_model(folder / GRAPH)
    inputs = GraphInputs(spec, takes_pixels=fp32.input(0).get_element_type() == ov.Type.u8)
    logger.info(
        "%s: quantising to int8 on %d views of the shipped photos (NNCF)",
        spec.name,
        int8.CALIBRATION_IMAGES,
    )
    ov.save_model(int8.quantize(fp32, spec, inputs), folder / INT8_GRAPH, compress_to_fp16=False)
    del fp32
    built.int8 = OpenVinoBackend(
        folder / INT8_GRAPH,
        spec,
        workers=workers,
        threads_per_worker=threads_per_worker,
        precision="int8",
    )
    agreement = int8.compare(built.fp32.logits, built.int8.logits, spec)
    logger.info(
        "%s: int8 agrees with fp32 on %.1f%% of %d held-out images (mean top-5 probability"
        " difference %.4f)",
        spec.name,
        100 * agreement.top1_agreement,
        agreement.images,
        agreement.mean_top5_difference,
    )
    return {"graph": INT8_GRAPH, **agreement.as_json()}


def _serve(
    entry: Entry,
    spec: ModelSpec,
    settings: EngineSettings,
    precision: Precision,
    workers: int,
    threads_per_worker: int,
    built: _Built,
) -> Backend:
    """The backend an entry describes, after the int8 gate."""
    from recognizer.engine.backends import graph_backend

    description = entry.description
    if precision == "int8":
        measured = description["int8"]
        check = QuantizationCheck(
            top1_agreement=float(measured["top1_agreement"]),
            mean_top5_difference=float(measured["mean_top5_difference"]),
            held_out_images=int(measured["held_out_images"]),
            min_agreement=settings.int8_min_agreement,
        )
        if check.passed:
            backend: Backend = built.int8 or graph_backend(
                "openvino",
                entry.path(str(measured["graph"])),
                spec,
                workers=workers,
                threads_per_worker=threads_per_worker,
                precision="int8",
                compiled_cache=entry.path(COMPILED),
            )
            backend.quantization_check = check
            return backend
        refusal = (
            f"{spec.name} in int8 agrees with fp32 on {check.top1_agreement:.1%} of"
            f" {check.held_out_images} held-out images, under the {check.min_agreement:.1%}"
            f" required (--int8-min-agreement); its mean top-5 probability difference is"
            f" {check.mean_top5_difference:.4f}"
        )
        if settings.int8_fallback != "fp32":
            raise QuantizationError(
                f"{refusal}: serve it in fp32, lower --int8-min-agreement, or set"
                " --int8-fallback fp32"
            )
        logger.warning("%s; serving it in fp32 (--int8-fallback fp32)", refusal)
        fallback = built.fp32 or _fp32(entry, spec, workers, threads_per_worker)
        fallback.quantization_check = check  # ListModels says why it is not int8
        return fallback
    return built.fp32 or _fp32(entry, spec, workers, threads_per_worker, precision)


def _fp32(
    entry: Entry, spec: ModelSpec, workers: int, threads_per_worker: int, precision: str = "fp32"
) -> Backend:
    from recognizer.engine.backends import graph_backend

    return graph_backend(
        str(entry.description["backend"]),
        entry.path(str(entry.description["graph"])),
        spec,
        workers=workers,
        threads_per_worker=threads_per_worker,
        precision=precision,
        compiled_cache=entry.path(COMPILED),
    )
