"""Load the models a deployment names, failing fast with a message that says what to fix."""

from __future__ import annotations

from collections.abc import Callable

from recognizer.errors import ModelLoadError
from recognizer.models.efficientnet_lite0 import NAME as EFFICIENTNET_LITE0
from recognizer.models.efficientnet_lite0 import load_efficientnet_lite0
from recognizer.models.spec import LoadedModel

BUILTIN_MODELS: dict[str, Callable[[], LoadedModel]] = {
    EFFICIENTNET_LITE0: load_efficientnet_lite0,
}
DEFAULT_MODEL = EFFICIENTNET_LITE0


def load_model(source: str) -> LoadedModel:
    """Load a model by source: the name of a built-in model."""
    loader = BUILTIN_MODELS.get(source)
    if loader is None:
        raise ModelLoadError(
            f"unknown model {source!r}; built-in models: {', '.join(BUILTIN_MODELS)}"
        )
    return loader()
