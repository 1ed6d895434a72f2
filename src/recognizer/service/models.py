"""Changing the served models while the server serves: load, unload, reload the config.

Every way in comes here: the admin calls over gRPC and HTTP, SIGHUP, and --watch. One
change runs at a time. A new version is loaded off the event loop (in the child process
that prepares models, then here), warmed, and only then takes traffic; the version it
replaces answers what it accepted and is then freed. A version that fails to load leaves
what served before serving, and says why (ListModels, the log, the call's answer).
Before a load, the memory the new version needs beside the old one is checked against
what the process may still take (its cgroup's limit), so that a load is refused rather
than the process killed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path

from recognizer.config.models import ModelConfig, parse_model_flag
from recognizer.engine import sizing
from recognizer.engine.engine import Engine, ServedModel
from recognizer.engine.registry import Change, ChangeKind, ModelVersion, VersionState
from recognizer.engine.sizing import Cgroup
from recognizer.errors import (
    ModelChangeError,
    ModelNotFoundError,
    NotEnoughMemoryError,
    RecognizerError,
    StartupError,
)
from recognizer.models.repository import fingerprint, versions_of
from recognizer.service.heap import release_free_memory

logger = logging.getLogger(__name__)

MiB = 1 << 20
LOAD_OVERHEAD = 64 * MiB  # a runtime's buffers and threads, beyond the weights
WEIGHTS_IN_MEMORY = 2  # a model's files, once loaded and compiled, take about twice their size
WATCH_EVERY_S = 1.0

LoadVersion = Callable[[ModelConfig, int], ServedModel]
"""Loads one version onto its backend (blocking: run on a thread); app.py gives it."""
ReadModels = Callable[[], Sequence[ModelConfig]]
"""The models the configuration says now (the config file read again), default first."""


class ModelManager:
    """Loads, reloads and unloads model versions on a serving engine.

    `models` are the configured models the engine was built with; `read_models` reads the
    configuration again (None: nothing to re-read); `timeout` is how long a retired
    version has to answer what it accepted (the server's grace period).
    """

    def __init__(
        self,
        engine: Engine,
        models: Sequence[ModelConfig],
        *,
        load: LoadVersion,
        read_models: ReadModels | None = None,
        config_file: Path | None = None,
        timeout: float = 10.0,
        cgroup: Cgroup | None = None,
    ) -> None:
        self._engine = engine
        self._load = load
        self._read_models = read_models
        self._config_file = config_file
        self._timeout = timeout
        self._cgroup = cgroup
        self._lock = asyncio.Lock()
        self._configs = {config.name: config for config in models}
        # Each served version's config and its files as loaded: changed files mean a reload.
        self._loaded: dict[tuple[str, int], tuple[ModelConfig, tuple[object, ...]]] = {
            (config.name, version): (versioned, fingerprint(versioned))
            for config in models
            for version, versioned in versions_of(config).items()
        }

    async def load(self, name: str, source: str = "") -> list[ModelVersion]:
        """Load or reload one model: as `source` (--model flag text) gives it, else as the
        configuration says now. Returns its versions; raises why it failed to load
        (NotEnoughMemoryError when it would not fit: then nothing is changed)."""
        async with self._lock:
            config = self._named(name, source)
            changes = await self._apply(config)
            failed = [change for change in changes if change.kind is ChangeKind.FAILED]
            if failed:
                raise ModelChangeError(
                    f"model {name!r} version {failed[0].version} did not load:"
                    f" {failed[0].reason}; what served before still does"
                )
            return self._engine.models.versions(name)

    async def unload(self, name: str, version: int = 0) -> list[ModelVersion]:
        """Stop serving a model (version 0: all its versions) once it has answered what it
        accepted. The default model keeps at least one version. Returns what is left."""
        async with self._lock:
            entries = self._engine.models.versions(name)
            if version:
                entries = [entry for entry in entries if entry.version == version]
            if not entries:
                what = name if not version else f"{name} version {version}"
                raise ModelNotFoundError(what, self._engine.models.names())
            ready_left = [
                entry
                for entry in self._engine.models.ready(name)
                if entry.version not in {e.version for e in entries}
            ]
            if name == self._engine.models.default and not ready_left:
                raise ModelChangeError(
                    f"{name!r} is the default model: it keeps a version. Make another model"
                    " the default (first in the config file) and reload, or load a new"
                    " version first",
                    reason="DEFAULT_MODEL",
                )
            await self._retire(name, [entry.version for entry in entries])
            if not self._engine.models.versions(name):
                self._configs.pop(name, None)
            return self._engine.models.versions(name)

    async def reload_config(self) -> list[Change]:
        """Read the configuration again and apply it: new models loaded, models gone
        unloaded, models whose keys or files changed reloaded."""
        async with self._lock:
            if self._read_models is None:
                return []
            try:
                wanted = {config.name: config for config in self._read_models()}
            except StartupError as error:
                raise ModelChangeError(
                    f"the configuration cannot be read again: {error}; nothing changed",
                    reason="CONFIG_INVALID",
                ) from None
            changes: list[Change] = []
            for config in wanted.values():
                try:
                    changes += await self._apply(config)
                except NotEnoughMemoryError as error:  # refused before anything changed
                    version = self._engine.models.next_version(config.name)
                    changes.append(Change(config.name, ChangeKind.FAILED, version, error.message))
            default = next(iter(wanted))
            if self._engine.models.ready(default):
                self._engine.models.default = default
            for name in [name for name in self._configs if name not in wanted]:
                versions = [entry.version for entry in self._engine.models.versions(name)]
                await self._retire(name, versions)
                self._configs.pop(name)
                changes += [Change(name, ChangeKind.UNLOADED, v) for v in versions]
            for change in changes:
                logger.info(
                    "reload: %s version %d %s%s",
                    change.name,
                    change.version,
                    change.kind.value,
                    f": {change.reason}" if change.reason else "",
                )
            return changes

    def reload_soon(self) -> asyncio.Task[list[Change]]:
        """Reload the configuration in a task of its own (SIGHUP's handler)."""
        return asyncio.get_running_loop().create_task(self._reload_logged())

    async def _reload_logged(self) -> list[Change]:
        try:
            return await self.reload_config()
        except RecognizerError as error:
            logger.error("reload: %s", error)
            return []

    async def watch(self) -> None:
        """Reload when the config file or a configured model's files change (--watch);
        until cancelled."""
        seen = self._watched()
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            now = await asyncio.to_thread(self._watched)
            if now != seen:
                logger.info("reload: the config file or a model's files changed")
                await self._reload_logged()
                seen = await asyncio.to_thread(self._watched)

    def _watched(self) -> tuple[object, ...]:
        """The config file's modification time and size, and each model's files'."""
        config_file: tuple[int, int] | None = None
        if self._config_file is not None:
            with suppress(OSError):
                stat = self._config_file.stat()
                config_file = (stat.st_size, stat.st_mtime_ns)
        return (config_file, *(fingerprint(config) for config in self._configs.values()))

    def _named(self, name: str, source: str) -> ModelConfig:
        """The config a load asks for: the flag text given, else the configuration's."""
        if source:
            try:
                config = parse_model_flag(source)
            except StartupError as error:
                raise ModelChangeError(str(error), reason="SOURCE_INVALID") from None
            return config.model_copy(update={"name": name or config.name})
        configured = {c.name: c for c in self._read_models()} if self._read_models else {}
        found = configured.get(name) or self._configs.get(name)
        if found is None:
            raise ModelNotFoundError(name, list(configured or self._configs))
        return found

    async def _apply(self, config: ModelConfig) -> list[Change]:
        """Serve the versions a model's config asks for: load those new or changed, then
        retire those it no longer serves, once a new one is ready."""
        name = config.name
        registry = self._engine.models
        ready = [entry.version for entry in registry.ready(name)]
        next_version = registry.next_version(name)
        if ready and self._loaded.get((name, ready[0])) == (config, fingerprint(config)):
            self._configs[name] = config
            return []  # an unversioned model whose keys and files are as served
        try:
            wanted = versions_of(config, next_version)
        except StartupError as error:
            await self._engine.failed(name, next_version, str(error))
            return [Change(name, ChangeKind.FAILED, next_version, str(error))]
        changes = [
            await self._load_version(versioned, version, replaces=bool(ready))
            for version, versioned in wanted.items()
            if version not in ready
            or self._loaded.get((name, version)) != (versioned, fingerprint(versioned))
        ]
        self._configs[name] = config
        if any(entry.version in wanted for entry in registry.ready(name)):
            await self._retire(name, [version for version in ready if version not in wanted])
        if any(version in ready for version in wanted) and changes:  # one replaced in place
            await _release_free_memory()
        return changes

    async def _load_version(self, config: ModelConfig, version: int, *, replaces: bool) -> Change:
        """Load, warm and start one version; a failure is recorded in its place and returned.
        Raises NotEnoughMemoryError, before anything changes, when it would not fit."""
        name = config.name
        self._check_memory(config, version)
        try:
            self._engine.loading(name, version)
            served = await asyncio.to_thread(self._load, config, version)
            await self._engine.add(served, self._timeout)
        except (StartupError, RecognizerError) as error:
            reason = getattr(error, "message", None) or str(error)
            logger.error("%s version %d did not load: %s", name, version, reason)
            await self._engine.failed(name, version, reason)
            return Change(name, ChangeKind.FAILED, version, reason)
        self._loaded[(name, version)] = (config, fingerprint(config))
        for entry in self._engine.models.versions(name):  # an earlier failure is history now
            if entry.state is VersionState.FAILED:
                self._engine.models.drop(name, entry.version)
        logger.info("%s version %d is serving", name, version)
        return Change(name, ChangeKind.RELOADED if replaces else ChangeKind.LOADED, version)

    async def _retire(self, name: str, versions: Sequence[int]) -> None:
        """Retire versions, then give the C heap's free memory back to the system."""
        for version in versions:
            await self._engine.retire(name, version, self._timeout)
            self._loaded.pop((name, version), None)
        if versions:
            await _release_free_memory()

    def _check_memory(self, config: ModelConfig, version: int) -> None:
        """Refuse a load the process lacks the memory for: its files' size, twice, and a
        runtime's overhead, against what its cgroup (or the machine) still has."""
        needed = WEIGHTS_IN_MEMORY * _size(config) + LOAD_OVERHEAD
        available = sizing.memory_available(self._cgroup)
        if needed > available:
            raise NotEnoughMemoryError(
                f"loading {config.name!r} version {version} needs about {needed / MiB:.0f} MiB"
                f" beside what is served, and this process may take {available / MiB:.0f} MiB"
                " more (its cgroup's memory limit, or the machine's available memory):"
                " unload a model or version first, or give the process more memory"
            )


async def _release_free_memory() -> None:
    """A retired version's runtime is freed into the heaps of the threads that built and
    ran it, which the steady load's own allocations would not soon reuse: give their free
    pages back to the system (service/heap.py), so memory returns to one version's worth."""
    await asyncio.to_thread(release_free_memory)


def _size(config: ModelConfig) -> int:
    """Bytes of a model's files (0 for a built-in model or a hub id not yet resolved)."""
    return sum(size for _, size, _ in fingerprint(config))
