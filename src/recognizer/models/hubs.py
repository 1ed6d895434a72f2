"""Models named by hub id, found where each hub's own library keeps its downloads.

    modelscope:OWNER/NAME[@REVISION]    a ModelScope classification directory (万物识别):
                                        the config becomes that directory's
    hf-hub:OWNER/NAME[@REVISION]        a timm model on the Hugging Face Hub (config.json
                                        and model.safetensors or pytorch_model.bin): the
                                        config becomes a state dict with its architecture,
                                        preprocessing and labels taken from config.json

Values the config gives win over the hub's, as they do over a sidecar's. The caches are
read as the libraries lay them out, without importing them, so a cached model loads
offline and without them:

    ModelScope      $MODELSCOPE_CACHE, else ~/.cache/modelscope; in it
                    models/OWNER--NAME/snapshots/REVISION/     modelscope 1.38 and later
                    models/OWNER/NAME, hub/models/OWNER/NAME   1.23 to 1.37 (MODELSCOPE_CACHE
                                                               set, or not)
                    OWNER/NAME, hub/OWNER/NAME                 older versions
                    (a dot in NAME is written ___ in all but the newest)
    Hugging Face    $HF_HUB_CACHE, else $HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub, else
                    $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub; in it
                    models--OWNER--NAME/refs/REVISION holds a commit hash (default main),
                    models--OWNER--NAME/snapshots/COMMIT/ the files

A ModelScope REVISION is served only where the cache proves it: the newest layout names
its snapshot folder after it, and the older ones write it to a `.mv` text file when a
whole snapshot has been downloaded. A copy without that record is not taken for the
revision asked, since ModelScope keeps one copy per model and overwrites it with whatever
revision was downloaded last; the `.mdl` and `.msc` files are pickles and are never read
(unpickling runs code). Without a REVISION, the first copy found in the order above is
served (of the newest layout's snapshots: `master`, or the only one). A Hugging Face
REVISION is a branch or tag, looked up in refs/, or a commit hash, a snapshot's name.

A model that is not in the cache is downloaded into it by the hub's own library
(`pip install '.[hub]'`), which is imported only then; where the library is missing or
the hub's offline switch is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE, as
huggingface_hub reads them; MODELSCOPE_OFFLINE, since ModelScope's library has none), the
model is refused with where it was looked for and how to get it there.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import importlib
import importlib.util
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recognizer.config.models import ModelConfig
from recognizer.errors import ConfigError, ModelLoadError
from recognizer.models.modelscope import is_modelscope_directory

logger = logging.getLogger(__name__)

HF_CONFIG = "config.json"
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")  # the first that is there is served
IMAGENET_LABELS = Path(__file__).with_name("data") / "imagenet1k_labels.tsv"
MODELSCOPE_REVISION_FILE = ".mv"
TRUE = ("1", "ON", "YES", "TRUE")  # huggingface_hub's spellings of a switch that is on
_SEGMENT = r"[A-Za-z0-9_-][A-Za-z0-9._-]*"  # never "." or "..": ids become paths
_HUB_ID = re.compile(rf"(?P<owner>{_SEGMENT})/(?P<name>{_SEGMENT})(@(?P<revision>.+))?")
_REVISION = re.compile(rf"{_SEGMENT}(/{_SEGMENT})*")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_SYNSET = re.compile(r"n[0-9]{8}")  # a WordNet id, as ImageNet names its classes


@dataclass(frozen=True)
class HubId:
    """A model's id on its hub, and the revision asked for (None: the hub's default)."""

    hub: str
    owner: str
    name: str
    revision: str | None

    @property
    def repo(self) -> str:
        return f"{self.owner}/{self.name}"

    def __str__(self) -> str:
        return f"{self.hub}:{self.repo}" + (f"@{self.revision}" if self.revision else "")


@dataclass(frozen=True)
class _Hub:
    """What differs between the hubs: names, library, switches, advice, and how a model is
    found in the cache and downloaded."""

    title: str
    library: str
    offline: tuple[str, ...]
    cache_variable: str
    download_command: str  # with {repo}; " --revision R" is added when one is asked
    cache: Callable[[], Path]
    cached: Callable[[HubId, Path], Path]  # raises _NotCached
    download: Callable[[Any, HubId], Path]  # given the library


class _NotCached(Exception):
    """The cache does not hold the model (or cannot prove the revision asked); says why."""


def resolve_hub(config: ModelConfig) -> ModelConfig:
    """The config of the files a hub id names (downloaded first if they must be and can
    be); any other config as it is."""
    if not config.hub_id:
        return config
    hub_id = parse_hub_id(config.path, model=config.name)
    if hub_id.hub == "modelscope":
        directory = _located(config.name, hub_id, MODELSCOPE)
        if not is_modelscope_directory(directory):
            raise ModelLoadError(
                f"model {config.name!r}: {hub_id} is at {directory}, which is not a ModelScope"
                " classification directory (pytorch_model.pt and meta_info.txt or"
                " label_mapping.txt)"
            )
        source_format = "modelscope" if config.format == "auto" else config.format
        return config.model_copy(update={"path": str(directory), "format": source_format})
    snapshot = _located(config.name, hub_id, HUGGING_FACE)
    return _timm_config(config, snapshot)


def parse_hub_id(path: str, *, model: str) -> HubId:
    """`modelscope:OWNER/NAME[@REVISION]` or `hf-hub:OWNER/NAME[@REVISION]`."""
    hub, _, rest = path.partition(":")
    match = _HUB_ID.fullmatch(rest)
    revision = match["revision"] if match else None
    if match is None or (revision is not None and not _REVISION.fullmatch(revision)):
        raise ConfigError(
            f"model {model!r}: {path!r} is not a hub id: write {hub}:OWNER/NAME, or"
            f" {hub}:OWNER/NAME@REVISION (a branch, tag or commit)"
        )
    return HubId(hub, match["owner"], match["name"], revision)


def modelscope_cache() -> Path:
    """The folder ModelScope's library keeps its downloads in."""
    return Path(os.path.expanduser(os.environ.get("MODELSCOPE_CACHE") or "~/.cache/modelscope"))


