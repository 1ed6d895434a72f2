"""Shared fixtures: the real default model, real photos, a shared real server, and
checkpoints of every format the service loads (built once per session)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import model_files
from certificates import Pki
from model_files import Built
from recognizer.config.schema import EngineSettings
from recognizer.engine.backends.builder import Sources, build, network_kind
from recognizer.engine.backends.plan import plans
from recognizer.engine.backends.torch_backend import TorchBackend
from recognizer.engine.engine import ServedModel
from recognizer.models.efficientnet_lite0 import load_efficientnet_lite0
from recognizer.models.spec import LoadedModel
from support import PHOTOS, ServerThread


@pytest.fixture(scope="session")
def photos() -> dict[str, bytes]:
    return {name: path.read_bytes() for name, path in PHOTOS.items()}


@pytest.fixture(scope="session")
def default_loaded() -> LoadedModel:
    """The real built-in model, loaded once per session."""
    return load_efficientnet_lite0()


@pytest.fixture(scope="session")
def default_model(default_loaded: LoadedModel) -> ServedModel:
    """The built-in model on eager PyTorch, which the tests can compare other backends to."""
    backend = TorchBackend(default_loaded, device=torch.device("cpu"))
    return ServedModel(default_loaded.spec, backend)


@pytest.fixture(scope="session")
def default_server(default_loaded: LoadedModel) -> Iterator[ServerThread]:
    """One server as `recognizer serve` builds it (OpenVINO on the CPU), batching up to 8,
    with HTTP on too."""
    candidates = plans(EngineSettings(), "cpu", network_kind(default_loaded))
    _, backend = build(candidates, default_loaded.spec, Sources.of(default_loaded))
    model = ServedModel(default_loaded.spec, backend)
    with ServerThread([model], max_batch_size=8, max_batch_delay_ms=5, http=True) as running:
        yield running


@pytest.fixture(scope="session")
def modelscope_model(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """A 万物识别 directory: ResNeSt-101 (12 classes) as ModelScope ships it, ~180 MB."""
    root = tmp_path_factory.mktemp("modelscope") / "cv_resnest101_general_recognition"
    return model_files.modelscope_directory(root)


@pytest.fixture(scope="session")
def modelscope_wrapped(modelscope_model: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same weights under "state_dict" with "module." keys, labels in label_mapping.txt."""
    root = tmp_path_factory.mktemp("modelscope") / "cv_resnest101_animal_recognition"
    return model_files.wrapped_modelscope_directory(modelscope_model, root)


@pytest.fixture(scope="session")
def torchscript_model(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return model_files.torchscript_model(tmp_path_factory.mktemp("torchscript") / "seed")


@pytest.fixture(scope="session")
def torchvision_state_dict(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return model_files.torchvision_state_dict(tmp_path_factory.mktemp("state_dict") / "r18")


@pytest.fixture(scope="session")
def timm_safetensors(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return model_files.timm_safetensors(tmp_path_factory.mktemp("state_dict") / "convnext")


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return model_files.onnx_model(tmp_path_factory.mktemp("onnx") / "vit")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("image", "the container image test (make image-test)")
    group.addoption(
        "--image",
        action="store_true",
        help="build and run the container image with podman (tests/deploy/test_image.py)",
    )
    group.addoption(
        "--image-build-arg",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a build argument for the image test's build, repeatable",
    )


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA with a server certificate for localhost and 127.0.0.1, a client certificate
    (CN acme), and the ones to refuse: a client from another CA, an expired client."""
    return Pki.make(tmp_path_factory.mktemp("pki"))


def pytest_configure(config: pytest.Config) -> None:
    """The model cache of every server the tests start, in this process or as `recognizer
    serve` (which inherits the environment), is the session's own, not the user's."""
    config.stash[CACHE_HOME] = tempfile.mkdtemp(prefix="recognizer-tests-cache-")
    os.environ["XDG_CACHE_HOME"] = config.stash[CACHE_HOME]


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(config.stash.get(CACHE_HOME, ""), ignore_errors=True)


CACHE_HOME = pytest.StashKey[str]()
