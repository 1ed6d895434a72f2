"""The served models and their versions, each in a state: what requests may be sent to.

A version is LOADING while it is loaded and warmed, READY while it takes traffic,
UNLOADING while it finishes the calls it accepted, or FAILED with the reason its load
gave. A request that names no version goes to the model's newest READY version, so
traffic moves to a new version the moment it is marked READY: one dict write on the
event loop, which alone changes the registry. A Change is what loading or unloading did
to a model (service/models.py makes them).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from recognizer.errors import ModelNotFoundError

if TYPE_CHECKING:
    from recognizer.engine.runner import ModelRunner


class VersionState(enum.Enum):
    """Where a model version is in its life."""

    LOADING = "loading"
    READY = "ready"
    UNLOADING = "unloading"
    FAILED = "failed"


@dataclass(slots=True)
class ModelVersion:
    """One version of a model: its state, and its runner once it has one."""

    name: str
    version: int
    state: VersionState
    runner: ModelRunner | None = None
    reason: str = ""


class ChangeKind(enum.Enum):
    """What a change did to a model."""

    LOADED = "loaded"
    RELOADED = "reloaded"
    UNLOADED = "unloaded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Change:
    """One model's change: its version loaded or unloaded, or why it failed."""

    name: str
    kind: ChangeKind
    version: int
    reason: str = ""


class ModelRegistry:
    """Models by name, in the order they were first served (the default first), each with
    its versions; only READY versions with a runner take requests."""

    def __init__(self) -> None:
        self._models: dict[str, dict[int, ModelVersion]] = {}
        self._highest: dict[str, int] = {}  # kept after a model goes: versions never repeat
        self.default = ""

    def put(self, entry: ModelVersion) -> None:
        """Record a version, or its new state; the first model recorded is the default."""
        self._models.setdefault(entry.name, {})[entry.version] = entry
        self._highest[entry.name] = max(self._highest.get(entry.name, 0), entry.version)
        self.default = self.default or entry.name

    def drop(self, name: str, version: int) -> None:
        """Forget a version; a model left with none is forgotten too."""
        versions = self._models.get(name, {})
        versions.pop(version, None)
        if not versions:
            self._models.pop(name, None)

    def get(self, name: str, version: int) -> ModelVersion | None:
        return self._models.get(name, {}).get(version)

    def versions(self, name: str) -> list[ModelVersion]:
        """A model's versions, newest first."""
        return sorted(self._models.get(name, {}).values(), key=lambda v: -v.version)

    def ready(self, name: str) -> list[ModelVersion]:
        """A model's versions that take requests, newest first."""
        return [v for v in self.versions(name) if v.state is VersionState.READY and v.runner]

    def serving(self, name: str) -> bool:
        """Whether the model has a READY version whose runner the watchdog finds working."""
        return any(v.runner is not None and v.runner.health.serving for v in self.ready(name))

    def names(self) -> list[str]:
        """Every model with a READY version, the default first."""
        return [name for name in self._models if self.ready(name)]

    def next_version(self, name: str) -> int:
        """The number after the highest version the model has had (1 for a new model)."""
        return self._highest.get(name, 0) + 1

    def runner(
        self, name: str, version: int = 0, *, served: Callable[[], Sequence[str]] | None = None
    ) -> ModelRunner:
        """The runner of a model's version; "" is the default model, 0 its newest READY
        version. Raises ModelNotFoundError listing what `served` gives (default: every
        model), asked only then: a request's lookup pays for no list."""
        name = name or self.default
        ready = self.ready(name)
        chosen = ready[:1] if not version else [v for v in ready if v.version == version]
        if not chosen or chosen[0].runner is None:
            what = name if not version or not ready else f"{name} version {version}"
            raise ModelNotFoundError(what, (served or self.names)())
        return chosen[0].runner

    def ready_runners(self) -> list[ModelRunner]:
        """The runners of every READY version (what the watchdog judges)."""
        return [
            entry.runner
            for versions in self._models.values()
            for entry in versions.values()
            if entry.state is VersionState.READY and entry.runner is not None
        ]

    def make_default(self, name: str) -> None:
        """Make a model the default, and first in every listing."""
        self._models = {name: self._models[name]} | self._models
        self.default = name

    def runners(self) -> Iterator[ModelRunner]:
        """Every runner still running: READY versions and those UNLOADING."""
        for versions in self._models.values():
            for entry in versions.values():
                if entry.runner is not None and entry.state is not VersionState.FAILED:
                    yield entry.runner

    def entries(self) -> list[ModelVersion]:
        """Every version of every model, the default model first, newest version first."""
        return [entry for name in self._models for entry in self.versions(name)]
