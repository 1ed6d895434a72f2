"""Build classification networks by name, from torchvision or timm, without any weights.

A name may say its library (`torchvision/resnet50`, `timm/resnest101e`); a bare name is
looked up in torchvision first, then timm, and every library that has it is a candidate.
"""

from __future__ import annotations

import timm
import torch
import torchvision

from recognizer.errors import ModelLoadError

LIBRARIES = ("torchvision", "timm")


def candidates(architecture: str) -> list[str]:
    """The library-qualified names `architecture` may mean, in the order to try them."""
    library, slash, name = architecture.rpartition("/")
    if slash and library not in LIBRARIES:
        raise ModelLoadError(
            f"unknown architecture library {library!r} in {architecture!r}: use"
            f" {' or '.join(LIBRARIES)}, as in timm/{name}"
        )
    found = [
        f"{candidate}/{name}"
        for candidate in ([library] if slash else LIBRARIES)
        if _has(candidate, name)
    ]
    if not found:
        raise ModelLoadError(
            f"unknown architecture {architecture!r}: not a torchvision or timm classification"
            " model (see torchvision.models.list_models() and timm.list_models())"
        )
    return found


def build(architecture: str, num_classes: int) -> torch.nn.Module:
    """A randomly initialised network, in eval mode; `architecture` is library-qualified."""
    library, _, name = architecture.partition("/")
    if library == "torchvision":
        network: torch.nn.Module = torchvision.models.get_model(
            name, weights=None, num_classes=num_classes
        )
    else:
        network = timm.create_model(name, pretrained=False, num_classes=num_classes)
    return network.eval()


def classifier_key(architecture: str) -> str:
    """The state-dict key of the classifier's weight, whose first dimension is the classes.

    It is the network's last weight of two or more dimensions (a Linear, or a 1x1 conv
    head); the network is built on the meta device, so this costs no memory.
    """
    with torch.device("meta"):
        network = build(architecture, 1000)
    return [key for key, tensor in network.state_dict().items() if tensor.dim() >= 2][-1]


def _has(library: str, name: str) -> bool:
    if library == "torchvision":
        return name in torchvision.models.list_models(module=torchvision.models)
    return bool(timm.is_model(name))
