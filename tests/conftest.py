"""Shared fixtures: the real default model, real photos, and a shared real server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from recognizer.engine.backends import TorchBackend
from recognizer.engine.engine import ServedModel
from recognizer.models.efficientnet_lite0 import load_efficientnet_lite0
from support import PHOTOS, ServerThread


@pytest.fixture(scope="session")
def photos() -> dict[str, bytes]:
    return {name: path.read_bytes() for name, path in PHOTOS.items()}


@pytest.fixture(scope="session")
def default_model() -> ServedModel:
    """The real built-in model, loaded once per session."""
    model = load_efficientnet_lite0()
    return ServedModel(model.spec, TorchBackend(model, device=torch.device("cpu")))


@pytest.fixture(scope="session")
def default_server(default_model: ServedModel) -> Iterator[ServerThread]:
    """One server with the real default model, shared by tests that do not change it."""
    with ServerThread([default_model], max_batch_size=8, max_batch_delay_ms=5) as running:
        yield running
