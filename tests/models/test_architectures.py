"""Architectures by name: which library, which classifier, and names that exist nowhere."""

from __future__ import annotations

import pytest

from recognizer.errors import ModelLoadError
from recognizer.models import architectures


def test_bare_names_try_torchvision_then_timm() -> None:
    assert architectures.candidates("resnet50") == ["torchvision/resnet50", "timm/resnet50"]
    assert architectures.candidates("resnest101e") == ["timm/resnest101e"]
    assert architectures.candidates("timm/resnet50") == ["timm/resnet50"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("resnet5000", "unknown architecture 'resnet5000': not a torchvision or timm"),
        ("torchvision/resnest101e", "unknown architecture 'torchvision/resnest101e'"),
        ("keras/resnet50", "unknown architecture library 'keras'"),
        ("fasterrcnn_resnet50_fpn", "not a torchvision or timm classification model"),
    ],
)
def test_unknown_architectures_are_start_up_errors(name: str, message: str) -> None:
    with pytest.raises(ModelLoadError, match=message):
        architectures.candidates(name)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("torchvision/resnet50", "fc.weight"),
        ("torchvision/mobilenet_v3_small", "classifier.3.weight"),
        ("torchvision/squeezenet1_1", "classifier.1.weight"),
        ("timm/resnest101e", "fc.weight"),
        ("timm/test_convnext", "head.fc.weight"),
        ("timm/test_vit", "head.weight"),
    ],
)
def test_the_classifier_is_the_last_weight_matrix(name: str, key: str) -> None:
    assert architectures.classifier_key(name) == key


def test_built_networks_have_the_classes_asked_for_and_no_weights_downloaded() -> None:
    network = architectures.build("timm/test_resnet", 3)
    assert network.state_dict()["fc.weight"].shape[0] == 3
    assert not network.training
