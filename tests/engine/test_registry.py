"""The registry of served model versions: which version a request goes to, and when."""

from __future__ import annotations

import pytest

from fakes import colour_model
from recognizer.config.schema import EngineSettings
from recognizer.engine.lifecycle import keep
from recognizer.engine.registry import ModelRegistry, ModelVersion, VersionState
from recognizer.engine.runner import ModelRunner
from recognizer.errors import ModelNotFoundError


def runner(version: int) -> ModelRunner:
    model = colour_model()
    return ModelRunner(model.spec, model.backend, EngineSettings(), keep=keep, version=version)


def test_a_request_naming_no_version_gets_the_newest_ready_one() -> None:
    registry = ModelRegistry()
    first, second = runner(1), runner(2)
    registry.put(ModelVersion("colours", 1, VersionState.READY, first))
    registry.put(ModelVersion("colours", 2, VersionState.LOADING))
    assert registry.runner("") is first  # loading takes no traffic
    registry.put(ModelVersion("colours", 2, VersionState.READY, second))
    assert registry.runner("") is second and registry.runner("colours", 1) is first
    registry.put(ModelVersion("colours", 2, VersionState.UNLOADING, second))
    assert registry.runner("colours") is first
    assert list(registry.runners()) == [first, second]  # both still run


def test_versions_are_listed_newest_first_and_never_repeat() -> None:
    registry = ModelRegistry()
    registry.put(ModelVersion("colours", 1, VersionState.READY, runner(1)))
    registry.put(ModelVersion("colours", 2, VersionState.FAILED, reason="no such file"))
    assert [(v.version, v.state) for v in registry.entries()] == [
        (2, VersionState.FAILED),
        (1, VersionState.READY),
    ]
    registry.drop("colours", 2)
    registry.drop("colours", 1)
    assert registry.entries() == [] and registry.names() == []
    assert registry.next_version("colours") == 3


def test_an_unknown_model_or_version_is_not_found() -> None:
    registry = ModelRegistry()
    registry.put(ModelVersion("colours", 1, VersionState.READY, runner(1)))
    with pytest.raises(ModelNotFoundError, match="'shapes' is not served; served models: colours"):
        registry.runner("shapes")
    with pytest.raises(ModelNotFoundError, match="'colours version 7'"):
        registry.runner("colours", 7)
