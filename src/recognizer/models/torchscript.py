"""TorchScript models: a network saved whole with torch.jit.save, labels beside it.

The file carries the network's code, so no architecture is needed, but nothing says
how images were prepared for it: that comes from the config or the sidecar TOML file
(ImageNet's 256/224 and mean/std otherwise). The class count is read by running the
model once at start-up, which also proves it takes the configured input size.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from recognizer.config.models import ModelConfig
from recognizer.errors import ModelLoadError
from recognizer.models.label_files import discover_label_files, read_labels
from recognizer.models.preprocessing import Preprocessing
from recognizer.models.spec import LoadedModel, configured_preprocessing, configured_spec

if TYPE_CHECKING:  # is_torchscript tells the format without PyTorch
    import torch


def is_torchscript(path: Path) -> bool:
    """A zip archive with TorchScript code in it (torch.save's archives have none)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def load_torchscript(config: ModelConfig) -> LoadedModel:
    import torch

    path = config.location
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # TorchScript is deprecated, not gone
            network = torch.jit.load(path, map_location="cpu")  # type: ignore[no-untyped-call]
    except (RuntimeError, ValueError, OSError) as error:
        raise ModelLoadError(f"cannot load TorchScript model {path}: {error}") from error
    network.eval()
    preprocessing = configured_preprocessing(config, Preprocessing())
    num_classes = count_classes(network, preprocessing.crop, str(path))
    labels = read_labels(
        config.labels or discover_label_files(path.parent), num_classes=num_classes, model=path.name
    )
    spec = configured_spec(
        config,
        architecture=config.architecture or str(network.original_name),
        source_format="torchscript",
        labels=labels,
        preprocessing=preprocessing,
    )
    return LoadedModel(spec, network)


def count_classes(network: torch.nn.Module, crop: int, what: str) -> int:
    """Run the network once on a blank image; its output must be (1, classes) logits."""
    import torch

    try:
        with torch.inference_mode():
            output = network(torch.zeros(1, 3, crop, crop))
    except Exception as error:  # a scripted model raises whatever its code raises
        raise ModelLoadError(
            f"{what} fails on a 1x3x{crop}x{crop} image: {_last_line(error)}; is crop right?"
        ) from error
    if not isinstance(output, torch.Tensor) or output.dim() != 2 or output.shape[0] != 1:
        shown = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ModelLoadError(
            f"{what} returns {shown} for one image; a classifier returns (1, classes) logits"
        )
    return int(output.shape[1])


def _last_line(error: Exception) -> str:
    """TorchScript puts a traceback first and the error itself last."""
    return (str(error).strip().splitlines() or [type(error).__name__])[-1]
