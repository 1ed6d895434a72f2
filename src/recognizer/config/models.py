"""Which model to serve and how, as a deployment says it: a --model flag or a TOML table.

Both spell the same keys, declared once as the fields of ModelConfig:

    path            the model: a file, a directory, the name of a built-in model, or a hub
                    id, modelscope:OWNER/NAME or hf-hub:OWNER/NAME, with an optional
                    @REVISION (models/hubs.py) (required)
    name            the name requests use (default: the file or directory name, without
                    the suffix; a hub id's NAME)
    format          auto (default), builtin, modelscope, torchscript, state_dict or onnx;
                    TorchScript is code and loads only when named (or --allow-code-models)
    sha256          the file's SHA-256 (a ModelScope directory: its pytorch_model.pt's),
                    checked before anything is loaded
    architecture    the torchvision or timm network a state dict is for (resnet50,
                    timm/resnet50, torchvision/resnet50)
    labels          a label file; labels.<lang> names one per language
    resize, crop, interpolation, mean, std, channel_order    preprocessing overrides
    activation      softmax (single-label) or sigmoid (multi-label)
    max_batch_size  the largest batch this model is given
    version         the version this file is (a whole number from 1; default: counted
                    up from 1 at each reload)
    versions        a model repository's version policy: latest (the default), latest:N,
                    all, or the versions to serve (1:3); a repository is a directory of
                    numbered version directories, <path>/<version>/<the model's file>

A flag is `SOURCE`, `NAME=SOURCE` or `key=value,key=value,...`, where list values are
colon-separated (mean=0.485:0.456:0.406). A TOML [[models]] table uses TOML values, and
its relative paths are taken from the config file's directory.

A model file may have a sidecar: a TOML file of the same name (model.pt: model.toml) with
the keys that describe the file (format, architecture, labels, preprocessing, activation,
max_batch_size). Values given with the model win over the sidecar's.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from recognizer.config.validation import config_error, refuse_bools
from recognizer.errors import ConfigError

Interpolation = Literal["bilinear", "bicubic", "nearest"]
ChannelOrder = Literal["RGB", "BGR"]
Activation = Literal["softmax", "sigmoid"]
SourceFormat = Literal["auto", "builtin", "modelscope", "torchscript", "state_dict", "onnx"]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


def _case(convert: str) -> BeforeValidator:
    """Accept a choice in any case: "BGR" and "bgr", "Bilinear" and "bilinear"."""
    return BeforeValidator(lambda v: getattr(v.strip(), convert)() if isinstance(v, str) else v)


def _per_channel(value: object) -> object:
    """Three values, one per colour channel: a TOML list, or "a:b:c" in a flag."""
    items = value.split(":") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or len(items) != 3:
        raise ValueError(f"expected three numbers, one per channel (a:b:c), not {value!r}")
    return tuple(items)


Channels = Annotated[tuple[float, float, float], BeforeValidator(_per_channel)]


def _hex_digest(value: object) -> object:
    """A SHA-256 as `sha256sum` prints it: 64 hex digits, in either case."""
    if isinstance(value, str):
        digest = value.strip().lower()
        if len(digest) != 64 or digest.strip("0123456789abcdef"):
            raise ValueError(f"sha256 is 64 hex digits, as sha256sum prints it, not {value!r}")
        return digest
    return value


Sha256 = Annotated[str, BeforeValidator(_hex_digest)]


@dataclass(frozen=True)
class LabelFile:
    """A label file and the language of its names; None reads that from the file."""

    path: Path
    language: str | None = None


class ModelConfig(BaseModel):
    """One model to serve. Unset (None) fields are left to the model's files and format.

    `path` is as written; `base_dir` (not a key) is where a relative path starts from.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_dir: Path = Field(Path(), exclude=True)  # first: the label files' validator reads it
    path: Text = Field(description="the model's file or directory, or a built-in model's name")
    name: Text = Field("", description="the name requests use")
    format: SourceFormat = Field("auto", description="how the files are read")
    sha256: Sha256 | None = Field(None, description="the file's SHA-256, checked first")
    architecture: Text | None = Field(None, description="the network a state dict is for")
    labels: tuple[LabelFile, ...] = Field((), description="label files, by language")
    resize: int | None = Field(None, ge=1, description="the shorter side is resized to this")
    crop: int | None = Field(None, ge=1, description="then the centre square of this side")
    interpolation: Annotated[Interpolation | None, _case("lower")] = None
    mean: Channels | None = Field(None, description="per-channel mean, 0-1 scale")
    std: Channels | None = Field(None, description="per-channel standard deviation")
    channel_order: Annotated[ChannelOrder | None, _case("upper")] = None
    activation: Annotated[Activation | None, _case("lower")] = None
    max_batch_size: int | None = Field(None, ge=1, description="this model's largest batch")
    version: int | None = Field(None, ge=1, description="the version this file is")
    versions: Text | None = Field(None, description="a model repository's version policy")

    @model_validator(mode="before")
    @classmethod
    def _named_after_its_file(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("name") and isinstance(data.get("path"), str):
            path = data["path"].strip()
            if is_hub_id(path):
                return {**data, "name": path.split("@")[0].split("/")[-1]}
            location = Path(data.get("base_dir", Path())) / Path(path).expanduser()
            data = {**data, "name": location.name if location.is_dir() else location.stem}
        return data

    @field_validator("name")
    @classmethod
    def _one_word(cls, name: str) -> str:
        if any(char.isspace() for char in name):
            raise ValueError(f"model name {name!r} has spaces; name the model with name=NAME")
        if ":" in name:  # health checks name a version NAME:VERSION
            raise ValueError(f"model name {name!r} has a ':'; name the model with name=NAME")
        return name

    @field_validator("versions")
    @classmethod
    def _version_policy(cls, policy: str | None) -> str | None:
        if policy is None or VERSION_POLICY.fullmatch(policy.strip().lower()):
            return policy if policy is None else policy.strip().lower()
        raise ValueError(
            f"versions is latest, latest:N, all or the versions to serve (1:3), not {policy!r}"
        )

    @field_validator("labels", mode="before")
    @classmethod
    def _label_files(cls, value: object, info: ValidationInfo) -> object:
        """`labels = FILE` or `labels.<lang> = FILE` (a TOML table, or repeated flag keys)."""
        base_dir = Path(info.data.get("base_dir", Path()))
        if isinstance(value, str):
            value = {"": value}
        if not isinstance(value, Mapping):
            return value
        return tuple(
            LabelFile(base_dir / Path(str(path).strip()).expanduser(), language or None)
            for language, path in value.items()
        )

    @property
    def location(self) -> Path:
        """Where the model's file or directory is (a hub id is first resolved to one)."""
        return self.base_dir / Path(self.path).expanduser()

    @property
    def hub_id(self) -> bool:
        """Whether `path` names a model by its hub id rather than by a file."""
        return is_hub_id(self.path)

    @classmethod
    def from_keys(
        cls, keys: Mapping[str, Any], *, base_dir: Path = Path(), where: str
    ) -> ModelConfig:
        """A model from its keys (flag text or TOML values); errors name `where` and the key."""
        unknown = [key for key in keys if key not in KEYS]
        if unknown:
            raise ConfigError(
                f"{where}: unknown key {unknown[0]!r}; the keys are {', '.join(KEYS)}"
            )
        if "path" not in keys:
            raise ConfigError(f"{where} needs path=FILE: the model's file or directory")
        refuse_bools(cls, keys, lambda key: f"{where}: {key}")
        try:
            return cls.model_validate({**keys, "base_dir": base_dir})
        except ValidationError as error:
            raise config_error(error, lambda key: f"{where}: {key}") from None

    def with_sidecar(self) -> ModelConfig:
        """This config, with unset fields taken from the TOML file beside the model, if any."""
        sidecar = self.location.with_suffix(".toml")
        if not self.location.is_file() or not sidecar.is_file():
            return self
        try:
            table = tomllib.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"cannot read {sidecar}: {error}") from error
        where = str(sidecar)
        unknown = [key for key in table if key not in SIDECAR_KEYS]
        if unknown:
            raise ConfigError(
                f"{where}: unknown key {unknown[0]!r}; the keys are {', '.join(SIDECAR_KEYS)}"
            )
        described = ModelConfig.from_keys(
            {"path": self.path, **table}, base_dir=sidecar.parent, where=where
        )
        unset = {
            key: getattr(described, key)
            for key in table
            if getattr(self, key) in (None, (), "auto") and key in SIDECAR_KEYS
        }
        return self.model_copy(update=unset)


