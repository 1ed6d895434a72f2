"""Which model to serve and how, as a deployment says it: a --model flag or a TOML table.

Both spell the same keys:

    path            the model: a file, a directory or the name of a built-in model (required)
    name            the name requests use (default: the file or directory name, without
                    the suffix)
    format          auto (default), builtin, modelscope, torchscript, state_dict or onnx
    architecture    the torchvision or timm network a state dict is for (resnet50,
                    timm/resnet50, torchvision/resnet50)
    labels          a label file; labels.<lang> names one per language
    resize, crop, interpolation, mean, std, channel_order    preprocessing overrides
    activation      softmax (single-label) or sigmoid (multi-label)
    max_batch_size  the largest batch this model is given

A flag is `SOURCE`, `NAME=SOURCE` or `key=value,key=value,...`, where list values are
colon-separated (mean=0.485:0.456:0.406). A TOML [[models]] table uses TOML values, and
its relative paths are taken from the config file's directory.

A model file may have a sidecar: a TOML file of the same name (model.pt: model.toml) with
the keys that describe the file (architecture, labels, preprocessing, activation,
max_batch_size). Values given with the model win over the sidecar's.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from recognizer.errors import ConfigError
from recognizer.models.label_files import LabelFile
from recognizer.models.labels import Labels
from recognizer.models.preprocessing import (
    CHANNEL_ORDERS,
    INTERPOLATIONS,
    ChannelOrder,
    Interpolation,
    Preprocessing,
)
from recognizer.models.spec import ACTIVATIONS, Activation, ModelSpec

SourceFormat = Literal["auto", "builtin", "modelscope", "torchscript", "state_dict", "onnx"]
SOURCE_FORMATS: tuple[SourceFormat, ...] = (
    "auto",
    "builtin",
    "modelscope",
    "torchscript",
    "state_dict",
    "onnx",
)
PREPROCESSING_KEYS = ("resize", "crop", "interpolation", "mean", "std", "channel_order")
SIDECAR_KEYS = ("architecture", "labels", *PREPROCESSING_KEYS, "activation", "max_batch_size")
KEYS = ("name", "path", "format", *SIDECAR_KEYS)


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """One model to serve. Unset (None) fields are left to the model's files and format.

    `source` is as written; `base_dir` is where a relative path in it starts from.
    """

    source: str
    name: str = ""
    format: SourceFormat = "auto"
    architecture: str | None = None
    labels: tuple[LabelFile, ...] = ()
    resize: int | None = None
    crop: int | None = None
    interpolation: Interpolation | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    channel_order: ChannelOrder | None = None
    activation: Activation | None = None
    max_batch_size: int | None = None
    base_dir: Path = Path()

    def __post_init__(self) -> None:
        if not self.source:
            raise ConfigError("a model needs a path: a file, a directory or a built-in name")
        if not self.name:
            path = self.path
            object.__setattr__(self, "name", _name(path.name if path.is_dir() else path.stem))

    @property
    def path(self) -> Path:
        return self.base_dir / Path(self.source).expanduser()

    @classmethod
    def from_toml(
        cls, table: Mapping[str, Any], *, base_dir: Path = Path(), where: str = "[[models]]"
    ) -> ModelConfig:
        """A model from a [[models]] table; relative paths start from `base_dir`.

        `where` names the table in error messages.
        """
        values = _fields(table, KEYS, base_dir, where=where)
        if "source" not in values:
            raise ConfigError(f"{where} needs a path: the model's file or directory")
        return cls(**values, base_dir=base_dir)

    def with_sidecar(self) -> ModelConfig:
        """This config, with unset fields taken from the TOML file beside the model, if any."""
        sidecar = self.path.with_suffix(".toml")
        if not self.path.is_file() or not sidecar.is_file():
            return self
        try:
            table = tomllib.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
            raise ConfigError(f"cannot read {sidecar}: {error}") from error
        values = _fields(table, SIDECAR_KEYS, sidecar.parent, where=str(sidecar))
        unset = {key: value for key, value in values.items() if getattr(self, key) in (None, ())}
        return dataclasses.replace(self, **unset)

    def preprocessing_over(self, defaults: Preprocessing) -> Preprocessing:
        """The format's or file's preprocessing with this config's overrides on top."""
        overrides = {key: getattr(self, key) for key in PREPROCESSING_KEYS}
        try:
            return dataclasses.replace(
                defaults, **{key: value for key, value in overrides.items() if value is not None}
            )
        except ValueError as error:
            raise ConfigError(f"model {self.name!r}: {error}") from error

    def spec(
        self,
        *,
        architecture: str,
        source_format: str,
        labels: Labels,
        preprocessing: Preprocessing,
        max_batch_size: int | None = None,
    ) -> ModelSpec:
        """The spec of a model loaded for this config, from what the loader found.

        `preprocessing` already has the overrides (preprocessing_over); the batch limit is
        the smaller of the model's own (a fixed ONNX batch, say) and the config's.
        """
        limits = [limit for limit in (max_batch_size, self.max_batch_size) if limit is not None]
        return ModelSpec(
            name=self.name,
            architecture=architecture,
            source_format=source_format,
            labels=labels,
            preprocessing=preprocessing,
            activation=self.activation or "softmax",
            max_batch_size=min(limits, default=None),
        )


