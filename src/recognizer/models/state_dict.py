"""A torchvision or timm architecture with a weights file (.pth, .pt, .bin or .safetensors).

A state dict holds tensors but not the network, so the config names the architecture.
The class count is read from the checkpoint's classifier, so a resnet50 fine-tuned on 37
classes needs no more than `architecture=resnet50`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

from recognizer.config.models import ModelConfig
from recognizer.errors import ConfigError, ModelLoadError
from recognizer.models.label_files import discover_label_files, read_labels
from recognizer.models.preprocessing import Preprocessing
from recognizer.models.spec import LoadedModel, configured_preprocessing, configured_spec

if TYPE_CHECKING:  # SUFFIXES is read without PyTorch, to tell formats apart
    import torch

SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


class Fitted(NamedTuple):
    """A network with a checkpoint's weights loaded, its qualified architecture and classes."""

    network: torch.nn.Module
    architecture: str
    num_classes: int


def load_state_dict_model(config: ModelConfig) -> LoadedModel:
    """Build the configured architecture and load the weights file into it, strictly."""
    if config.architecture is None:
        raise ConfigError(
            f"{config.location} is not TorchScript, so it is taken for a state dict, which holds"
            " weights but not the network: name the network with architecture=NAME (a"
            " torchvision or timm model, such as resnet50)"
        )
    from recognizer.models.checkpoints import read_state_dict

    fitted = fit_architecture(
        read_state_dict(config.location), config.architecture, checkpoint=config.location.name
    )
    labels = read_labels(
        config.labels or discover_label_files(config.location.parent),
        num_classes=fitted.num_classes,
        model=f"{config.location.name} ({fitted.architecture})",
    )
    spec = configured_spec(
        config,
        architecture=fitted.architecture,
        source_format="state_dict",
        labels=labels,
        preprocessing=configured_preprocessing(config, Preprocessing()),
    )
    return LoadedModel(spec, fitted.network)


def fit_architecture(
    tensors: Mapping[str, torch.Tensor], architecture: str, *, checkpoint: str
) -> Fitted:
    """The network `architecture` names, with the checkpoint's weights and class count.

    A bare name both libraries have (resnet50) takes the first whose tensors fit; if
    none fits, the error is the first's.
    """
    from recognizer.models import architectures
    from recognizer.models.checkpoints import load_strictly

    tried = architectures.candidates(architecture)
    failures: list[ModelLoadError] = []
    for name in tried:
        try:
            head = architectures.classifier_key(name)
            if head not in tensors:
                raise ModelLoadError(
                    f"{checkpoint} does not fit {name}: it has no {head}, the classifier's"
                    " weight; is it a checkpoint of another architecture?"
                )
            num_classes = int(tensors[head].shape[0])
            network = architectures.build(name, num_classes)
            load_strictly(network, tensors, what=f"{checkpoint} does not fit {name}")
            return Fitted(network, name, num_classes)
        except ModelLoadError as error:
            failures.append(error)
    if len(tried) > 1:
        raise ModelLoadError(f"{failures[0]} (nor does it fit {', '.join(tried[1:])})")
    raise failures[0]
