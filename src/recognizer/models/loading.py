"""Load the models a deployment names, failing fast with a message that says what to fix.

The format of a model is told from its files unless the config (or the file's sidecar)
names it:

    a built-in model's name                          builtin
    a directory with pytorch_model.pt and
      meta_info.txt or label_mapping.txt             modelscope
    a .onnx file                                     onnx
    a zip archive with TorchScript code in it        refused: TorchScript is code, run
                                                     when loaded, so it loads only when
                                                     format=torchscript names it (or with
                                                     allow_code, --allow-code-models)
    any other .pth, .pt, .bin or .safetensors file   state_dict (needs an architecture)

A hub id (modelscope:OWNER/NAME, hf-hub:OWNER/NAME) is first resolved to the files in its
hub's cache, and the config to theirs (hubs.py); everything below then applies to them.

Checkpoints are read with torch.load(weights_only=True) or safetensors, which load
tensors and never run code. A pinned sha256 is checked before any of it.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from recognizer.config.models import ModelConfig
from recognizer.errors import ConfigError, ModelLoadError
from recognizer.models import efficientnet_lite0, modelscope
from recognizer.models.hubs import resolve_hub
from recognizer.models.integrity import check_sha256
from recognizer.models.label_files import discover_label_files, read_labels
from recognizer.models.labels import Labels
from recognizer.models.preprocessing import Preprocessing
from recognizer.models.spec import (
    LoadedModel,
    ModelSpec,
    configured_preprocessing,
    configured_spec,
)
from recognizer.models.state_dict import SUFFIXES
from recognizer.models.torchscript import is_torchscript

logger = logging.getLogger(__name__)

BUILTIN_MODELS: dict[str, Callable[[], LoadedModel]] = {
    efficientnet_lite0.NAME: efficientnet_lite0.load_efficientnet_lite0,
}


def resolve_source(config: ModelConfig, *, allow_code: bool = False) -> tuple[ModelConfig, str]:
    """The config with its hub's or sidecar's keys, and the format of its files, whose
    pinned sha256 (if any) has been checked; `allow_code` lets detection pick TorchScript,
    which is code."""
    config = resolve_hub(config)
    builtin = config.format == "builtin" or (
        config.format == "auto" and config.path in BUILTIN_MODELS
    )
    if not builtin:
        if config.location.exists():
            config = config.with_sidecar()  # which may name the format
        elif config.format != "auto":
            raise ModelLoadError(f"model {config.name!r}: {config.location} does not exist")
    source_format = (
        detect_format(config, allow_code=allow_code) if config.format == "auto" else config.format
    )
    if source_format == "torchscript" and config.format == "auto":
        logger.warning("loading %s as TorchScript, which is code: --allow-code-models", config.path)
    if config.sha256 is not None:
        check_sha256(_pinned_file(config, source_format), config.sha256, model=config.name)
    return config, source_format


def load_model(config: ModelConfig, *, allow_code: bool = False) -> LoadedModel:
    """Load the model a config names, in the format given or detected (resolve_source)."""
    import torch

    config, source_format = resolve_source(config, allow_code=allow_code)
    loader = LOADERS[source_format]
    try:
        return loader(config)
    except (MemoryError, torch.OutOfMemoryError) as error:
        raise _out_of_memory(config, error) from error
    except RuntimeError as error:
        if "can't allocate memory" not in str(error):  # PyTorch's CPU allocator
            raise
        raise _out_of_memory(config, error) from error


def model_file(config: ModelConfig, source_format: str) -> Path:
    """The file holding a model's weights: what its cache entries are keyed by."""
    if source_format == "builtin":
        return efficientnet_lite0.weights_file()
    if source_format == "modelscope":
        return config.location / modelscope.CHECKPOINT
    return config.location


def model_labels(
    config: ModelConfig, source_format: str, *, num_classes: int, architecture: str
) -> Labels:
    """The labels a model of this format is served with: the config's, or the files it has."""
    if source_format == "builtin":
        if not config.labels:
            return efficientnet_lite0.imagenet_labels()
        return read_labels(config.labels, num_classes=num_classes, model=config.path)
    if source_format == "modelscope":
        return modelscope.read_modelscope_labels(config, num_classes, architecture)
    path = config.location
    shown = (
        path.name if source_format in ("torchscript", "onnx") else f"{path.name} ({architecture})"
    )
    return read_labels(
        config.labels or discover_label_files(path.parent), num_classes=num_classes, model=shown
    )


