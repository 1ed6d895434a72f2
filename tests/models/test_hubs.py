"""Models by hub id, found in caches laid out as ModelScope's and huggingface_hub's own
libraries lay them out; nothing here reaches the network."""

from __future__ import annotations

import hashlib
import importlib.machinery
import json
import os
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model_files import GENERAL_NAMES, Built, reference_scores
from recognizer.config.models import LabelFile, ModelConfig
from recognizer.config.schema import EngineSettings
from recognizer.engine.backends.prepared import needs_preparation
from recognizer.errors import ConfigError, ModelLoadError
from recognizer.models.hubs import IMAGENET_LABELS, resolve_hub
from recognizer.models.label_files import read_labels
from recognizer.models.loading import detect_format, load_model, resolve_source
from recognizer.models.preprocessing import Preprocessing
from recognizer.models.spec import configured_preprocessing
from support import PHOTOS

WANWU = "damo/cv_resnest101_general_recognition"
NAMES = ["cat", "dog", "bird"]
LIBRARIES = ("modelscope", "huggingface_hub")


@pytest.fixture(autouse=True)
def caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each hub's cache in tmp_path, both hubs offline, and neither library importable: a
    model found in its cache must need neither."""
    for variable in ("HF_HOME", "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "modelscope"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MODELSCOPE_OFFLINE", "1")
    for library in LIBRARIES:
        monkeypatch.setitem(sys.modules, library, None)


def config(path: str, **keys: Any) -> ModelConfig:
    return ModelConfig.from_keys({"path": path, **keys}, where="test")


def modelscope_directory(directory: Path, revision: str | None = None) -> Path:
    """A ModelScope classification directory (weights need not be real to be found);
    `revision` is written to .mv as modelscope's snapshot_download writes it."""
    directory.mkdir(parents=True)
    (directory / "pytorch_model.pt").write_bytes(b"weights")
    (directory / "meta_info.txt").write_text("00000\t猫\n", encoding="utf-8")
    if revision is not None:
        (directory / ".mv").write_text(f"Revision:{revision},CreatedAt:1668402344")
    return directory


def hf_snapshot(
    repo: str, files: dict[str, bytes], *, refs: tuple[str, ...] = ("main",), commit: str = ""
) -> Path:
    """A snapshot as huggingface_hub lays it out: blobs by digest, the snapshot's files
    linked to them, and each ref holding the commit hash."""
    folder = Path(os.environ["HF_HUB_CACHE"]) / f"models--{repo.replace('/', '--')}"
    commit = commit or hashlib.sha1(repr(sorted(files.items())).encode()).hexdigest()
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        blob = folder / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(exist_ok=True)
        blob.write_bytes(data)
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))
    for ref in refs:
        (folder / "refs").mkdir(exist_ok=True)
        (folder / "refs" / ref).write_text(commit)
    return snapshot


def timm_files(weights: bytes = b"weights", **described: Any) -> dict[str, bytes]:
    """config.json as timm's push_to_hub writes it, and a weights file."""
    pretrained = {
        "input_size": [3, 224, 224],
        "crop_pct": 0.95,
        "crop_mode": "center",
        "interpolation": "bicubic",
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
        "num_classes": 3,
    }
    hf_config = {
        "architecture": "resnet18",
        "num_classes": 3,
        "num_features": 512,
        "label_names": NAMES,
        "pretrained_cfg": pretrained,
        **described,
    }
    return {"config.json": json.dumps(hf_config).encode(), "model.safetensors": weights}


def library(name: str, snapshot_download: Callable[..., str]) -> types.ModuleType:
    """A stand-in for a hub's library, importable and with its snapshot_download."""
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.snapshot_download = snapshot_download  # type: ignore[attr-defined]
    return module


def never_called(*args: object, **kwargs: object) -> str:
    raise AssertionError("downloaded while offline")


