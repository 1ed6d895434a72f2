"""万物识别 and its siblings: ModelScope directories loaded strictly into timm's resnest101e."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from model_files import GENERAL_NAMES, Built, reference_scores
from recognizer.config.models import ModelConfig
from recognizer.errors import ModelLoadError
from recognizer.models.modelscope import PREPROCESSING, is_modelscope_directory, load_modelscope
from recognizer.models.preprocessing import Preprocessing
from support import PHOTOS

# Tensors of ModelScope's ResNeSt-101 (modelscope/models/cv/animal_recognition/resnet.py
# and splat.py): name -> shape, with 12 classes. Its deep stem is conv1.{0,1,3,4,6}; each
# bottleneck's split-attention conv is conv2.{conv,bn0,fc1,bn1,fc2} (no bn2, and avd is a
# pooling layer without tensors); avg-down puts the downsampling conv at downsample.1.
MODELSCOPE_TENSORS = {
    "conv1.0.weight": (64, 3, 3, 3),
    "conv1.1.running_mean": (64,),
    "conv1.3.weight": (64, 64, 3, 3),
    "conv1.4.num_batches_tracked": (),
    "conv1.6.weight": (128, 64, 3, 3),
    "bn1.weight": (128,),
    "layer1.0.conv1.weight": (64, 128, 1, 1),
    "layer1.0.conv2.conv.weight": (128, 32, 3, 3),
    "layer1.0.conv2.bn0.weight": (128,),
    "layer1.0.conv2.fc1.weight": (32, 64, 1, 1),
    "layer1.0.conv2.fc1.bias": (32,),
    "layer1.0.conv2.bn1.running_var": (32,),
    "layer1.0.conv2.fc2.weight": (128, 32, 1, 1),
    "layer1.0.conv3.weight": (256, 64, 1, 1),
    "layer1.0.downsample.1.weight": (256, 128, 1, 1),
    "layer1.0.downsample.2.weight": (256,),
    "layer2.0.conv2.fc1.weight": (64, 128, 1, 1),
    "layer3.22.conv2.fc2.bias": (512,),
    "layer4.0.downsample.1.weight": (2048, 1024, 1, 1),
    "layer4.2.bn3.running_mean": (2048,),
    "fc.weight": (12, 2048),
    "fc.bias": (12,),
}


@pytest.fixture(scope="module")
def tensors(modelscope_model: Built) -> dict[str, torch.Tensor]:
    loaded: dict[str, torch.Tensor] = torch.load(
        modelscope_model.path / "pytorch_model.pt", weights_only=True, mmap=True
    )
    return loaded


def scores(network: torch.nn.Module) -> np.ndarray:
    images = [PHOTOS["cat"].read_bytes(), PHOTOS["coffee"].read_bytes()]
    return reference_scores(network, PREPROCESSING, images)


def test_the_test_checkpoint_has_modelscopes_exact_layout(
    tensors: dict[str, torch.Tensor],
) -> None:
    assert len(tensors) == 935
    assert {key: tuple(tensors[key].shape) for key in MODELSCOPE_TENSORS} == MODELSCOPE_TENSORS
    assert not any(".bn2." in key or "avd" in key for key in tensors)


def test_the_full_model_has_157_million_parameters() -> None:
    with torch.device("meta"):
        network = timm.create_model("resnest101e", num_classes=54092)
    assert round(sum(p.numel() for p in network.parameters()) / 1e6) == 157


def test_the_directory_is_recognised_and_loads_strictly(modelscope_model: Built) -> None:
    assert is_modelscope_directory(modelscope_model.path)
    model = load_modelscope(ModelConfig(path=str(modelscope_model.path)))
    spec = model.spec
    assert (spec.name, spec.architecture, spec.source_format, spec.num_classes) == (
        "cv_resnest101_general_recognition",
        "timm/resnest101e",
        "modelscope",
        12,
    )
    assert spec.labels.languages == ("zh",) and list(spec.labels.names("zh")) == GENERAL_NAMES
    assert spec.preprocessing == Preprocessing(
        resize=256, crop=224, interpolation="bilinear", channel_order="RGB"
    )
    assert spec.activation == "softmax"
    assert isinstance(model.network, torch.nn.Module)
    assert (scores(model.network) == scores(modelscope_model.network)).all()


def test_wrapped_weights_and_label_mapping_load_the_same(
    modelscope_model: Built, modelscope_wrapped: Path
) -> None:
    model = load_modelscope(ModelConfig(path=str(modelscope_wrapped)))
    assert model.spec.name == "cv_resnest101_animal_recognition"
    assert list(model.spec.labels.names("zh")) == GENERAL_NAMES
    assert isinstance(model.network, torch.nn.Module)
    assert (scores(model.network) == scores(modelscope_model.network)).all()


def modelscope_copy(source: Path, target: Path) -> Path:
    """A directory sharing the source's checkpoint and label file through links."""
    target.mkdir()
    for name in ("pytorch_model.pt", "meta_info.txt"):
        (target / name).symlink_to(source / name)
    return target


def test_a_missing_or_misshapen_tensor_is_named_not_skipped(
    tensors: dict[str, torch.Tensor], modelscope_model: Built, tmp_path: Path
) -> None:
    damaged = dict(tensors)
    del damaged["layer3.7.conv2.fc1.weight"]
    damaged["layer2.1.bn3.weight"] = torch.ones(256)
    directory = tmp_path / "damaged"
    directory.mkdir()
    torch.save(damaged, directory / "pytorch_model.pt")
    (directory / "meta_info.txt").symlink_to(modelscope_model.path / "meta_info.txt")
    with pytest.raises(ModelLoadError) as raised:
        load_modelscope(ModelConfig(path=str(directory)))
    assert str(raised.value) == (
        f"{directory}/pytorch_model.pt does not fit timm/resnest101e: missing"
        " layer3.7.conv2.fc1.weight; layer2.1.bn3.weight is 256 in the checkpoint, 512 in the"
        " network"
    )


def test_a_checkpoint_of_another_network_is_refused(
    modelscope_model: Built, tmp_path: Path
) -> None:
    directory = tmp_path / "other"
    directory.mkdir()
    head = {"fc.weight": torch.zeros(12, 512), "fc.bias": torch.zeros(12)}
    torch.save({"state_dict": head}, directory / "pytorch_model.pt")
    (directory / "meta_info.txt").symlink_to(modelscope_model.path / "meta_info.txt")
    with pytest.raises(ModelLoadError, match=r"missing conv1\.0\.weight, .* and \d+ more; fc\.we"):
        load_modelscope(ModelConfig(path=str(directory)))


def test_labels_must_match_the_class_count_of_the_checkpoint(
    modelscope_model: Built, tmp_path: Path
) -> None:
    directory = tmp_path / "short"
    directory.mkdir()
    (directory / "pytorch_model.pt").symlink_to(modelscope_model.path / "pytorch_model.pt")
    (directory / "meta_info.txt").write_text("0\t人物\n1\t猫\n", encoding="utf-8")
    with pytest.raises(ModelLoadError, match=r"meta_info\.txt has 2 zh labels but .* 12 classes"):
        load_modelscope(ModelConfig(path=str(directory)))


def test_other_directories_are_not_modelscope(modelscope_model: Built, tmp_path: Path) -> None:
    (tmp_path / "pytorch_model.pt").symlink_to(modelscope_model.path / "pytorch_model.pt")
    assert not is_modelscope_directory(tmp_path)
    (tmp_path / "label_mapping.txt").write_text("0\t猫\n", encoding="utf-8")
    assert is_modelscope_directory(tmp_path)
