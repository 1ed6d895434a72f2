"""Every model source through one real server: the answers PyTorch gives, and the metadata.

The server is built as `recognizer serve` builds it (app.load_served_models: formats
detected, ONNX Runtime on the CPU where the model exports), from checkpoints the tests
wrote in each format; each answer is compared with the saved network run in PyTorch.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import numpy as np
import pytest

from model_files import GENERAL_NAMES, SEED, SEED_NAMES, TIMM_SMALL, Built, reference_top_k
from recognizer.app import load_served_models
from recognizer.client import Client
from recognizer.config import Config
from recognizer.config.models import parse_model_flag
from recognizer.config.schema import EngineSettings
from recognizer.v1 import recognizer_pb2 as pb
from support import PHOTOS, ServerThread

TOLERANCE = 1e-4  # ONNX Runtime against PyTorch, as the export check allows


@pytest.fixture(scope="module")
def built(
    modelscope_model: Built,
    torchscript_model: Built,
    torchvision_state_dict: Built,
    timm_safetensors: Built,
    onnx_model: Built,
) -> dict[str, Built]:
    return {
        "wanwu": modelscope_model,
        "seed": torchscript_model,
        "r18": torchvision_state_dict,
        "tiny": timm_safetensors,
        "vit": onnx_model,
    }


@pytest.fixture(scope="module")
def server(built: dict[str, Built]) -> Iterator[ServerThread]:
    config = Config(
        models=(
            parse_model_flag(f"wanwu={built['wanwu'].path}"),
            parse_model_flag(f"name=seed,path={built['seed'].path},format=torchscript"),
            parse_model_flag(
                f"name=r18,path={built['r18'].path},architecture=resnet18,max_batch_size=2"
            ),
            parse_model_flag(
                f"name=tiny,path={built['tiny'].path},architecture=timm/test_convnext,"
                "resize=183,crop=160,activation=sigmoid"
            ),
            parse_model_flag(f"name=vit,path={built['vit'].path}"),
        ),
        engine=EngineSettings(device="cpu", max_batch_size=4),
    )
    with ServerThread(load_served_models(config), max_batch_size=4) as running:
        yield running


@pytest.fixture
def client(server: ServerThread) -> Iterator[Client]:
    with Client(server.address) as client:
        yield client


@pytest.mark.parametrize("model", ["wanwu", "seed", "r18", "vit"])
@pytest.mark.parametrize("photo", ["cat", "motorcycle"])
def test_each_format_answers_as_pytorch_does(
    client: Client, built: dict[str, Built], model: str, photo: str
) -> None:
    image = PHOTOS[photo].read_bytes()
    expected_ids, expected_scores = reference_top_k(built[model], image, 3)
    response = client.classify(image, model=model, top_k=3)
    assert response.model == model
    assert [label.class_id for label in response.labels] == expected_ids
    scores = [label.score for label in response.labels]
    assert np.allclose(scores, expected_scores, atol=TOLERANCE, rtol=0)


def test_a_multi_label_model_scores_each_class_with_a_sigmoid(
    client: Client, built: dict[str, Built]
) -> None:
    image = PHOTOS["coffee"].read_bytes()
    response = client.classify(image, model="tiny", top_k=5, language="en")
    expected_ids, _ = reference_top_k(built["tiny"], image, 5)  # sigmoid keeps the order
    assert [label.class_id for label in response.labels] == expected_ids
    assert response.labels[0].label in {"cat", "dog", "bird", "fish", "horse"}
    assert sum(label.score for label in response.labels) > 1.2  # independent, not a softmax


def test_the_first_model_is_the_default_and_names_its_classes_in_chinese(
    client: Client, built: dict[str, Built]
) -> None:
    response = client.classify(PHOTOS["coffee"].read_bytes(), top_k=12, language="zh-CN")
    assert (response.model, response.language) == ("wanwu", "zh")
    assert sorted(label.label for label in response.labels) == sorted(GENERAL_NAMES)


def test_a_language_a_model_lacks_falls_back_to_its_first(client: Client) -> None:
    image = PHOTOS["cat"].read_bytes()
    english = client.classify(image, model="seed", top_k=6, language="en")
    assert english.language == "en"
    assert sorted(label.label for label in english.labels) == sorted(SEED_NAMES["en"])
    assert client.classify(image, model="vit", language="zh").language == "en"
    assert client.classify(image, model="wanwu", language="en").language == "zh"


def test_list_models_describes_where_each_model_came_from(client: Client) -> None:
    models = {model.name: model for model in client.list_models().models}
    assert list(models) == ["wanwu", "seed", "r18", "tiny", "vit"]
    described = {
        name: (
            model.source_format,
            model.architecture,
            model.num_classes,
            list(model.languages),
            model.max_batch_size,
            model.backend,
            model.activation,
        )
        for name, model in models.items()
    }
    softmax, sigmoid = pb.ACTIVATION_SOFTMAX, pb.ACTIVATION_SIGMOID
    assert described == {
        "wanwu": ("modelscope", "timm/resnest101e", 12, ["zh"], 4, "openvino", softmax),
        "seed": ("torchscript", "MobileNetV3", 6, ["zh", "en"], 4, "torch", softmax),
        "r18": ("state_dict", "torchvision/resnet18", 7, ["zh"], 2, "openvino", softmax),
        "tiny": ("state_dict", "timm/test_convnext", 5, ["zh", "en"], 4, "openvino", sigmoid),
        "vit": ("onnx", "", 4, ["en"], 4, "openvino", softmax),
    }
    wanwu, seed, tiny = models["wanwu"].preprocessing, models["seed"].preprocessing, models["tiny"]
    assert (wanwu.resize, wanwu.crop, wanwu.interpolation, wanwu.channel_order) == (
        256,
        224,
        "bilinear",
        "RGB",
    )
    assert np.allclose(wanwu.mean, [0.485, 0.456, 0.406]) and np.allclose(
        wanwu.std, [0.229, 0.224, 0.225]
    )
    assert (seed.crop, seed.interpolation, seed.channel_order) == (
        SEED.crop,
        SEED.interpolation,
        "BGR",
    )
    assert np.allclose(seed.mean, SEED.mean)
    assert (tiny.input_width, tiny.preprocessing.resize) == (TIMM_SMALL.crop, TIMM_SMALL.resize)
    assert models["vit"].preprocessing.crop == 160  # from the ONNX graph's input


def test_each_model_has_its_health_and_unknown_ones_are_not_found(client: Client) -> None:
    for name in ("wanwu", "seed", "r18", "tiny", "vit"):
        assert client.health(name) == "SERVING"
    with pytest.raises(grpc.RpcError) as raised:
        client.classify(PHOTOS["cat"].read_bytes(), model="resnet50")
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert "served models: wanwu, seed, r18, tiny, vit" in str(raised.value.details())
