"""Load the models a deployment names, failing fast with a message that says what to fix.

The format of a model is told from its files unless the config names it:

    a built-in model's name                          builtin
    a directory with pytorch_model.pt and
      meta_info.txt or label_mapping.txt             modelscope
    a .onnx file                                     onnx
    a zip archive with TorchScript code in it        torchscript
    any other .pth, .pt, .bin or .safetensors file   state_dict (needs an architecture)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from recognizer.config.models import ModelConfig
from recognizer.errors import ModelLoadError
from recognizer.models.efficientnet_lite0 import NAME as EFFICIENTNET_LITE0
from recognizer.models.efficientnet_lite0 import load_efficientnet_lite0
from recognizer.models.label_files import read_labels
from recognizer.models.modelscope import is_modelscope_directory, load_modelscope
from recognizer.models.onnx_file import load_onnx
from recognizer.models.spec import LoadedModel
from recognizer.models.state_dict import SUFFIXES, load_state_dict_model
from recognizer.models.torchscript import is_torchscript, load_torchscript

BUILTIN_MODELS: dict[str, Callable[[], LoadedModel]] = {
    EFFICIENTNET_LITE0: load_efficientnet_lite0,
}


def load_model(config: ModelConfig) -> LoadedModel:
    """Load the model a config names, in the format given or detected."""
    source_format = detect_format(config) if config.format == "auto" else config.format
    loader = LOADERS[source_format]
    if source_format != "builtin":
        if not config.location.exists():
            raise ModelLoadError(f"model {config.name!r}: {config.location} does not exist")
        config = config.with_sidecar()
    try:
        return loader(config)
    except (MemoryError, torch.OutOfMemoryError) as error:
        raise _out_of_memory(config, error) from error
    except RuntimeError as error:
        if "can't allocate memory" not in str(error):  # PyTorch's CPU allocator
            raise
        raise _out_of_memory(config, error) from error


def detect_format(config: ModelConfig) -> str:
    """The format of a model's files, from their names and content."""
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
        return "torchscript"
    if path.suffix in SUFFIXES:
        return "state_dict"
    raise ModelLoadError(
        f"cannot tell the format of {path}: serve a ModelScope directory, a .onnx file, a"
        f" TorchScript file, or a state dict ({', '.join(SUFFIXES)}) with its architecture;"
        " or set format="
    )


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
