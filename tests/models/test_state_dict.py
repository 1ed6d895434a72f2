"""torchvision and timm state dicts: loaded whole into their architecture, or refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from model_files import Built, reference_scores
from recognizer.config.models import ModelConfig, parse_model_flag
from recognizer.errors import ConfigError, ModelLoadError
from recognizer.models.state_dict import load_state_dict_model
from support import PHOTOS


def test_a_torchvision_pth_loads_with_its_class_count_and_labels(
    torchvision_state_dict: Built,
) -> None:
    model = load_state_dict_model(
        ModelConfig(path=str(torchvision_state_dict.path), architecture="resnet18")
    )
    spec = model.spec
    assert (spec.name, spec.architecture, spec.source_format) == (
        "resnet18",
        "torchvision/resnet18",
        "state_dict",
    )
    assert (spec.num_classes, spec.labels.languages) == (7, ("zh",))
    assert isinstance(model.network, torch.nn.Module)
    image = [PHOTOS["cat"].read_bytes()]
    assert (
        reference_scores(model.network, spec.preprocessing, image)
        == reference_scores(torchvision_state_dict.network, spec.preprocessing, image)
    ).all()


def test_a_timm_safetensors_file_loads_with_tsv_labels(timm_safetensors: Built) -> None:
    config = parse_model_flag(
        f"name=tiny,path={timm_safetensors.path},architecture=timm/test_convnext,resize=183,crop=160"
    )
    spec = load_state_dict_model(config).spec
    assert (spec.name, spec.architecture, spec.num_classes) == ("tiny", "timm/test_convnext", 5)
    assert spec.labels.names("en")[0] == "cat" and spec.labels.names("zh")[0] == "猫"
    assert spec.preprocessing == timm_safetensors.preprocessing


def test_a_bare_name_falls_back_to_the_library_whose_tensors_fit(tmp_path: Path) -> None:
    # timm and torchvision both have efficientnet_b0, under different tensor names.
    network = timm.create_model("efficientnet_b0", num_classes=3)
    torch.save(network.state_dict(), tmp_path / "b0.pth")
    (tmp_path / "labels_en.txt").write_text("a\nb\nc\n", encoding="utf-8")
    config = ModelConfig(path=str(tmp_path / "b0.pth"), architecture="efficientnet_b0")
    assert load_state_dict_model(config).spec.architecture == "timm/efficientnet_b0"


def test_a_state_dict_needs_its_architecture(torchvision_state_dict: Built) -> None:
    with pytest.raises(ConfigError, match="name the network with architecture=NAME"):
        load_state_dict_model(ModelConfig(path=str(torchvision_state_dict.path)))


def test_a_checkpoint_of_another_architecture_is_refused_naming_a_tensor(
    torchvision_state_dict: Built,
) -> None:
    config = ModelConfig(path=str(torchvision_state_dict.path), architecture="resnet34")
    with pytest.raises(ModelLoadError) as raised:
        load_state_dict_model(config)
    message = str(raised.value)
    assert message.startswith("resnet18.pth does not fit torchvision/resnet34: missing layer1.2.")
    assert "nor does it fit timm/resnet34" in message


def test_a_checkpoint_without_the_classifier_is_refused(tmp_path: Path) -> None:
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "odd.pth")
    config = ModelConfig(path=str(tmp_path / "odd.pth"), architecture="timm/test_resnet")
    with pytest.raises(ModelLoadError, match=r"has no fc\.weight, the classifier's weight"):
        load_state_dict_model(config)


def test_labels_must_match_the_checkpoints_class_count(
    torchvision_state_dict: Built, tmp_path: Path
) -> None:
    labels = tmp_path / "labels_en.txt"
    labels.write_text("one\ntwo\n", encoding="utf-8")
    config = parse_model_flag(
        f"path={torchvision_state_dict.path},architecture=resnet18,labels={labels}"
    )
    with pytest.raises(ModelLoadError, match=r"has 2 en labels but resnet18\.pth .* 7 classes"):
        load_state_dict_model(config)