def hf_cache() -> Path:
    """The folder huggingface_hub keeps its downloads in, by its own precedence."""
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface"
    )
    hub = (
        os.environ.get("HF_HUB_CACHE")
        or os.environ.get("HUGGINGFACE_HUB_CACHE")
        or os.path.join(home, "hub")
    )
    return Path(os.path.expandvars(os.path.expanduser(hub)))


def _located(model: str, hub_id: HubId, hub: _Hub) -> Path:
    """The model's folder in the cache, else as its library downloads it, else refused."""
    cache = hub.cache()
    try:
        return hub.cached(hub_id, cache)
    except _NotCached as missing:
        reason = f"model {model!r}: {hub_id} is not in {hub.title}'s cache {cache}: {missing}"
    refusal = _cannot_download(hub)
    if refusal:
        revision = f" --revision {hub_id.revision}" if hub_id.revision else ""
        raise ModelLoadError(
            f"{reason}; and it cannot be downloaded here ({refusal}). To get it, start"
            f" recognizer online with its hub extra (pip install '.[hub]'); or download it"
            f" on a machine that is online ({hub.download_command.format(repo=hub_id.repo)}"
            f"{revision}) and copy the cache here; or set {hub.cache_variable} to a cache"
            " that has it"
        )
    logger.info("%s; downloading it with %s", reason, hub.library)
    try:
        return hub.download(importlib.import_module(hub.library), hub_id)
    except Exception as error:  # the libraries' network and hub errors have no common base
        raise ModelLoadError(f"{reason}, and downloading it failed: {error}") from error


def _download_modelscope(library: Any, hub_id: HubId) -> Path:
    return Path(library.snapshot_download(hub_id.repo, revision=hub_id.revision))


def _download_hf(library: Any, hub_id: HubId) -> Path:
    """The config and one weights file, not the repository's every file: timm's hold the
    weights twice, as safetensors and as a pickle."""

    def fetch(weights: str) -> Path:
        return Path(
            library.snapshot_download(
                hub_id.repo, revision=hub_id.revision, allow_patterns=[HF_CONFIG, weights]
            )
        )

    snapshot = fetch(HF_WEIGHTS[0])
    return snapshot if (snapshot / HF_WEIGHTS[0]).is_file() else fetch(HF_WEIGHTS[1])


def _cannot_download(hub: _Hub) -> str | None:
    """Why the hub's library cannot download here, or None if it may."""
    if importlib.util.find_spec(hub.library) is None:
        return f"{hub.library} is not installed"
    for variable in hub.offline:
        if os.environ.get(variable, "").strip().upper() in TRUE:
            return f"{variable} is set"
    return None


