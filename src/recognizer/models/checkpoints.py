"""Read weights from checkpoint files and load them into a network, strictly.

Checkpoints come as a .safetensors file or a torch.save'd dict of tensors (read with
weights_only, so a checkpoint can never run code), flat or under a "state_dict" or
"model" entry, with keys possibly prefixed by DataParallel's "module.". Loading is
strict: a missing, unexpected or misshapen tensor stops start-up, naming it, instead of
leaving a layer randomly initialised.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from recognizer.errors import ModelLoadError

WRAPPERS = ("state_dict", "model")  # where training scripts put the weights
SHOWN = 3  # tensor names an error message lists before "and N more"


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors in a checkpoint file, unwrapped and without "module." prefixes."""
    try:
        if path.suffix == ".safetensors":
            loaded: object = load_file(path, device="cpu")
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as error:
        raise ModelLoadError(f"checkpoint {path} does not exist") from error
    except pickle.UnpicklingError as error:
        raise ModelLoadError(
            f"{path} holds pickled Python objects, not just tensors, and is not loaded because"
            " unpickling can run code: save model.state_dict(), or the whole model with"
            " torch.jit.save"
        ) from error
    except (RuntimeError, OSError, EOFError, SafetensorError) as error:
        raise ModelLoadError(f"cannot read checkpoint {path}: {error}") from error
    return _unwrap(loaded, path)


def load_strictly(
    network: torch.nn.Module, tensors: Mapping[str, torch.Tensor], *, what: str
) -> None:
    """Load every tensor of the network from `tensors`, or say which do not fit.

    `what` names checkpoint and network in the error, as in "model.pth does not fit
    torchvision/resnet50". BatchNorm's num_batches_tracked counters, which checkpoints
    from old PyTorch versions lack, are bookkeeping rather than weights and may be missing.
    """
    expected = network.state_dict()
    missing = [
        key for key in expected if key not in tensors and not key.endswith("num_batches_tracked")
    ]
    unexpected = [key for key in tensors if key not in expected]
    misshapen = [
        f"{key} is {_shape(tensors[key])} in the checkpoint, {_shape(expected[key])} in the network"
        for key in expected
        if key in tensors and tensors[key].shape != expected[key].shape
    ]
    problems = [
        *([f"missing {_listed(missing)}"] if missing else []),
        *([f"unexpected {_listed(unexpected)}"] if unexpected else []),
        *([_listed(misshapen, "; ")] if misshapen else []),
    ]
    if problems:
        raise ModelLoadError(f"{what}: {'; '.join(problems)}")
    network.load_state_dict({**expected, **tensors}, strict=True)


def _unwrap(loaded: object, path: Path) -> dict[str, torch.Tensor]:
    while isinstance(loaded, Mapping) and not _all_tensors(loaded):
        wrapper = next((key for key in WRAPPERS if isinstance(loaded.get(key), Mapping)), None)
        if wrapper is None:
            keys = ", ".join(map(str, list(loaded)[:8]))
            raise ModelLoadError(
                f"{path} is not a state dict: its entries ({keys}) are not all tensors, and"
                f" it has no {' or '.join(repr(key) for key in WRAPPERS)} entry holding them"
            )
        loaded = loaded[wrapper]
    if not isinstance(loaded, Mapping) or not loaded:
        raise ModelLoadError(f"{path} holds {type(loaded).__name__}, not a dict of tensors")
    return {str(key).removeprefix("module."): tensor for key, tensor in loaded.items()}


def _all_tensors(values: Mapping[object, object]) -> bool:
    return all(isinstance(value, torch.Tensor) for value in values.values())


def _listed(keys: list[str], separator: str = ", ") -> str:
    more = f" and {len(keys) - SHOWN} more" if len(keys) > SHOWN else ""
    return separator.join(keys[:SHOWN]) + more


def _shape(tensor: torch.Tensor) -> str:
    return "x".join(map(str, tensor.shape)) or "a scalar"
