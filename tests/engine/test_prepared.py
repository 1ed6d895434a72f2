"""Models prepared once and served from the cache; int8 behind its fidelity gate.

One real quantisation of the built-in model per module (NNCF, about a minute), then
every start reads it from the cache and applies the gate with its own settings.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from model_files import Built
from recognizer.client import Client
from recognizer.config.models import ModelConfig, parse_model_flag
from recognizer.config.schema import EngineSettings
from recognizer.engine.backends.calibration import BENIGN_CHANGES
from recognizer.engine.backends.prepared import load_backend
from recognizer.engine.engine import ServedModel
from recognizer.errors import BackendError, QuantizationError
from recognizer.models.efficientnet_lite0 import PREPROCESSING
from recognizer.models.preprocessing import decode_image, prepare_input
from support import ServerThread

DEFAULT = ModelConfig(path="efficientnet-lite0")
ESPRESSO = 967


def load(cache: Path | None, **settings: object) -> ServedModel:
    engine = EngineSettings(model_cache_dir=cache, **settings)  # type: ignore[arg-type]
    spec, backend = load_backend(DEFAULT, engine, device="cpu")
    return ServedModel(spec, backend)


def coffee(photos: dict[str, bytes]) -> np.ndarray:
    return prepare_input(decode_image(photos["coffee"]), PREPROCESSING)[None]


@pytest.fixture(scope="module")
def int8_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A cache holding the built-in model quantised, made by one start that lets it serve."""
    cache = tmp_path_factory.mktemp("int8-cache")
    load(cache, precision="int8", int8_min_agreement=0.0)
    yield cache


def test_a_warm_start_serves_the_cached_export_without_importing_pytorch(
    tmp_path: Path, photos: dict[str, bytes]
) -> None:
    cold = load(tmp_path)
    assert cold.backend.name == "openvino" and cold.backend.precision == "fp32"
    (entry,) = [folder for folder in tmp_path.iterdir() if not folder.name.startswith(".")]
    assert json.loads((entry / "description.json").read_text())["num_classes"] == 1000
    script = f"""
import sys, json, numpy as np
from pathlib import Path
from recognizer.config.models import ModelConfig
from recognizer.config.schema import EngineSettings
from recognizer.engine.backends.prepared import load_backend
settings = EngineSettings(model_cache_dir=Path({str(tmp_path)!r}))
spec, backend = load_backend(ModelConfig(path="efficientnet-lite0"), settings, device="cpu")
scores, ids = backend(np.load(sys.argv[1]), 5)
print(json.dumps({{"torch": "torch" in sys.modules, "ids": ids.tolist(),
                   "scores": scores.tolist(), "labels": spec.labels.names("en")[967]}}))
"""
    np.save(tmp_path / "coffee.npy", coffee(photos))
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "coffee.npy")],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    warm = json.loads(done.stdout.splitlines()[-1])
    assert warm["torch"] is False
    assert warm["labels"] == "espresso"
    scores, ids = cold.backend(coffee(photos), 5)
    assert warm["ids"] == ids.tolist()
    assert np.abs(np.array(warm["scores"]) - scores).max() < 1e-5


def test_with_the_cache_off_nothing_is_kept(tmp_path: Path, photos: dict[str, bytes]) -> None:
    served = load(None)
    _, ids = served.backend(coffee(photos), 1)
    assert ids[0, 0] == ESPRESSO


