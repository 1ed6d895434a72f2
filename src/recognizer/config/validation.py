"""Turn a pydantic validation error into a ConfigError that names where the bad value was."""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from recognizer.errors import ConfigError


def config_error(error: ValidationError, where: Callable[[str], str]) -> ConfigError:
    """The first problem, as "WHERE: what is wrong (got VALUE)"; `where(field)` names the
    field's source: its flag, environment variable, or file and key."""
    problem = error.errors()[0]
    field = str(problem["loc"][0]) if problem["loc"] else ""
    message = str(problem["msg"]).removeprefix("Value error, ")
    message = message[:1].lower() + message[1:]
    if problem["type"] not in ("value_error", "missing", "extra_forbidden"):
        message += f" (got {problem['input']!r})"
    return ConfigError(f"{where(field)}: {message}" if field else message)


def refuse_bools(
    model: type[BaseModel], values: Mapping[str, Any], where: Callable[[str], str]
) -> None:
    """A TOML true or false is not a number: pydantic would take it for 1 or 0."""
    for key, value in values.items():
        field = model.model_fields.get(key)
        if isinstance(value, bool) and field is not None and not _admits_bool(field.annotation):
            raise ConfigError(f"{where(key)}: expected a number or text, not {str(value).lower()}")


def _admits_bool(annotation: Any) -> bool:
    if annotation is bool:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, typing.Annotated):
        return any(_admits_bool(arg) for arg in typing.get_args(annotation))
    return False