@pytest.mark.parametrize(
    ("variable", "model_id", "relative"),
    [
        ("MODELSCOPE_CACHE", WANWU, f"models/{WANWU.replace('/', '--')}/snapshots/master"),
        ("MODELSCOPE_CACHE", WANWU, f"models/{WANWU}"),
        ("HOME", WANWU, f".cache/modelscope/hub/models/{WANWU}"),
        ("HOME", WANWU, f".cache/modelscope/hub/{WANWU}"),
        ("MODELSCOPE_CACHE", WANWU, WANWU),
        ("MODELSCOPE_CACHE", "damo/cv_resnest101.v2", "models/damo/cv_resnest101___v2"),
    ],
)
def test_a_modelscope_id_resolves_from_each_layout_of_modelscopes_cache(
    variable: str, model_id: str, relative: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if variable == "HOME":  # the default cache, ~/.cache/modelscope/hub
        monkeypatch.delenv("MODELSCOPE_CACHE")
        monkeypatch.setenv("HOME", str(tmp_path / "home"))
    root = Path(os.path.expanduser(os.environ.get("MODELSCOPE_CACHE", "~")))
    directory = modelscope_directory(root / relative)
    resolved = resolve_hub(config(f"modelscope:{model_id}"))
    assert (resolved.path, resolved.format) == (str(directory), "modelscope")
    assert resolved.name == model_id.split("/")[1]
    assert detect_format(config(f"modelscope:{model_id}")) == "modelscope"


def test_a_modelscope_revision_is_served_only_where_the_cache_records_it(tmp_path: Path) -> None:
    older = modelscope_directory(tmp_path / "modelscope" / "models" / WANWU, revision="v1.0.1")
    assert resolve_hub(config(f"modelscope:{WANWU}@v1.0.1")).path == str(older)
    with pytest.raises(ModelLoadError, match=rf"{older} holds revision v1\.0\.1, not v1\.0\.2"):
        resolve_hub(config(f"modelscope:{WANWU}@v1.0.2"))
    (older / ".mv").unlink()
    assert resolve_hub(config(f"modelscope:{WANWU}")).path == str(older)  # any revision
    with pytest.raises(ModelLoadError, match=r"a revision it does not record \(no \.mv file\)"):
        resolve_hub(config(f"modelscope:{WANWU}@v1.0.1"))
    # The newest layout names each snapshot after its revision.
    snapshots = tmp_path / "modelscope" / "models" / WANWU.replace("/", "--") / "snapshots"
    newest = modelscope_directory(snapshots / "v1.0.1")
    assert resolve_hub(config(f"modelscope:{WANWU}@v1.0.1")).path == str(newest)


def test_an_hf_hub_id_resolves_to_a_state_dict_described_by_timms_config() -> None:
    snapshot = hf_snapshot("timm/resnet18.tiny", timm_files())
    resolved = resolve_hub(config("hf-hub:timm/resnet18.tiny"))
    assert resolved.path == str(snapshot / "model.safetensors")
    assert (resolved.name, resolved.format, resolved.architecture) == (
        "resnet18.tiny",
        "state_dict",
        "timm/resnet18",
    )
    preprocessing = configured_preprocessing(resolved, Preprocessing())
    assert preprocessing == Preprocessing(
        resize=235,  # timm's floor(224 / 0.95)
        crop=224,
        interpolation="bicubic",
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
    )
    assert read_labels(resolved.labels, num_classes=3, model="m").names("en") == tuple(NAMES)


def test_an_hf_hub_revision_is_a_ref_or_a_commit() -> None:
    main = hf_snapshot("timm/resnet18.tiny", timm_files())
    tagged = hf_snapshot("timm/resnet18.tiny", timm_files(b"newer"), refs=("v1",))
    unreferenced = hf_snapshot("timm/resnet18.tiny", timm_files(b"other"), refs=())

    def resolved(model_id: str) -> str:
        return resolve_hub(config(model_id)).path

    assert resolved("hf-hub:timm/resnet18.tiny") == str(main / "model.safetensors")
    assert resolved("hf-hub:timm/resnet18.tiny@main") == str(main / "model.safetensors")
    assert resolved("hf-hub:timm/resnet18.tiny@v1") == str(tagged / "model.safetensors")
    commit = unreferenced.name
    assert resolved(f"hf-hub:timm/resnet18.tiny@{commit}") == str(
        unreferenced / "model.safetensors"
    )
    with pytest.raises(ModelLoadError, match=r"no .*models--timm--resnet18\.tiny/refs/v2;"):
        resolved("hf-hub:timm/resnet18.tiny@v2")


@pytest.mark.parametrize(
    ("model_id", "cache", "command", "variable"),
    [
        (
            f"modelscope:{WANWU}",
            "modelscope",
            f"modelscope download --model {WANWU}",
            "MODELSCOPE_CACHE",
        ),
        (
            "hf-hub:timm/resnet18.tiny@v1",
            "hf",
            "hf download timm/resnet18.tiny --revision v1",
            "HF_HUB_CACHE",
        ),
    ],
)
def test_a_model_missing_from_the_cache_is_refused_saying_where_and_how_to_get_it(
    model_id: str, cache: str, command: str, variable: str, tmp_path: Path
) -> None:
    with pytest.raises(ModelLoadError) as refused:
        resolve_hub(config(model_id))
    message = str(refused.value)
    assert message.startswith(
        f"model {model_id.split('/')[1].split('@')[0]!r}: {model_id} is not in "
    )
    assert f"cache {tmp_path / cache}: " in message
    library_name = "modelscope" if cache == "modelscope" else "huggingface_hub"
    assert f"cannot be downloaded here ({library_name} is not installed)" in message
    assert "pip install '.[hub]'" in message and f"({command})" in message
    assert f"set {variable} to a cache that has it" in message


@pytest.mark.parametrize(
    ("model_id", "name", "switch"),
    [
        (f"modelscope:{WANWU}", "modelscope", "MODELSCOPE_OFFLINE"),
        ("hf-hub:timm/resnet18.tiny", "huggingface_hub", "HF_HUB_OFFLINE"),
    ],
)
def test_the_hubs_offline_switch_stops_a_download_its_library_could_make(
    model_id: str, name: str, switch: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, name, library(name, never_called))
    with pytest.raises(ModelLoadError, match=rf"cannot be downloaded here \({switch} is set\)"):
        resolve_hub(config(model_id))


def test_a_missing_model_is_downloaded_into_the_cache_by_its_hubs_library(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[str, str | None, object]] = []

    def hf_download(repo: str, *, revision: str | None, allow_patterns: list[str]) -> str:
        asked.append((repo, revision, allow_patterns))
        return str(hf_snapshot(repo, timm_files()))

    def modelscope_download(model_id: str, *, revision: str | None) -> str:
        asked.append((model_id, revision, None))
        return str(modelscope_directory(tmp_path / "modelscope" / "models" / model_id))

    monkeypatch.setitem(sys.modules, "huggingface_hub", library("huggingface_hub", hf_download))
    monkeypatch.setitem(sys.modules, "modelscope", library("modelscope", modelscope_download))
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("MODELSCOPE_OFFLINE")
    hf = resolve_hub(config("hf-hub:timm/resnet18.tiny"))
    assert hf.path.endswith("/model.safetensors") and hf.architecture == "timm/resnet18"
    ms = resolve_hub(config(f"modelscope:{WANWU}@v1.0.1"))
    assert ms.path == str(tmp_path / "modelscope" / "models" / WANWU)
    assert asked == [
        ("timm/resnet18.tiny", None, ["config.json", "model.safetensors"]),
        (WANWU, "v1.0.1", None),
    ]


def test_sha256_pins_the_file_the_hub_id_resolves_to() -> None:
    snapshot = hf_snapshot("timm/resnet18.tiny", timm_files(b"weights"))
    digest = hashlib.sha256(b"weights").hexdigest()
    resolved, source_format = resolve_source(config("hf-hub:timm/resnet18.tiny", sha256=digest))
    assert (resolved.path, source_format) == (str(snapshot / "model.safetensors"), "state_dict")
    with pytest.raises(
        ModelLoadError, match=rf"{snapshot / 'model.safetensors'} has SHA-256 {digest}, not"
    ):
        resolve_source(config("hf-hub:timm/resnet18.tiny", sha256="0" * 64))


def test_the_model_cache_looks_for_the_file_a_hub_id_resolves_to(tmp_path: Path) -> None:
    hf_snapshot("timm/resnet18.tiny", timm_files())
    settings = EngineSettings(model_cache_dir=tmp_path / "prepared")
    assert needs_preparation(config("hf-hub:timm/resnet18.tiny"), settings, device="cpu")


def test_the_configs_own_keys_win_over_the_hubs(tmp_path: Path) -> None:
    hf_snapshot("timm/resnet18.tiny", timm_files(num_classes=5, label_names=None))
    labels = tmp_path / "labels_zh.txt"
    labels.write_text("一\n二\n三\n四\n五\n", encoding="utf-8")
    resolved = resolve_hub(
        config(
            "hf-hub:timm/resnet18.tiny",
            name="tiny",
            architecture="timm/resnet34",
            crop=160,
            interpolation="bilinear",
            labels=str(labels),
        )
    )
    assert (resolved.name, resolved.architecture, resolved.crop, resolved.interpolation) == (
        "tiny",
        "timm/resnet34",
        160,
        "bilinear",
    )
    assert resolved.resize == 168  # floor(160 / 0.95): the hub's crop_pct, the config's crop
    assert resolved.mean == (0.5, 0.5, 0.5) and resolved.labels == (LabelFile(labels),)
    # Without the labels, a model whose config.json names no class is refused.
    with pytest.raises(ModelLoadError, match=r"names none of the model's 5 classes"):
        resolve_hub(config("hf-hub:timm/resnet18.tiny"))


@pytest.mark.parametrize("label_names", [None, [f"n{index:08d}" for index in range(1000)]])
def test_imagenet_classes_named_by_id_or_not_at_all_get_the_bundled_labels(
    label_names: list[str] | None,
) -> None:
    hf_snapshot("timm/resnet18.in1k", timm_files(num_classes=1000, label_names=label_names))
    resolved = resolve_hub(config("hf-hub:timm/resnet18.in1k"))
    assert resolved.labels == (LabelFile(IMAGENET_LABELS),)
    labels = read_labels(resolved.labels, num_classes=1000, model="m")
    assert labels.languages == ("zh", "en") and labels.names("en")[0] == "tench"


def test_label_descriptions_name_the_classes_timms_label_names_identify() -> None:
    descriptions = {"/m/01": "cat", "/m/02": "dog"}
    hf_snapshot(
        "timm/resnet18.oi",
        timm_files(
            num_classes=3,
            label_names={"0": "/m/01", "1": "/m/02", "2": "/m/03"},
            label_descriptions=descriptions,
        ),
    )
    resolved = resolve_hub(config("hf-hub:timm/resnet18.oi"))
    names = read_labels(resolved.labels, num_classes=3, model="m").names("en")
    assert names == ("cat", "dog", "/m/03")


@pytest.mark.parametrize(
    "path", ["hf-hub:resnet18", "modelscope:damo/", "hf-hub:timm/x@../../etc", "hf-hub:../x/y"]
)
def test_a_malformed_hub_id_is_a_config_error(path: str) -> None:
    with pytest.raises(ConfigError, match=r"is not a hub id: write .*:OWNER/NAME"):
        resolve_hub(ModelConfig(path=path, name="m"))


def test_a_timm_model_from_the_hf_cache_loads_and_classifies(timm_safetensors: Built) -> None:
    names = ["cat", "dog", "bird", "fish", "horse"]
    hf_snapshot(
        "timm/test_convnext.r160",
        timm_files(
            timm_safetensors.path.read_bytes(),
            architecture="test_convnext",
            num_classes=5,
            label_names=names,
            pretrained_cfg={"input_size": [3, 160, 160], "interpolation": "bilinear"},
        ),
    )
    model = load_model(config("hf-hub:timm/test_convnext.r160"))
    spec = model.spec
    assert (spec.name, spec.architecture, spec.source_format) == (
        "test_convnext.r160",
        "timm/test_convnext",
        "state_dict",
    )
    assert spec.preprocessing == Preprocessing(resize=182, crop=160)  # timm's crop_pct 0.875
    assert spec.labels.names("en") == tuple(names)
    photos = [PHOTOS["cat"].read_bytes(), PHOTOS["coffee"].read_bytes()]
    served = reference_scores(model.network, spec.preprocessing, photos)
    expected = reference_scores(timm_safetensors.network, spec.preprocessing, photos)
    np.testing.assert_allclose(served, expected, atol=1e-5)
    top = [spec.labels.names("en")[index] for index in served.argmax(axis=1)]
    assert top == [names[index] for index in expected.argmax(axis=1)]


def test_wanwu_from_modelscopes_cache_loads_and_classifies(
    modelscope_model: Built, tmp_path: Path
) -> None:
    cached = tmp_path / "modelscope" / "models" / WANWU
    cached.parent.mkdir(parents=True)
    cached.symlink_to(modelscope_model.path, target_is_directory=True)
    model = load_model(config(f"modelscope:{WANWU}"))
    spec = model.spec
    assert (spec.name, spec.architecture, spec.source_format) == (
        "cv_resnest101_general_recognition",
        "timm/resnest101e",
        "modelscope",
    )
    assert spec.labels.names("zh") == tuple(GENERAL_NAMES)
    photo = [PHOTOS["cat"].read_bytes()]
    served = reference_scores(model.network, spec.preprocessing, photo)
    expected = reference_scores(modelscope_model.network, spec.preprocessing, photo)
    np.testing.assert_allclose(served, expected, atol=1e-5)
