"""Real checkpoints of every format the service loads, built by the tests themselves.

Nothing can be downloaded, so each builder writes a real model with random weights in
the layout its users have it: a ModelScope 万物识别 directory with a ResNeSt-101
checkpoint, a TorchScript file with labels and a sidecar, torchvision and timm state
dicts, an ONNX file. Each returns the PyTorch network it saved, the reference that the
service's answers are compared with.

Random networks would score every class alike, so each is calibrated first: BatchNorm
statistics from real photos (and noise), and a classifier scaled so its logits spread
out, which keeps the ranking far from ties.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import timm
import torch
import torchvision
from safetensors.torch import save_file

from recognizer.models.preprocessing import Preprocessing, decode_image, prepare_input
from support import PHOTOS

GENERAL_NAMES = [
    "人物",
    "猫",
    "狗",
    "汽车",
    "咖啡",
    "山峰",
    "花朵",
    "鸟",
    "飞机",
    "建筑",
    "食物",
    "手机",
]
IMAGENET = Preprocessing()


@dataclass(frozen=True)
class Built:
    """A model as written to disk, and the network and preprocessing it was saved with."""

    path: Path
    network: torch.nn.Module
    preprocessing: Preprocessing


def reference_top_k(built: Built, image: bytes, k: int) -> tuple[list[int], list[float]]:
    """The top-k class ids and softmax scores of the saved network, run in PyTorch."""
    scores = reference_scores(built.network, built.preprocessing, [image])[0]
    order = np.argsort(-scores, kind="stable")[:k]
    return order.tolist(), scores[order].tolist()


def reference_scores(
    network: torch.nn.Module, preprocessing: Preprocessing, images: Iterable[bytes]
) -> np.ndarray:
    """Softmax scores of `network` for images prepared as the server prepares them."""
    with torch.inference_mode():
        logits = network(_normalised(preprocessing, images))
    return logits.softmax(dim=1).numpy()


def modelscope_directory(root: Path) -> Built:
    """damo/cv_resnest101_general_recognition's layout with 12 classes instead of 54,092."""
    torch.manual_seed(101)
    network = timm.create_model("resnest101e", num_classes=len(GENERAL_NAMES))
    _calibrate(network, "fc", IMAGENET)
    root.mkdir(parents=True)
    torch.save(network.state_dict(), root / "pytorch_model.pt")
    (root / "meta_info.txt").write_text(
        "".join(f"{index:05d}\t{name}\n" for index, name in enumerate(GENERAL_NAMES)),
        encoding="utf-8",
    )
    configuration = {
        "framework": "pytorch",
        "task": "general-recognition",
        "pipeline": {"type": "general-recognition"},
    }
    (root / "configuration.json").write_text(json.dumps(configuration), encoding="utf-8")
    (root / "README.md").write_text("# 万物识别-中文-通用领域\n", encoding="utf-8")
    return Built(root, network, IMAGENET)


def wrapped_modelscope_directory(flat: Built, root: Path) -> Path:
    """The same model as the animal-recognition sibling ships it: wrapped weights under
    "state_dict" with DataParallel's "module." prefix, names in label_mapping.txt."""
    root.mkdir(parents=True)
    tensors = torch.load(flat.path / "pytorch_model.pt", weights_only=True, mmap=True)
    torch.save(
        {"state_dict": {f"module.{key}": value for key, value in tensors.items()}, "epoch": 90},
        root / "pytorch_model.pt",
    )
    (root / "label_mapping.txt").write_bytes((flat.path / "meta_info.txt").read_bytes())
    return root


SEED = Preprocessing(
    resize=160,
    crop=128,
    interpolation="bicubic",
    mean=(0.406, 0.456, 0.485),
    std=(0.225, 0.224, 0.229),
    channel_order="BGR",
)
SEED_SIDECAR = """\
# How model.pt was trained: OpenCV images, so BGR.
resize = 160
crop = 128
interpolation = "bicubic"
mean = [0.406, 0.456, 0.485]
std = [0.225, 0.224, 0.229]
channel_order = "BGR"
"""
SEED_NAMES = {
    "zh": ["红", "绿", "蓝", "黄", "黑", "白"],
    "en": ["red", "green", "blue", "yellow", "black", "white"],
}


