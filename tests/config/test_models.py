"""Model configs from --model flags, [[models]] tables and sidecar files, and their errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from recognizer.config.models import LabelFile, ModelConfig, parse_model_flag
from recognizer.errors import ConfigError


def test_a_bare_source_names_the_model_after_it(tmp_path: Path) -> None:
    assert parse_model_flag("efficientnet-lite0") == ModelConfig(
        path="efficientnet-lite0", name="efficientnet-lite0"
    )
    assert parse_model_flag("models/seed/model.pt").name == "model"
    directory = tmp_path / "cv_resnest101_general_recognition"
    directory.mkdir()
    assert parse_model_flag(f"{directory}/").name == "cv_resnest101_general_recognition"


def test_name_equals_source() -> None:
    config = parse_model_flag("万物=/models/cv_resnest101_general_recognition")
    assert (config.name, config.path) == ("万物", "/models/cv_resnest101_general_recognition")


def test_key_value_flags_set_every_key() -> None:
    config = parse_model_flag(
        "name=seed,path=model.pt,labels.zh=labels_zh.txt,labels.en=labels_en.txt,resize=256,"
        "crop=224,mean=0.485:0.456:0.406,std=0.229:0.224:0.225,channel_order=bgr,"
        "interpolation=bicubic,activation=sigmoid,max_batch_size=16,format=torchscript"
    )
    assert config == ModelConfig(
        path="model.pt",
        name="seed",
        format="torchscript",
        labels=(
            LabelFile(Path("labels_zh.txt"), "zh"),
            LabelFile(Path("labels_en.txt"), "en"),
        ),
        resize=256,
        crop=224,
        interpolation="bicubic",
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        channel_order="BGR",
        activation="sigmoid",
        max_batch_size=16,
    )


def test_a_state_dict_flag_names_its_architecture() -> None:
    config = parse_model_flag("name=r50,path=r50.safetensors,architecture=resnet50,labels=l.tsv")
    assert (config.name, config.architecture, config.labels) == (
        "r50",
        "resnet50",
        (LabelFile(Path("l.tsv")),),
    )


TOML = """
[[models]]
name = "seed"
path = "seed/model.pt"
labels.zh = "seed/labels_zh.txt"
mean = [0.5, 0.5, 0.5]
crop = 200
channel_order = "BGR"
max_batch_size = 4

[[models]]
path = "/abs/r50.pth"
architecture = "timm/resnet50"
labels = "/abs/labels.tsv"
"""


def test_toml_tables_use_the_same_keys_and_resolve_paths_from_the_file(tmp_path: Path) -> None:
    tables = tomllib.loads(TOML)["models"]
    seed, r50 = (
        ModelConfig.from_keys(table, base_dir=tmp_path, where="[[models]]") for table in tables
    )
    assert seed.location == tmp_path / "seed" / "model.pt"
    assert seed.labels == (LabelFile(tmp_path / "seed" / "labels_zh.txt", "zh"),)
    assert (seed.mean, seed.crop, seed.channel_order, seed.max_batch_size) == (
        (0.5, 0.5, 0.5),
        200,
        "BGR",
        4,
    )
    assert (r50.name, r50.location, r50.labels) == (
        "r50",
        Path("/abs/r50.pth"),
        (LabelFile(Path("/abs/labels.tsv")),),
    )


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("name=x,path=m.pt,colour=red", "unknown key 'colour'; the keys are path, name, format"),
        ("name=x,crop=224", "needs path=FILE"),
        ("path=m.pt,crop=big", "crop: input should be a valid integer"),
        ("path=m.pt,crop=0", "crop: input should be greater than or equal to 1 (got '0')"),
        ("path=m.pt,mean=0.5:0.5", "mean: expected three numbers, one per channel"),
        ("path=m.pt,mean=a:b:c", "mean: input should be a valid number"),
        ("path=m.pt,activation=relu", "activation: input should be 'softmax' or 'sigmoid'"),
        ("path=m.pt,channel_order=RGBA", "channel_order: input should be 'RGB' or 'BGR'"),
        ("path=m.pt,format=keras", "format: input should be 'auto', 'builtin', 'modelscope'"),
        ("path=m.pt,path=n.pt", "path is given twice"),
        ("path=m.pt,crop", "'crop' is not key=value"),
        ("path=m.pt,labels=a.txt,labels.en=b.txt", "not both"),
        ("name=my model,path=m.pt", "name: model name 'my model' has spaces"),
    ],
)
def test_bad_flags_say_what_is_wrong(flag: str, message: str) -> None:
    with pytest.raises(ConfigError, match="--model") as raised:
        parse_model_flag(flag)
    assert message in str(raised.value)


def test_bad_toml_tables_say_which_table() -> None:
    with pytest.raises(ConfigError, match=r"#2: unknown key 'size'"):
        ModelConfig.from_keys({"path": "m.pt", "size": 3}, where="#2")
    with pytest.raises(ConfigError, match="needs path=FILE"):
        ModelConfig.from_keys({"name": "x"}, where="#1")
    with pytest.raises(
        ConfigError, match="#1: max_batch_size: expected a number or text, not true"
    ):
        ModelConfig.from_keys({"path": "m.pt", "max_batch_size": True}, where="#1")


def test_the_sidecar_fills_what_the_config_leaves_unset(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"")
    (tmp_path / "model.toml").write_text(
        'crop = 128\nresize = 160\nchannel_order = "BGR"\nlabels.en = "names.txt"\n',
        encoding="utf-8",
    )
    config = parse_model_flag(f"path={tmp_path / 'model.pt'},crop=144").with_sidecar()
    assert (config.crop, config.resize, config.channel_order) == (144, 160, "BGR")
    assert config.labels == (LabelFile(tmp_path / "names.txt", "en"),)


def test_a_sidecar_may_name_the_format_but_not_override_it(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"")
    (tmp_path / "model.toml").write_text('format = "torchscript"\n', encoding="utf-8")
    assert ModelConfig(path=str(tmp_path / "model.pt")).with_sidecar().format == "torchscript"
    named = ModelConfig(path=str(tmp_path / "model.pt"), format="state_dict")
    assert named.with_sidecar().format == "state_dict"


def test_sha256_is_64_hex_digits_in_either_case() -> None:
    digest = "AB" * 32
    assert parse_model_flag(f"path=m.pt,sha256={digest}").sha256 == digest.lower()
    with pytest.raises(ConfigError, match="sha256 is 64 hex digits, as sha256sum prints it"):
        parse_model_flag("path=m.pt,sha256=abc")
    with pytest.raises(ConfigError, match="sha256 is 64 hex digits"):
        parse_model_flag(f"path=m.pt,sha256={'g' * 64}")


def test_a_sidecar_describes_the_file_not_how_it_is_served(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"")
    (tmp_path / "model.toml").write_text('name = "other"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"model\.toml: unknown key 'name'"):
        ModelConfig(path=str(tmp_path / "model.pt")).with_sidecar()
