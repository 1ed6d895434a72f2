"""Changing the served models while the server serves: load, unload, reload the config.

Every way in comes here: the admin calls over gRPC and HTTP, SIGHUP, and --watch. One
change runs at a time, as a task of the manager's: a caller that goes away (its deadline,
its token revoked) leaves it to finish, so that no version is left half loaded or half
retired; once the server drains, changes are refused. A new version is loaded off the
event loop (in the child process that prepares models, then here), warmed, and only then
takes traffic; the version it replaces answers what it accepted and is then freed. A
version that fails to load leaves what served before serving, and says why (ListModels,
the log, the call's answer).
Before a load, the memory the new version needs beside the old one is checked against
what the process may still take (its cgroup's limit), so that a load is refused rather
than the process killed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from recognizer.config.models import ModelConfig, parse_model_flag
from recognizer.engine import sizing
from recognizer.engine.engine import Engine, ServedModel
from recognizer.engine.registry import Change, ChangeKind, ModelVersion, VersionState
from recognizer.engine.sizing import Cgroup
from recognizer.errors import (
    InvalidRequestError,
    ModelChangeError,
    ModelNotFoundError,
    NotEnoughMemoryError,
    RecognizerError,
    ShuttingDownError,
    StartupError,
    quoted,
)
from recognizer.models.repository import fingerprint, versions_of
from recognizer.service.heap import release_free_memory

logger = logging.getLogger(__name__)

MiB = 1 << 20
LOAD_OVERHEAD = 64 * MiB  # a runtime's buffers and threads, beyond the weights
WEIGHTS_IN_MEMORY = 2  # a model's files, once loaded and compiled, take about twice their size
WATCH_EVERY_S = 1.0
SOURCE_ERROR_CHARS = 500  # of an admin call's source, quoted in its error

LoadVersion = Callable[[ModelConfig, int], ServedModel]
"""Loads one version onto its backend (blocking: run on a thread); app.py gives it."""
ReadModels = Callable[[], Sequence[ModelConfig]]
"""The models the configuration says now (the config file read again), default first."""
T = TypeVar("T")


class ModelManager:
    """Loads, reloads and unloads model versions on a serving engine.

    `models` are the configured models the engine was built with; `read_models` reads the
    configuration again (None: nothing to re-read); `timeout` is how long a retired
    version has to answer what it accepted (the server's grace period); `allow_code`
    (--allow-code-models) lets an admin call's source name TorchScript, which is code.
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
        allow_code: bool = False,
    ) -> None:
        self._engine = engine
        self._allow_code = allow_code
        self._closed = False
        self._changes: set[asyncio.Task[Any]] = set()
        self._generation = 0  # counts changes, so that --watch sees its own and others' alike
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
        return await self._run(self._load_model(name, source))

    async def unload(self, name: str, version: int = 0) -> list[ModelVersion]:
        """Stop serving a model (version 0: all its versions) once it has answered what it
        accepted. The default model keeps at least one version. Returns what is left."""
        return await self._run(self._unload(name, version))

    async def reload_config(self) -> list[Change]:
        """Read the configuration again and apply it: new models loaded, models gone
        unloaded, models whose keys or files changed reloaded."""
        return await self._run(self._reload_config())

    async def close(self) -> None:
        """Refuse changes from now on (the server drains), and end the one under way: a
        version it was loading is dropped; the engine's close stops what was started."""
        self._closed = True
        for task in list(self._changes):
            task.cancel()
            with suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self, change: Coroutine[Any, Any, T]) -> T:
        """Run a change as the manager's own task, one at a time; the caller waits for it
        but cannot cancel it half done."""
        if self._closed:
            change.close()
            raise ShuttingDownError()

        async def locked() -> T:
            async with self._lock:
                if self._closed:
                    change.close()
                    raise ShuttingDownError()
                try:
                    return await change
                finally:
                    self._generation += 1

        task = asyncio.get_running_loop().create_task(locked())
        self._changes.add(task)
        task.add_done_callback(self._ended)
        return await asyncio.shield(task)

    def _ended(self, task: asyncio.Task[Any]) -> None:
        """A change ended: forget it, and take its error (its caller may have gone, and
        the error is its answer, already logged where it matters)."""
        self._changes.discard(task)
        if not task.cancelled():
            task.exception()

    async def _load_model(self, name: str, source: str) -> list[ModelVersion]:
        config = self._named(name, source)
        changes = await self._apply(config)
        failed = [change for change in changes if change.kind is ChangeKind.FAILED]
        if failed:
            raise ModelChangeError(
                f"model {quoted(config.name)} version {failed[0].version} did not load:"
                f" {failed[0].reason}; what served before still does"
            )
        return self._engine.models.versions(config.name)

    async def _unload(self, name: str, version: int) -> list[ModelVersion]:
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
                f"{quoted(name)} is the default model: it keeps a version. Make another model"
                " the default (first in the config file) and reload, or load a new"
                " version first",
                reason="DEFAULT_MODEL",
            )
        await self._retire(name, [entry.version for entry in entries])
        if not self._engine.models.versions(name):
            self._configs.pop(name, None)
        return self._engine.models.versions(name)

    async def _reload_config(self) -> list[Change]:
        if self._read_models is None:
            return []
        wanted = {config.name: config for config in self._configured()}
        changes: list[Change] = []
        for config in wanted.values():
            try:
                changes += await self._apply(config)
            except NotEnoughMemoryError as error:  # refused before anything changed
                version = self._engine.models.next_version(config.name)
                changes.append(Change(config.name, ChangeKind.FAILED, version, error.message))
        registry = self._engine.models
        default = next(iter(wanted))
        if registry.ready(default):
            registry.make_default(default)
        for name in [name for name in self._configs if name not in wanted]:
            if name == registry.default:  # until the new default is ready
                reason = f"the default until {quoted(default)} loads"
                changes.append(Change(name, ChangeKind.FAILED, 0, reason))
                continue
            versions = [entry.version for entry in registry.versions(name)]
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

    def _configured(self) -> Sequence[ModelConfig]:
        """The models the configuration says now; CONFIG_INVALID if it no longer reads."""
        assert self._read_models is not None
        try:
            models = self._read_models()
        except StartupError as error:
            raise ModelChangeError(
                f"the configuration cannot be read again: {error}; nothing changed",
                reason="CONFIG_INVALID",
            ) from None
        if not models:
            raise ModelChangeError(
                "the configuration names no model; nothing changed", reason="CONFIG_INVALID"
            )
        return models

    def reload_soon(self) -> None:
        """Reload the configuration in a task of its own (SIGHUP's handler)."""
        task = asyncio.get_running_loop().create_task(self._reload_logged())
        self._changes.add(task)  # referenced until it ends
        task.add_done_callback(self._ended)

    async def _reload_logged(self) -> list[Change]:
        try:
            return await self.reload_config()
        except RecognizerError as error:
            logger.error("reload: %s", error.message)
        except Exception:  # a bug: logged, and the server serves on
            logger.exception("reload failed")
        return []

    async def watch(self) -> None:
        """Reload when the config file or a configured model's files change (--watch);
        until cancelled. What changes made themselves (an admin call, SIGHUP) is taken as
        the new state, not undone."""
        seen, generation = await self._watched(), self._generation
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            try:
                now = await self._watched()
                if generation != self._generation:
                    seen, generation = now, self._generation
                elif now != seen:
                    logger.info("reload: the config file or a model's files changed")
                    await self._reload_logged()
                    seen, generation = await self._watched(), self._generation
            except Exception:  # a bug: logged, and the next look tries again
                logger.exception("cannot watch the config file and the models' files")

    async def _watched(self) -> tuple[object, ...]:
        """The config file's modification time and size, and each model's files'."""
        configs = list(self._configs.values())  # read on the loop, which alone changes it

        def look() -> tuple[object, ...]:
            config_file: tuple[int, int] | None = None
            if self._config_file is not None:
                with suppress(OSError):
                    stat = self._config_file.stat()
                    config_file = (stat.st_size, stat.st_mtime_ns)
            return (config_file, *(fingerprint(config) for config in configs))

        return await asyncio.to_thread(look)

    def _named(self, name: str, source: str) -> ModelConfig:
        """The config a load asks for: the flag text given, else the configuration's."""
        if source:
            try:
                config = parse_model_flag(source)
                if name:  # validated as a flag's name is
                    keys = {**config.model_dump(), "name": name, "base_dir": config.base_dir}
                    config = ModelConfig.model_validate(keys)
            except (StartupError, ValidationError) as error:
                message = str(error)  # quotes the whole source: capped, as quoted() caps
                raise InvalidRequestError(message[:SOURCE_ERROR_CHARS], field="source") from None
            if config.format == "torchscript" and not self._allow_code:
                raise InvalidRequestError(
                    "TorchScript is code, run when it is loaded: an admin call loads it only"
                    " on a server started with --allow-code-models",
                    field="source",
                )
            return config
        configured = {c.name: c for c in self._configured()} if self._read_models else {}
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
        self._engine.loading(name, version)
        try:
            served = await asyncio.to_thread(self._load, config, version)
            await self._engine.add(served, self._timeout)
        except asyncio.CancelledError:
            self._engine.forget_loading(name, version)  # the server is closing
            raise
        except Exception as error:  # any failure of a load leaves the old version serving
            reason = getattr(error, "message", None) or str(error) or type(error).__name__
            if not isinstance(error, StartupError | RecognizerError):
                logger.exception("%s version %d did not load", name, version)
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
                f"loading {quoted(config.name)} version {version} needs about"
                f" {needed / MiB:.0f} MiB beside what is served, and this process may take"
                f" {available / MiB:.0f} MiB more (its cgroup's memory limit, or the"
                " machine's available memory):"
                " unload a model or version first, or give the process more memory"
            )


async def _release_free_memory() -> None:
    """A retired version's runtime is freed into the heaps of the threads that built and
    ran it, which the steady load's own allocations would not soon reuse: give their free
    pages back to the system (service/heap.py), so memory returns to one version's worth."""
    await asyncio.to_thread(release_free_memory)


def _size(config: ModelConfig) -> int:
    """Bytes of a model's files (0 for a built-in model, and for a hub id: what its cache
    holds is not looked at here)."""
    return sum(size for _, size, _ in fingerprint(config))
