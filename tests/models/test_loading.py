"""Loading any model source: the format told from the files, and start-up errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from model_files import SEED, Built
from recognizer.config.models import ModelConfig, parse_model_flag
from recognizer.errors import ConfigError, ModelLoadError
from recognizer.models import loading
from recognizer.models.loading import detect_format, load_model
from recognizer.models.spec import LoadedModel


def test_formats_are_told_from_the_files(
    modelscope_model: Built,
    torchscript_model: Built,
    torchvision_state_dict: Built,
    timm_safetensors: Built,
    onnx_model: Built,
) -> None:
    def detected(built: Built, allow_code: bool = False) -> str:
        return detect_format(ModelConfig(path=str(built.path)), allow_code=allow_code)

    assert detect_format(ModelConfig(path="efficientnet-lite0")) == "builtin"
    assert detected(modelscope_model) == "modelscope"
    assert detected(torchscript_model, allow_code=True) == "torchscript"
    assert detected(torchvision_state_dict) == "state_dict"
    assert detected(timm_safetensors) == "state_dict"
    assert detected(onnx_model) == "onnx"


def test_the_sidecar_beside_a_model_file_is_applied(torchscript_model: Built) -> None:
    config = parse_model_flag(f"name=seed,path={torchscript_model.path},format=torchscript")
    spec = load_model(config).spec
    assert (spec.name, spec.preprocessing) == ("seed", SEED)


def test_torchscript_with_an_innocent_suffix_is_refused_unless_named(
    torchscript_model: Built, tmp_path: Path
) -> None:
    innocent = tmp_path / "weights.bin"  # a state dict's suffix
    innocent.write_bytes(torchscript_model.path.read_bytes())
    for labels in torchscript_model.path.parent.glob("labels_*.txt"):
        (tmp_path / labels.name).write_bytes(labels.read_bytes())
    for path in (torchscript_model.path, innocent):
        with pytest.raises(
            ModelLoadError,
            match=rf"{path.name} is TorchScript: code, which runs when it is loaded, so it is"
            r" loaded only when its format is named: set format=torchscript .* or start the"
            r" server with --allow-code-models",
        ):
            load_model(ModelConfig(path=str(path), architecture="resnet18"))
    assert load_model(parse_model_flag(f"path={innocent},format=torchscript")).spec.num_classes == 6
    (tmp_path / "weights.toml").write_text('format = "torchscript"\n', encoding="utf-8")
    assert load_model(ModelConfig(path=str(innocent))).spec.source_format == "torchscript"
    allowed = load_model(ModelConfig(path=str(torchscript_model.path)), allow_code=True)
    assert allowed.spec.source_format == "torchscript"


def test_a_pinned_sha256_is_checked_before_loading(onnx_model: Built, tmp_path: Path) -> None:
    digest = hashlib.sha256(onnx_model.path.read_bytes()).hexdigest()
    assert load_model(parse_model_flag(f"path={onnx_model.path},sha256={digest}")).spec.name
    swapped = tmp_path / "vit.onnx"
    swapped.write_bytes(onnx_model.path.read_bytes() + b"\0")
    with pytest.raises(
        ModelLoadError,
        match=rf"model 'vit': {swapped} has SHA-256 [0-9a-f]{{64}}, not the {digest} that"
        " sha256= pins",
    ):
        load_model(parse_model_flag(f"path={swapped},sha256={digest}"))
    with pytest.raises(ConfigError, match="sha256 pins a model file, and efficientnet-lite0 is"):
        load_model(parse_model_flag(f"path=efficientnet-lite0,sha256={digest}"))


def test_a_modelscope_directory_pins_its_weights_file(modelscope_model: Built) -> None:
    weights = modelscope_model.path / "pytorch_model.pt"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    wrong = "0" * 64
    with pytest.raises(ModelLoadError, match=r"pytorch_model\.pt has SHA-256 " + digest):
        load_model(parse_model_flag(f"path={modelscope_model.path},sha256={wrong}"))


def test_the_builtin_model_takes_a_name_and_a_batch_limit() -> None:
    spec = load_model(parse_model_flag("name=lite,path=efficientnet-lite0,max_batch_size=2")).spec
    assert (spec.name, spec.source_format, spec.architecture) == (
        "lite",
        "builtin",
        "tf_efficientnet_lite0",
    )
    assert (spec.max_batch_size, spec.num_classes, spec.labels.languages) == (2, 1000, ("zh", "en"))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: "no-such-model", "unknown model 'no-such-model': no such file or directory"),
        (lambda root: root, "is a directory but not a ModelScope model"),
        (lambda root: root / "model.h5", "cannot tell the format of .*model.h5"),
        (lambda root: root / "model.pt", "is not TorchScript, so it is taken for a state dict"),
    ],
)
def test_sources_that_cannot_be_served_are_start_up_errors(
    tmp_path: Path, make: object, message: str
) -> None:
    (tmp_path / "model.h5").write_bytes(b"HDF")
    torch.save({"w": torch.zeros(1)}, tmp_path / "model.pt")
    source = str(make(tmp_path))  # type: ignore[operator]
    with pytest.raises((ModelLoadError, ConfigError), match=message):
        load_model(ModelConfig(path=source))


def test_a_named_format_is_trusted_and_a_missing_file_named(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"model 'gone': .*gone\.onnx does not exist"):
        load_model(parse_model_flag(f"path={tmp_path / 'gone.onnx'},format=onnx"))
    (tmp_path / "model.bin").write_bytes(b"junk")
    with pytest.raises(ModelLoadError, match="cannot load TorchScript model"):
        load_model(parse_model_flag(f"path={tmp_path / 'model.bin'},format=torchscript"))
    with pytest.raises(ModelLoadError, match="'nope' is not a built-in model"):
        load_model(parse_model_flag("path=nope,format=builtin"))


@pytest.mark.parametrize(
    "error",
    [
        MemoryError(),
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] DefaultCPUAllocator: can't allocate memory"
        ),
        torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 600.00 MiB"),
    ],
)
def test_running_out_of_memory_while_loading_is_explained(
    monkeypatch: pytest.MonkeyPatch, onnx_model: Built, error: BaseException
) -> None:
    def exhausted(config: ModelConfig) -> LoadedModel:
        raise error

    monkeypatch.setitem(loading.LOADERS, "onnx", exhausted)
    with pytest.raises(ModelLoadError, match="model 'vit' does not fit in memory while loading"):
        load_model(ModelConfig(path=str(onnx_model.path)))


def test_other_runtime_errors_are_not_taken_for_memory(
    monkeypatch: pytest.MonkeyPatch, onnx_model: Built
) -> None:
    def broken(config: ModelConfig) -> LoadedModel:
        raise RuntimeError("a bug")

    monkeypatch.setitem(loading.LOADERS, "onnx", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        load_model(ModelConfig(path=str(onnx_model.path)))
