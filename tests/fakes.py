"""Small real models the tests build: fast, deterministic, and with knobs for misbehaviour."""

from __future__ import annotations

import threading
import time

import numpy as np
import torch

from recognizer.engine.backends import Backend
from recognizer.engine.backends.torch_backend import TorchBackend
from recognizer.engine.engine import ServedModel
from recognizer.models.labels import Labels
from recognizer.models.preprocessing import Preprocessing
from recognizer.models.spec import LoadedModel, ModelSpec

COLOURS = {"zh": ["红", "绿", "蓝"], "en": ["red", "green", "blue"]}
# Unnormalised pixels: the network sees 0-255 values, so the dominant channel wins clearly.
RAW_PIXELS = Preprocessing(resize=32, crop=32, mean=(0.0, 0.0, 0.0), std=(1 / 255,) * 3)
POISON = (255, 0, 255)  # magenta: ColourNet raises when a batch contains it


class ColourNet(torch.nn.Module):
    """Classifies an image by its dominant colour channel: 0 red, 1 green, 2 blue.

    `delay_s` makes every forward pass slow (to fill queues); a magenta image makes the
    whole forward pass fail (to test that its batch neighbours survive).
    """

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__()
        self.delay_s = delay_s
        self.images_seen = 0
        self.scale = torch.nn.Parameter(torch.tensor(0.1), requires_grad=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        self.images_seen += pixels.shape[0]
        if self.delay_s:
            time.sleep(self.delay_s)
        means = pixels.mean(dim=(2, 3))
        poison = torch.tensor(POISON, dtype=means.dtype)
        if bool(((means - poison).abs().max(dim=1).values < 1).any()):
            raise RuntimeError("poisoned input")
        return means * self.scale


def colour_model(
    name: str = "colours",
    *,
    network: ColourNet | None = None,
    languages: tuple[str, ...] = ("zh", "en"),
) -> ServedModel:
    spec = ModelSpec(
        name=name,
        architecture="colournet",
        source_format="test",
        labels=Labels({language: COLOURS[language] for language in languages}),
        preprocessing=RAW_PIXELS,
    )
    model = LoadedModel(spec, network or ColourNet())
    return ServedModel(spec, TorchBackend(model, device=torch.device("cpu")))


def solid_png(colour: tuple[int, int, int], size: int = 48) -> bytes:
    """A PNG of one colour."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), colour, dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


class Faulty:
    """A backend that works until told to hang (until released) or to fail every call, as a
    wedged driver or a sticky CUDA error would. Pass-through otherwise."""

    name = "faulty"
    device = "cpu"
    precision = "fp32"
    quantization_check = None

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.mode = "ok"  # "ok", "hang" or "fail"
        self.released = threading.Event()
        self.calls = 0

    def __call__(self, pixels: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        self.calls += 1
        if self.mode == "hang":
            self.released.wait()
        if self.mode == "fail":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self._backend(pixels, top_k)


def faulty_model(name: str = "colours") -> tuple[ServedModel, Faulty]:
    """The colour model on a Faulty backend."""
    model = colour_model(name)
    backend = Faulty(model.backend)
    return ServedModel(model.spec, backend), backend