def _cached_modelscope(hub_id: HubId, cache: Path) -> Path:
    """The first ModelScope directory of the model in the cache's layouts that holds the
    revision asked (any, if none is asked)."""
    owner, name = hub_id.owner, hub_id.name
    snapshots = cache / "models" / f"{owner}--{name}" / "snapshots"
    found: list[tuple[Path, str | None]] = [
        (snapshots / revision, revision) for revision in _snapshots(snapshots, hub_id)
    ]
    for base in (cache / "models", cache / "hub" / "models", cache, cache / "hub"):
        for folder in dict.fromkeys((name.replace(".", "___"), name)):
            directory = base / owner / folder
            found.append((directory, _recorded_revision(directory)))
    held = [
        (directory, revision) for directory, revision in found if is_modelscope_directory(directory)
    ]
    if not held:
        looked = ", ".join(str(directory.relative_to(cache)) for directory, _ in found)
        raise _NotCached(f"no ModelScope directory at {looked}")
    for directory, revision in held:
        if hub_id.revision in (None, revision):
            return directory
    directory, revision = held[0]
    holds = f"revision {revision}" if revision else "a revision it does not record (no .mv file)"
    raise _NotCached(f"{directory} holds {holds}, not {hub_id.revision}")


def _snapshots(snapshots: Path, hub_id: HubId) -> list[str]:
    """The newest layout's snapshots to look at: the revision asked, else master, else
    the only one there is."""
    if hub_id.revision is not None:
        return [hub_id.revision]
    held = sorted(entry.name for entry in snapshots.iterdir()) if snapshots.is_dir() else []
    return held if len(held) == 1 else ["master"]