def torchscript_model(root: Path) -> Built:
    """The seed article's layout: model.pt (torch.jit.save) with labels_zh.txt and
    labels_en.txt beside it, and its preprocessing in the sidecar model.toml."""
    torch.manual_seed(7)
    network = torchvision.models.mobilenet_v3_small(num_classes=6)
    _calibrate(network, "classifier.3", SEED)
    root.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript is deprecated, and still what people have
        torch.jit.save(torch.jit.trace(network, torch.zeros(1, 3, 128, 128)), root / "model.pt")
    for language, names in SEED_NAMES.items():
        (root / f"labels_{language}.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    (root / "model.toml").write_text(SEED_SIDECAR, encoding="utf-8")
    return Built(root / "model.pt", network, SEED)


def torchvision_state_dict(root: Path) -> Built:
    """A torchvision resnet18 fine-tuned to 7 classes, saved as a .pth state dict."""
    torch.manual_seed(18)
    network = torchvision.models.resnet18(num_classes=7)
    _calibrate(network, "fc", IMAGENET)
    root.mkdir(parents=True)
    torch.save(network.state_dict(), root / "resnet18.pth")
    names = [f"类别{index}" for index in range(7)]
    (root / "labels_zh.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    return Built(root / "resnet18.pth", network, IMAGENET)


TIMM_SMALL = Preprocessing(resize=183, crop=160)


def timm_safetensors(root: Path) -> Built:
    """A timm convnext, 5 classes, as .safetensors with the project's TSV of labels."""
    torch.manual_seed(5)
    network = timm.create_model("test_convnext", num_classes=5)
    _calibrate(network, "head.fc", TIMM_SMALL)
    root.mkdir(parents=True)
    save_file(network.state_dict(), root / "convnext.safetensors")
    rows = ["zh\ten", "猫\tcat", "狗\tdog", "鸟\tbird", "鱼\tfish", "马\thorse"]
    (root / "labels.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return Built(root / "convnext.safetensors", network, TIMM_SMALL)


def onnx_model(root: Path) -> Built:
    """A timm ViT (fixed 160x160 input, dynamic batch) exported to ONNX, 4 classes."""
    torch.manual_seed(4)
    network = timm.create_model("test_vit", num_classes=4)
    _calibrate(network, "head", TIMM_SMALL)
    root.mkdir(parents=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            network,
            (torch.zeros(1, 3, 160, 160),),
            root / "vit.onnx",
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
        )
    (root / "labels_en.txt").write_text("sky\nsea\nland\nice\n", encoding="utf-8")
    return Built(root / "vit.onnx", network, TIMM_SMALL)


def _calibrate(network: torch.nn.Module, head: str, preprocessing: Preprocessing) -> None:
    """Give a random network BatchNorm statistics and well-spread logits.

    The statistics come from real photos and from noise (the backends' export check runs
    noise through the model), so that activations stay in range for both; BatchNorms that
    timm zeroes so residual blocks start as identities get small weights, which keeps a
    deep network from amplifying its input block after block.
    """
    photos = _normalised(preprocessing, (path.read_bytes() for path in PHOTOS.values()))
    noise = torch.rand(
        2, 3, preprocessing.crop, preprocessing.crop, generator=torch.Generator().manual_seed(0)
    )
    mean = torch.tensor(preprocessing.mean).view(1, 3, 1, 1)
    std = torch.tensor(preprocessing.std).view(1, 3, 1, 1)
    with torch.no_grad():
        for norm in network.modules():
            if isinstance(norm, torch.nn.BatchNorm2d):
                norm.momentum = None  # a plain average over the calibration batch
                residual = not norm.weight.any()
                torch.nn.init.uniform_(norm.weight, *((0.1, 0.3) if residual else (0.5, 1.5)))
        network.train()
        network(torch.cat([photos, (noise - mean) / std]))
        network.eval()
        classifier = network.get_submodule(head)
        assert isinstance(classifier, torch.nn.Linear)
        spread = 2.0 / float(network(photos).std())
        classifier.weight.mul_(spread)
        classifier.bias.mul_(spread)


def _normalised(preprocessing: Preprocessing, images: Iterable[bytes]) -> torch.Tensor:
    """Images as the server prepares them, normalised: float NCHW in the model's order."""
    pixels = np.stack([prepare_input(decode_image(image), preprocessing) for image in images])
    batch = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    mean = torch.tensor(preprocessing.mean).view(1, 3, 1, 1)
    std = torch.tensor(preprocessing.std).view(1, 3, 1, 1)
    return (batch - mean) / std