def test_int8_with_the_shipped_gate_serves_and_list_models_says_how_faithful(
    int8_cache: Path, photos: dict[str, bytes]
) -> None:
    served = load(int8_cache, precision="int8")  # the gate as shipped: the benign floor
    check = served.backend.quantization_check
    assert served.backend.precision == "int8" and check is not None and check.passed
    assert check.reference_change in BENIGN_CHANGES and check.held_out_images >= 300
    assert check.measured.top1_agreement >= check.required.top1_agreement > 0.5
    assert check.measured.top5_containment >= check.required.top5_containment > 0.9
    assert 0 < check.measured.mean_top5_difference <= check.required.mean_top5_difference < 0.2
    _, ids = served.backend(coffee(photos), 1)
    assert ids[0, 0] == ESPRESSO  # a clear photo keeps its class
    with ServerThread([served]) as running, Client(running.address) as client:
        (model,) = client.list_models().models
    listed = model.quantization_check
    assert model.precision == "int8" and listed.reference_change == check.reference_change
    assert listed.top1_agreement == pytest.approx(check.measured.top1_agreement)
    assert listed.min_agreement == pytest.approx(check.required.top1_agreement)
    assert listed.top5_containment == pytest.approx(check.measured.top5_containment)
    assert listed.min_top5_containment == pytest.approx(check.required.top5_containment)
    assert listed.max_mean_top5_difference == pytest.approx(check.required.mean_top5_difference)
    assert listed.held_out_images == check.held_out_images


def test_a_set_min_agreement_replaces_the_floor(int8_cache: Path) -> None:
    check = load(int8_cache, precision="int8", int8_min_agreement=0.5).backend.quantization_check
    assert check is not None and check.passed and check.reference_change == ""
    assert check.required.top1_agreement == 0.5


def test_int8_below_the_agreement_required_stops_start_up_and_says_why(int8_cache: Path) -> None:
    measured = load(int8_cache, precision="int8", int8_min_agreement=0.0).backend
    assert measured.quantization_check is not None
    required = min(1.0, measured.quantization_check.measured.top1_agreement + 0.001)
    if required <= measured.quantization_check.measured.top1_agreement:
        pytest.skip("int8 agreed on every held-out image: no threshold can refuse it")
    with pytest.raises(QuantizationError, match=r"falls short of the fidelity gate: top-1"):
        load(int8_cache, precision="int8", int8_min_agreement=required)


def test_int8_below_the_agreement_required_can_fall_back_to_fp32(
    int8_cache: Path, photos: dict[str, bytes]
) -> None:
    served = load(int8_cache, precision="int8", int8_min_agreement=1.0, int8_fallback="fp32")
    check = served.backend.quantization_check
    assert check is not None
    if check.passed:
        pytest.skip("int8 agreed on every held-out image")
    assert served.backend.precision == "fp32"  # and ListModels shows the check that failed
    _, ids = served.backend(coffee(photos), 1)
    assert ids[0, 0] == ESPRESSO


@pytest.mark.parametrize(
    ("fixture", "keys"),
    [
        ("timm_safetensors", "architecture=timm/test_convnext,resize=183,crop=160"),
        ("onnx_model", ""),
    ],
)
def test_int8_applies_to_state_dicts_and_onnx_files(
    fixture: str, keys: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    built: Built = request.getfixturevalue(fixture)
    config = parse_model_flag(f"name=m,path={built.path}" + (f",{keys}" if keys else ""))
    settings = EngineSettings(model_cache_dir=tmp_path, precision="int8", int8_min_agreement=0)
    spec, backend = load_backend(config, settings, device="cpu")
    assert backend.precision == "int8" and backend.quantization_check is not None
    assert backend.quantization_check.held_out_images >= 300
    pixels = np.zeros((2, spec.preprocessing.crop, spec.preprocessing.crop, 3), np.uint8)
    scores, _ = backend(pixels, spec.num_classes)
    assert scores.shape == (2, spec.num_classes)


def test_int8_refuses_torchscript_unless_it_may_fall_back(
    torchscript_model: Built, tmp_path: Path
) -> None:
    config = parse_model_flag(f"name=seed,path={torchscript_model.path},format=torchscript")
    settings = EngineSettings(model_cache_dir=tmp_path, precision="int8")
    with pytest.raises(BackendError, match="TorchScript runs on PyTorch only"):
        load_backend(config, settings, device="cpu")
    fallback = settings.model_copy(update={"int8_fallback": "fp32"})
    _, backend = load_backend(config, fallback, device="cpu")
    assert (backend.name, backend.precision) == ("torch", "fp32")