def _recorded_revision(directory: Path) -> str | None:
    """The revision ModelScope wrote to .mv after downloading the whole directory:
    `Revision:v1.0.1,CreatedAt:1668402344`, or the revision alone."""
    try:
        text = (directory / MODELSCOPE_REVISION_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if text.startswith("Revision:"):
        return text.removeprefix("Revision:").split(",", 1)[0].strip() or None
    return text or None


def _cached_hf(hub_id: HubId, cache: Path) -> Path:
    """The snapshot of the revision asked, with a timm config and weights."""
    repo = cache / f"models--{hub_id.owner}--{hub_id.name}"
    revision = hub_id.revision or "main"
    if _COMMIT.fullmatch(revision):
        commit = revision
    else:
        ref = repo / "refs" / revision
        try:
            commit = ref.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            raise _NotCached(f"no {ref}") from None
        if not _COMMIT.fullmatch(commit):
            raise _NotCached(f"{ref} does not hold a commit hash")
    snapshot = repo / "snapshots" / commit
    if not (snapshot / HF_CONFIG).is_file():
        raise _NotCached(f"no {snapshot / HF_CONFIG}")
    if not any((snapshot / weights).is_file() for weights in HF_WEIGHTS):
        raise _NotCached(f"{snapshot} has neither {' nor '.join(HF_WEIGHTS)}")
    return snapshot


def _timm_config(config: ModelConfig, snapshot: Path) -> ModelConfig:
    """The config of a timm snapshot's weights: a state dict, described by its config.json
    where the config leaves a key unset."""
    where = snapshot / HF_CONFIG
    described = _read_json(where)
    pretrained = described.get("pretrained_cfg", described)  # timm's older files are flat
    if not isinstance(pretrained, dict) or not isinstance(described.get("architecture"), str):
        raise ModelLoadError(f"{where} is not a timm model's config: it names no architecture")
    if described.get("model_args"):
        raise ModelLoadError(
            f"{where} builds {described['architecture']} with model_args"
            f" {described['model_args']}, which recognizer does not pass to timm: export the"
            " model to ONNX and serve the .onnx file"
        )
    num_classes = described.get("num_classes", pretrained.get("num_classes"))
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ModelLoadError(f"{where} is not a classifier's config: num_classes {num_classes}")
    crop = config.crop or _crop(pretrained.get("input_size", [3, 224, 224]), where)
    crop_pct = pretrained.get("crop_pct") or 0.875
    if not isinstance(crop_pct, int | float) or crop_pct <= 0:
        raise ModelLoadError(f"{where}: crop_pct {crop_pct} is not a positive number")
    keys: dict[str, object] = {
        "format": "state_dict",
        "architecture": f"timm/{described['architecture']}",
        "crop": crop,
        # timm's eval transform: the shorter side to floor(crop / crop_pct), then the crop
        "resize": math.floor(crop / crop_pct),
        "interpolation": pretrained.get("interpolation") or "bicubic",
        "mean": pretrained.get("mean") or [0.485, 0.456, 0.406],
        "std": pretrained.get("std") or [0.229, 0.224, 0.225],
    }
    if not config.labels:
        keys["labels"] = _timm_labels(described, pretrained, num_classes, where)
    unset = {
        key: value for key, value in keys.items() if getattr(config, key) in (None, (), "auto")
    }
    weights = next(snapshot / name for name in HF_WEIGHTS if (snapshot / name).is_file())
    hub = ModelConfig.from_keys({"path": str(weights), **unset}, where=str(where))
    return config.model_copy(
        update={"path": str(weights), **{key: getattr(hub, key) for key in unset}}
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        described = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelLoadError(f"cannot read {path}: {error}") from error
    if not isinstance(described, dict):
        raise ModelLoadError(f"{path} is not a timm model's config: not a JSON object")
    return described


def _crop(input_size: object, where: Path) -> int:
    """The side of the square a timm model takes (recognizer centre-crops squares)."""
    if (
        not isinstance(input_size, list)
        or len(input_size) != 3
        or not all(isinstance(side, int) and side > 0 for side in input_size)
    ):
        raise ModelLoadError(f"{where}: input_size {input_size} is not [channels, height, width]")
    height, width = int(input_size[1]), int(input_size[2])
    if height != width:
        raise ModelLoadError(
            f"{where}: the model takes {height}x{width} images, and recognizer centre-crops"
            " squares: set crop= (and resize=) to serve it"
        )
    return width


def _timm_labels(
    described: dict[str, Any], pretrained: dict[str, Any], num_classes: int, where: Path
) -> str | dict[str, str]:
    """The labels of a timm model: ImageNet-1k's names (Chinese and English) for 1000
    classes named by WordNet ids or not at all, else its own label_names, each replaced by
    its label_descriptions entry where it has one (timm's label_names are ids: synsets,
    MIDs); a model without names is refused."""
    names = described.get("label_names", pretrained.get("label_names"))
    if num_classes == 1000 and (
        not names or all(_SYNSET.fullmatch(str(name)) for name in _listed(names, where))
    ):
        return str(IMAGENET_LABELS)
    if not names:
        raise ModelLoadError(
            f"{where} names none of the model's {num_classes} classes (it has no label_names),"
            " and they are not ImageNet's 1000: give them with labels=FILE or labels.<lang>=FILE"
        )
    listed = _listed(names, where)
    if len(listed) != num_classes:
        raise ModelLoadError(
            f"{where} has {len(listed)} label_names for {num_classes} classes: give the labels"
            " with labels=FILE or labels.<lang>=FILE"
        )
    descriptions = described.get("label_descriptions", pretrained.get("label_descriptions"))
    if isinstance(descriptions, dict):
        listed = [str(descriptions.get(name, name)) for name in listed]
    return {"en": str(_written_labels(listed))}


def _listed(names: object, where: Path) -> list[str]:
    """label_names as timm writes them: a list, or a dict from class index to name."""
    if isinstance(names, dict):
        try:
            by_index = {int(index): str(name) for index, name in names.items()}
        except ValueError:
            by_index = {}
        if sorted(by_index) != list(range(len(names))):
            raise ModelLoadError(
                f"{where}: label_names does not name classes 0 to {len(names) - 1}"
            )
        return [by_index[index] for index in range(len(names))]
    if isinstance(names, list):
        return [str(name) for name in names]
    raise ModelLoadError(f"{where}: label_names is neither a list nor a dict")


def _written_labels(names: Sequence[str]) -> Path:
    """A label file with these names, one a line, in a folder of this process's: label
    files are how configs carry labels, and the hub's cache is not ours to write in."""
    text = "".join(" ".join(name.split()) + "\n" for name in names)
    path = _scratch() / hashlib.sha256(text.encode()).hexdigest()[:16] / "labels_en.txt"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return path


@functools.cache
def _scratch() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="recognizer-hub-labels-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


MODELSCOPE = _Hub(
    "ModelScope",
    "modelscope",
    ("MODELSCOPE_OFFLINE",),
    "MODELSCOPE_CACHE",
    "modelscope download --model {repo}",
    modelscope_cache,
    _cached_modelscope,
    _download_modelscope,
)
HUGGING_FACE = _Hub(
    "Hugging Face",
    "huggingface_hub",
    ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"),
    "HF_HUB_CACHE",
    "hf download {repo}",
    hf_cache,
    _cached_hf,
    _download_hf,
)