def parse_model_flag(text: str) -> ModelConfig:
    """A model from `--model SOURCE`, `--model NAME=SOURCE` or `--model key=value,...`."""
    text = text.strip()
    if "=" not in text:
        return ModelConfig(source=text)
    where = f"--model {text!r}"
    head, source = (part.strip() for part in text.split("=", 1))
    if "," not in text and head not in KEYS and not head.startswith("labels."):
        return ModelConfig(**_fields({"name": head, "path": source}, KEYS, Path(), where=where))
    values: dict[str, Any] = {}
    languages: dict[str, str] = {}
    for item in text.split(","):
        key, equals, value = (part.strip() for part in item.partition("="))
        if not equals:
            raise ConfigError(f"{where}: {item!r} is not key=value")
        if key.startswith("labels."):
            languages[key.removeprefix("labels.")] = value
        elif key in values:
            raise ConfigError(f"{where}: {key} is given twice")
        else:
            values[key] = value
    if languages:
        if "labels" in values:
            raise ConfigError(f"{where}: give labels=FILE or labels.<lang>=FILE, not both")
        values["labels"] = languages
    fields = _fields(values, KEYS, Path(), where=where)
    if "source" not in fields:
        raise ConfigError(f"{where} needs path=FILE: the model's file or directory")
    return ModelConfig(**fields)


def _fields(
    values: Mapping[str, Any], keys: tuple[str, ...], base_dir: Path, *, where: str
) -> dict[str, Any]:
    """Dataclass fields from flag strings or TOML values, checked; errors say `where`."""
    fields: dict[str, Any] = {}
    for key, value in values.items():
        if key not in keys:
            raise ConfigError(f"{where}: unknown key {key!r}; the keys are {', '.join(keys)}")
        try:
            if key == "labels":
                fields["labels"] = _labels(value, base_dir)
            else:
                fields["source" if key == "path" else key] = _PARSERS[key](value)
        except (TypeError, ValueError, ConfigError) as error:
            raise ConfigError(f"{where}: {key}: {error}") from error
    return fields


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected text, not {value!r}")
    return value.strip()


def _name(value: object) -> str:
    text = _text(value)
    if any(char.isspace() for char in text):
        raise ConfigError(f"model name {text!r} has spaces; name the model with name=NAME")
    return text


def _choice(choices: tuple[str, ...], *, upper: bool = False) -> Callable[[object], str]:
    def parse(value: object) -> str:
        text = _text(value)
        text = text.upper() if upper else text.lower()
        if text not in choices:
            raise ValueError(f"{value!r} is not one of {', '.join(choices)}")
        return text

    return parse


def _positive_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"expected a whole number, not {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"expected a whole number, not {value!r}") from None
    if number < 1:
        raise ValueError(f"must be at least 1, not {number}")
    return number


def _three_floats(value: object) -> tuple[float, float, float]:
    items = value.split(":") if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or len(items) != 3:
        raise ValueError(f"expected three numbers, one per channel (a:b:c), not {value!r}")
    try:
        first, second, third = (float(item) for item in items)
    except (TypeError, ValueError):
        raise ValueError(f"expected three numbers, not {value!r}") from None
    return first, second, third


def _labels(value: object, base_dir: Path) -> tuple[LabelFile, ...]:
    """`labels = FILE` or `labels.<lang> = FILE` (a TOML table, or repeated flag keys)."""
    if isinstance(value, Mapping):
        return tuple(
            LabelFile(base_dir / Path(_text(path)).expanduser(), _text(language))
            for language, path in value.items()
        )
    return (LabelFile(base_dir / Path(_text(value)).expanduser()),)


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "name": _name,
    "path": _text,
    "format": _choice(SOURCE_FORMATS),
    "architecture": _text,
    "resize": _positive_int,
    "crop": _positive_int,
    "interpolation": _choice(INTERPOLATIONS),
    "mean": _three_floats,
    "std": _three_floats,
    "channel_order": _choice(CHANNEL_ORDERS, upper=True),
    "activation": _choice(ACTIVATIONS),
    "max_batch_size": _positive_int,
}