def describe_model(
    config: ModelConfig, source_format: str, description: Mapping[str, Any]
) -> ModelSpec:
    """The spec of a model prepared before (a cache entry's description), without loading it.

    The labels are read again, so a changed label file is served at once.
    """
    num_classes = int(description["num_classes"])
    architecture = str(description["architecture"])
    preprocessing = dict(description["preprocessing"])
    return ModelSpec(
        name=config.name,
        architecture=architecture,
        source_format=source_format,
        labels=model_labels(
            config, source_format, num_classes=num_classes, architecture=architecture
        ),
        preprocessing=Preprocessing(
            **{
                **preprocessing,
                "mean": tuple(preprocessing["mean"]),
                "std": tuple(preprocessing["std"]),
            }
        ),
        activation=description["activation"],
        max_batch_size=description["max_batch_size"],
    )


def detect_format(config: ModelConfig, *, allow_code: bool = False) -> str:
    """The format of a model's files, from their names and content; TorchScript only with
    `allow_code`."""
    if config.path in BUILTIN_MODELS:
        return "builtin"
    if config.hub_id:
        return resolve_hub(config).format  # the hub's format: never "auto"
    path = config.location
    if not path.exists():
        raise ModelLoadError(
            f"unknown model {config.path!r}: no such file or directory, and not a built-in"
            f" model (built-in models: {', '.join(BUILTIN_MODELS)})"
        )
    if path.is_dir():
        if modelscope.is_modelscope_directory(path):
            return "modelscope"
        raise ModelLoadError(
            f"{path} is a directory but not a ModelScope model, which has pytorch_model.pt"
            " and meta_info.txt or label_mapping.txt; to serve a file, name the file"
        )
    if path.suffix == ".onnx":
        return "onnx"
    if is_torchscript(path):
        if allow_code:
            return "torchscript"
        raise ModelLoadError(
            f"{path} is TorchScript: code, which runs when it is loaded, so it is loaded only"
            f" when its format is named: set format=torchscript (in --model, its [[models]]"
            f" table, or a sidecar {path.with_suffix('.toml').name} beside it), or start the"
            " server with --allow-code-models"
        )
    if path.suffix in SUFFIXES:
        return "state_dict"
    raise ModelLoadError(
        f"cannot tell the format of {path}: serve a ModelScope directory, a .onnx file, a"
        f" TorchScript file, or a state dict ({', '.join(SUFFIXES)}) with its architecture;"
        " or set format="
    )


def _pinned_file(config: ModelConfig, source_format: str) -> Path:
    """The file a sha256= key pins: the model's file, or a ModelScope directory's weights."""
    if source_format == "builtin":
        raise ConfigError(
            f"model {config.name!r}: sha256 pins a model file, and {config.path} is built in"
            " (pip checked its package when it was installed)"
        )
    return model_file(config, source_format)


def _load_builtin(config: ModelConfig) -> LoadedModel:
    """A built-in model, as configured: its name, labels and preprocessing may be changed."""
    if config.path not in BUILTIN_MODELS:
        raise ModelLoadError(
            f"{config.path!r} is not a built-in model; built-in models: {', '.join(BUILTIN_MODELS)}"
        )
    model = BUILTIN_MODELS[config.path]()
    spec = model.spec
    labels = model_labels(
        config, "builtin", num_classes=spec.num_classes, architecture=spec.architecture
    )
    configured = configured_spec(
        config,
        architecture=spec.architecture,
        source_format="builtin",
        labels=labels,
        preprocessing=configured_preprocessing(config, spec.preprocessing),
    )
    return dataclasses.replace(model, spec=configured)


def _out_of_memory(config: ModelConfig, error: BaseException) -> ModelLoadError:
    return ModelLoadError(
        f"model {config.name!r} does not fit in memory while loading {config.path}"
        f" ({type(error).__name__}): free memory, or serve fewer or smaller models"
    )


def _imported(where: str) -> Callable[[ModelConfig], LoadedModel]:
    """A loader imported when first called: loaders need PyTorch or ONNX Runtime, which a
    model served from the cache never imports."""

    def load(config: ModelConfig) -> LoadedModel:
        module, name = where.split(":")
        loader: Callable[[ModelConfig], LoadedModel] = getattr(
            importlib.import_module(module), name
        )
        return loader(config)

    return load


LOADERS: dict[str, Callable[[ModelConfig], LoadedModel]] = {
    "builtin": _load_builtin,
    "modelscope": _imported("recognizer.models.modelscope:load_modelscope"),
    "torchscript": _imported("recognizer.models.torchscript:load_torchscript"),
    "state_dict": _imported("recognizer.models.state_dict:load_state_dict_model"),
    "onnx": _imported("recognizer.models.onnx_file:load_onnx"),
}
