"""Model repositories: a model's versions as numbered directories, as Triton and TF Serving
lay them out, and the policy that picks which of them to serve.

    models/cats/            the model's path
      1/model.onnx          version 1: one model file (and its sidecar), or a ModelScope
      2/model.onnx          directory's files
      3/                    an empty or unfinished version is skipped until it has a model

A version is the model's config with its path set to the version's file (or directory)
and its `version` to the directory's number; the repository's keys (labels,
preprocessing, ...) apply to every version.
"""

from __future__ import annotations

from pathlib import Path

from recognizer.config.models import ModelConfig
from recognizer.errors import ModelLoadError
from recognizer.models.modelscope import is_modelscope_directory
from recognizer.models.state_dict import SUFFIXES

MODEL_SUFFIXES = (".onnx", *SUFFIXES)
MAX_FINGERPRINT_FILES = 1000  # a directory's files looked at, at most


def is_repository(config: ModelConfig) -> bool:
    """A directory whose entries include a numbered directory, and that is not itself a
    model (a ModelScope directory)."""
    if config.hub_id or not config.location.is_dir() or is_modelscope_directory(config.location):
        return False
    return any(entry.is_dir() and entry.name.isdigit() for entry in config.location.iterdir())


def repository_versions(config: ModelConfig) -> dict[int, ModelConfig]:
    """The versions the config's policy serves, newest first, each as its own config."""
    found = {
        int(entry.name): model
        for entry in config.location.iterdir()
        if entry.is_dir() and entry.name.isdigit() and int(entry.name) > 0
        if (model := _model_in(entry)) is not None
    }
    chosen = select_versions(sorted(found, reverse=True), config.versions or "latest")
    if not chosen:
        raise ModelLoadError(
            f"model {config.name!r}: the repository {config.location} has no version that"
            f" versions={config.versions or 'latest'} serves (versions with a model file:"
            f" {', '.join(map(str, sorted(found))) or 'none'})"
        )
    return {
        version: config.model_copy(
            update={"path": str(found[version].resolve()), "version": version, "versions": None}
        )
        for version in chosen
    }


def select_versions(available: list[int], policy: str) -> list[int]:
    """The versions a policy keeps of those available (newest first): latest, latest:N,
    all, or a list (1:3) of which those available."""
    if policy == "all":
        return available
    if policy.startswith("latest"):
        _, _, count = policy.partition(":")
        return available[: int(count or 1)]
    wanted = {int(version) for version in policy.split(":")}
    return [version for version in available if version in wanted]


def _model_in(directory: Path) -> Path | None:
    """A version directory's model: the directory itself when it is a ModelScope model,
    else its one model file (ignoring sidecars); None while it has none."""
    if is_modelscope_directory(directory):
        return directory
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in MODEL_SUFFIXES)
    if len(files) > 1:
        names = ", ".join(p.name for p in files)
        raise ModelLoadError(f"{directory} holds more than one model file ({names}): keep one")
    return files[0] if files else None


def versions_of(config: ModelConfig, next_version: int = 1) -> dict[int, ModelConfig]:
    """The versions a model's config serves: a repository's, as its policy picks them; else
    the one file, as the config's `version`, or `next_version`."""
    if is_repository(config):
        return repository_versions(config)
    return {config.version or next_version: config}


def fingerprint(config: ModelConfig) -> tuple[tuple[str, int, int], ...]:
    """What a model's files are now (path, size, modification time), its sidecar's and label
    files' included: when it changes, the model is reloaded (--watch). A built-in model or
    a hub id has none."""
    if config.hub_id or not config.location.exists():
        return ()
    location = config.location
    paths = sorted(location.rglob("*")) if location.is_dir() else [location]
    paths += [location.with_suffix(".toml"), *(label.path for label in config.labels)]
    stats = []
    for path in paths[:MAX_FINGERPRINT_FILES]:
        try:
            stat = path.stat()
        except OSError:
            continue
        stats.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(stats)
