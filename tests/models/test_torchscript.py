"""TorchScript models: the seed layout with its labels and sidecar, and its failures."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from model_files import SEED, SEED_NAMES, Built, reference_scores
from recognizer.config.models import ModelConfig
from recognizer.errors import ModelLoadError
from recognizer.models.torchscript import is_torchscript, load_torchscript
from support import PHOTOS


def test_the_seed_layout_loads_with_both_languages_and_the_sidecar(
    torchscript_model: Built,
) -> None:
    assert is_torchscript(torchscript_model.path)
    model = load_torchscript(ModelConfig(path=str(torchscript_model.path)).with_sidecar())
    spec = model.spec
    assert (spec.name, spec.source_format, spec.architecture, spec.num_classes) == (
        "model",
        "torchscript",
        "MobileNetV3",
        6,
    )
    assert spec.labels.languages == ("zh", "en")
    assert list(spec.labels.names("en")) == SEED_NAMES["en"]
    assert spec.preprocessing == SEED
    assert isinstance(model.network, torch.nn.Module)
    images = [PHOTOS["coffee"].read_bytes()]
    assert (
        reference_scores(model.network, SEED, images)
        == reference_scores(torchscript_model.network, SEED, images)
    ).all()


def test_state_dicts_are_not_torchscript(torchvision_state_dict: Built, tmp_path: Path) -> None:
    assert not is_torchscript(torchvision_state_dict.path)
    (tmp_path / "labels_zh.txt").write_text("x\n", encoding="utf-8")
    assert not is_torchscript(tmp_path / "labels_zh.txt")


def test_an_input_size_the_model_cannot_take_is_a_start_up_error(tmp_path: Path) -> None:
    class Fixed(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(3 * 32 * 32, 2)

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.linear(images.flatten(1))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(Fixed()), tmp_path / "fixed.pt")
    config = ModelConfig(path=str(tmp_path / "fixed.pt"), labels=())
    with pytest.raises(ModelLoadError, match=r"fails on a 1x3x224x224 image: .*; is crop right"):
        load_torchscript(config)


def test_a_model_that_does_not_return_logits_is_refused(tmp_path: Path) -> None:
    class Features(torch.nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return images.mean(dim=1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(Features()), tmp_path / "features.pt")
    with pytest.raises(ModelLoadError, match=r"returns \(1, 224, 224\) for one image"):
        load_torchscript(ModelConfig(path=str(tmp_path / "features.pt")))


def test_labels_must_match_the_models_outputs(torchscript_model: Built, tmp_path: Path) -> None:
    (tmp_path / "model.pt").symlink_to(torchscript_model.path)
    (tmp_path / "labels_zh.txt").write_text("红\n绿\n", encoding="utf-8")
    with pytest.raises(ModelLoadError, match=r"has 2 zh labels but model\.pt has 6 classes"):
        load_torchscript(ModelConfig(path=str(tmp_path / "model.pt"), crop=128, resize=160))