HUB_PREFIXES = ("modelscope:", "hf-hub:")
VERSION_POLICY = re.compile(r"latest(:[1-9][0-9]*)?|all|[1-9][0-9]*(:[1-9][0-9]*)*")
PREPROCESSING_KEYS = ("resize", "crop", "interpolation", "mean", "std", "channel_order")
KEYS = tuple(name for name in ModelConfig.model_fields if name != "base_dir")
SIDECAR_KEYS = (
    "format",
    "architecture",
    "labels",
    *PREPROCESSING_KEYS,
    "activation",
    "max_batch_size",
)


def is_hub_id(path: str) -> bool:
    """Whether a model's path is a hub id (`modelscope:...`, `hf-hub:...`)."""
    return path.startswith(HUB_PREFIXES)


def parse_model_flag(text: str) -> ModelConfig:
    """A model from `--model SOURCE`, `--model NAME=SOURCE` or `--model key=value,...`."""
    text = text.strip()
    if "=" not in text:
        return ModelConfig.from_keys({"path": text}, where=f"--model {text!r}")
    where = f"--model {text!r}"
    head, source = (part.strip() for part in text.split("=", 1))
    if "," not in text and head not in KEYS and not head.startswith("labels."):
        return ModelConfig.from_keys({"name": head, "path": source}, where=where)
    keys: dict[str, Any] = {}
    languages: dict[str, str] = {}
    for item in text.split(","):
        key, equals, value = (part.strip() for part in item.partition("="))
        if not equals:
            raise ConfigError(f"{where}: {item!r} is not key=value")
        if key.startswith("labels."):
            languages[key.removeprefix("labels.")] = value
        elif key in keys:
            raise ConfigError(f"{where}: {key} is given twice")
        else:
            keys[key] = value
    if languages:
        if "labels" in keys:
            raise ConfigError(f"{where}: give labels=FILE or labels.<lang>=FILE, not both")
        keys["labels"] = languages
    return ModelConfig.from_keys(keys, where=where)
