"""Shared fixtures: the real default model, real photos, and a shared real server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from recognizer.engine.backends import create_backend
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
    """One server as `recognizer serve` builds it (ONNX Runtime on the CPU), batching up to 8."""
    backend = create_backend(default_loaded, device=torch.device("cpu"), kind="auto", threads=1)
    model = ServedModel(default_loaded.spec, backend)
    with ServerThread([model], max_batch_size=8, max_batch_delay_ms=5) as running:
        yield running
