"""`recognizer serve`, as a real process, with the colour model (fakes.py) instead of a real
one, which starts in a second: for what the process does on signals and when its model
stops working.

    python tests/serve_fake.py {works,hangs} [serve flags]

`hangs` runs the model on a backend that hangs on any image but a blank one, so that it
warms up and passes its probes, then wedges on the first real request, as a driver can.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from fakes import colour_model
from recognizer import app
from recognizer.cli.main import main
from recognizer.config import Config
from recognizer.engine.engine import ServedModel


class HangsOnImages:
    name = "hangs-on-images"
    device = "cpu"
    precision = "fp32"
    quantization_check = None

    def __init__(self, served: ServedModel) -> None:
        self._backend = served.backend
        self._never = threading.Event()

    def __call__(self, pixels: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        if pixels.any():
            self._never.wait()
        return self._backend(pixels, top_k)


def fake_models(config: Config) -> list[ServedModel]:
    served = colour_model()
    if behaviour == "hangs":
        return [ServedModel(served.spec, HangsOnImages(served))]
    return [served]


behaviour, flags = sys.argv[1], sys.argv[2:]
app.load_served_models = fake_models
sys.exit(main(["serve", *flags]))
