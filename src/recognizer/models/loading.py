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

Checkpoints are read with torch.load(weights_only=True) or safetensors, which load
tensors and never run code. A pinned sha256 is checked before any of it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

import torch

from recognizer.config.models import ModelConfig
from recognizer.errors import ConfigError, ModelLoadError
from recognizer.models.efficientnet_lite0 import NAME as EFFICIENTNET_LITE0
from recognizer.models.efficientnet_lite0 import load_efficientnet_lite0
from recognizer.models.integrity import check_sha256
from recognizer.models.label_files import read_labels
from recognizer.models.modelscope import CHECKPOINT, is_modelscope_directory, load_modelscope
from recognizer.models.onnx_file import load_onnx
from recognizer.models.spec import LoadedModel
from recognizer.models.state_dict import SUFFIXES, load_state_dict_model
from recognizer.models.torchscript import is_torchscript, load_torchscript

logger = logging.getLogger(__name__)

BUILTIN_MODELS: dict[str, Callable[[], LoadedModel]] = {
    EFFICIENTNET_LITE0: load_efficientnet_lite0,
}


def load_model(config: ModelConfig, *, allow_code: bool = False) -> LoadedModel:
    """Load the model a config names, in the format given or detected; `allow_code` lets
    detection pick TorchScript, which is code."""
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
    loader = LOADERS[source_format]
    try:
        return loader(config)
    except (MemoryError, torch.OutOfMemoryError) as error:
        raise _out_of_memory(config, error) from error
    except RuntimeError as error:
        if "can't allocate memory" not in str(error):  # PyTorch's CPU allocator
            raise
        raise _out_of_memory(config, error) from error


def detect_format(config: ModelConfig, *, allow_code: bool = False) -> str:
    """The format of a model's files, from their names and content; TorchScript only with
    `allow_code`."""
    if config.path in BUILTIN_MODELS:
        return "builtin"
    path = config.location
    if not path.exists():
        raise ModelLoadError(
            f"unknown model {config.path!r}: no such file or directory, and not a built-in"
            f" model (built-in models: {', '.join(BUILTIN_MODELS)})"
        )
    if path.is_dir():
        if is_modelscope_directory(path):
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
    return config.location / CHECKPOINT if config.location.is_dir() else config.location


def _load_builtin(config: ModelConfig) -> LoadedModel:
    """A built-in model, as configured: its name, labels and preprocessing may be changed."""
    if config.path not in BUILTIN_MODELS:
        raise ModelLoadError(
            f"{config.path!r} is not a built-in model; built-in models: {', '.join(BUILTIN_MODELS)}"
        )
    model = BUILTIN_MODELS[config.path]()
    spec = model.spec
    labels = (
        read_labels(config.labels, num_classes=spec.num_classes, model=config.path)
        if config.labels
        else spec.labels
    )
    configured = config.spec(
        architecture=spec.architecture,
        source_format="builtin",
        labels=labels,
        preprocessing=config.preprocessing_over(spec.preprocessing),
    )
    return dataclasses.replace(model, spec=configured)


def _out_of_memory(config: ModelConfig, error: BaseException) -> ModelLoadError:
    return ModelLoadError(
        f"model {config.name!r} does not fit in memory while loading {config.path}"
        f" ({type(error).__name__}): free memory, or serve fewer or smaller models"
    )


LOADERS: dict[str, Callable[[ModelConfig], LoadedModel]] = {
    "builtin": _load_builtin,
    "modelscope": load_modelscope,
    "torchscript": load_torchscript,
    "state_dict": load_state_dict_model,
    "onnx": load_onnx,
}
