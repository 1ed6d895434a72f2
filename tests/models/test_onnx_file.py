"""ONNX files as users export them: one image input, its size, its batch, its labels."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from model_files import TIMM_SMALL, Built
from recognizer.config.models import ModelConfig
from recognizer.errors import ModelLoadError
from recognizer.models.onnx_file import load_onnx
from recognizer.models.spec import OnnxGraph


def export(network: torch.nn.Module, path: Path, *inputs: torch.Tensor, dynamic: bool) -> Path:
    names = [f"input{index}" for index in range(len(inputs))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            network,
            inputs,
            path,
            input_names=names,
            dynamic_axes={name: {0: "n", 2: "h", 3: "w"} for name in names} if dynamic else None,
            dynamo=False,
        )
    (path.parent / "labels_en.txt").write_text("a\nb\n", encoding="utf-8")
    return path


class Pool(torch.nn.Module):
    """Any input size: mean colour -> 2 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(3, 2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.linear(images.mean(dim=(2, 3)))


def test_a_fixed_input_size_sets_the_crop_and_labels_come_from_beside_it(
    onnx_model: Built,
) -> None:
    model = load_onnx(ModelConfig(path=str(onnx_model.path)))
    spec = model.spec
    assert (spec.name, spec.source_format, spec.architecture, spec.num_classes) == (
        "vit",
        "onnx",
        "",
        4,
    )
    assert spec.preprocessing == TIMM_SMALL
    assert (spec.labels.languages, spec.max_batch_size) == (("en",), None)
    assert isinstance(model.network, OnnxGraph)


def test_a_crop_that_contradicts_the_graph_is_refused(onnx_model: Built) -> None:
    with pytest.raises(ModelLoadError, match="takes 160x160 images but crop is 224"):
        load_onnx(ModelConfig(path=str(onnx_model.path), crop=224))


def test_a_dynamic_size_takes_the_configured_crop(tmp_path: Path) -> None:
    path = export(Pool(), tmp_path / "pool.onnx", torch.zeros(1, 3, 8, 8), dynamic=True)
    spec = load_onnx(ModelConfig(path=str(path), resize=100, crop=96)).spec
    assert (spec.preprocessing.crop, spec.num_classes) == (96, 2)


def test_a_fixed_batch_of_one_caps_the_models_batches(tmp_path: Path) -> None:
    path = export(Pool(), tmp_path / "pool.onnx", torch.zeros(1, 3, 224, 224), dynamic=False)
    assert load_onnx(ModelConfig(path=str(path), max_batch_size=8)).spec.max_batch_size == 1


def test_a_fixed_batch_of_more_than_one_is_refused(tmp_path: Path) -> None:
    path = export(Pool(), tmp_path / "pool.onnx", torch.zeros(4, 3, 224, 224), dynamic=False)
    with pytest.raises(ModelLoadError, match="takes batches of exactly 4: export it with a dyn"):
        load_onnx(ModelConfig(path=str(path)))


def test_a_graph_with_two_inputs_is_refused(tmp_path: Path) -> None:
    class TwoInputs(torch.nn.Module):
        def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return (image * mask).mean(dim=(2, 3))

    sample = torch.zeros(1, 3, 224, 224)
    path = export(TwoInputs(), tmp_path / "two.onnx", sample, sample, dynamic=True)
    with pytest.raises(ModelLoadError, match=r"has 2 inputs \(input0, input1\); an image class"):
        load_onnx(ModelConfig(path=str(path)))


def test_a_graph_that_is_not_for_images_is_refused(tmp_path: Path) -> None:
    path = export(torch.nn.Linear(3, 2), tmp_path / "linear.onnx", torch.zeros(1, 3), dynamic=False)
    with pytest.raises(ModelLoadError, match=r"takes tensor\(float\) \[1, 3\]; it must"):
        load_onnx(ModelConfig(path=str(path)))


def test_a_file_that_is_not_onnx_is_refused(tmp_path: Path) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match=r"ONNX Runtime cannot load .*junk\.onnx"):
        load_onnx(ModelConfig(path=str(tmp_path / "junk.onnx")))
