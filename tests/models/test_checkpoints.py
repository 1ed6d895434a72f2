"""Reading checkpoints in every wrapping, and loading them strictly or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from recognizer.errors import ModelLoadError
from recognizer.models.checkpoints import load_strictly, read_state_dict


def small_network() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.Linear(4, 2)
    )


@pytest.mark.parametrize(
    "wrap",
    [
        lambda tensors: tensors,
        lambda tensors: {"state_dict": tensors, "epoch": 3, "arch": "resnest101"},
        lambda tensors: {f"module.{key}": value for key, value in tensors.items()},
        lambda tensors: {"state_dict": {f"module.{key}": value for key, value in tensors.items()}},
        lambda tensors: {"model": tensors, "optimizer": {"lr": 0.1}},
    ],
    ids=["flat", "state_dict", "module", "state_dict+module", "model"],
)
def test_every_wrapping_reads_to_the_same_tensors(tmp_path: Path, wrap: object) -> None:
    tensors = small_network().state_dict()
    torch.save(wrap(tensors), tmp_path / "weights.pt")  # type: ignore[operator]
    read = read_state_dict(tmp_path / "weights.pt")
    assert list(read) == list(tensors)
    assert all(torch.equal(read[key], tensors[key]) for key in tensors)


def test_safetensors_read_too(tmp_path: Path) -> None:
    tensors = small_network().state_dict()
    save_file(tensors, tmp_path / "weights.safetensors")
    assert read_state_dict(tmp_path / "weights.safetensors").keys() == tensors.keys()


def test_pickled_modules_are_refused_because_unpickling_runs_code(tmp_path: Path) -> None:
    torch.save(small_network(), tmp_path / "whole.pt")
    with pytest.raises(ModelLoadError, match=r"pickled Python objects.*model\.state_dict"):
        read_state_dict(tmp_path / "whole.pt")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"epoch": 3, "lr": 0.1}, "is not a state dict: its entries .epoch, lr."),
        ([torch.zeros(1)], "holds list, not a dict of tensors"),
        ({}, "holds dict, not a dict of tensors"),
    ],
)
def test_files_that_are_not_state_dicts_say_what_they_hold(
    tmp_path: Path, content: object, message: str
) -> None:
    torch.save(content, tmp_path / "odd.pt")
    with pytest.raises(ModelLoadError, match=message):
        read_state_dict(tmp_path / "odd.pt")


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        read_state_dict(tmp_path / "none.pth")
    (tmp_path / "cut.safetensors").write_bytes(b"\x10\x00\x00\x00")
    with pytest.raises(ModelLoadError, match=r"cannot read checkpoint .*cut\.safetensors"):
        read_state_dict(tmp_path / "cut.safetensors")
    torch.save(small_network().state_dict(), tmp_path / "cut.pth")
    data = (tmp_path / "cut.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=r"cannot read checkpoint .*cut\.pth"):
        read_state_dict(tmp_path / "cut.pth")


def test_a_checkpoint_that_fits_is_loaded_whole() -> None:
    source, target = small_network(), small_network()
    tensors = {k: v for k, v in source.state_dict().items() if "num_batches" not in k}
    load_strictly(target, tensors, what="w.pt does not fit net")  # old PyTorch: no counters
    assert all(torch.equal(target.state_dict()[key], tensors[key]) for key in tensors)


def test_a_checkpoint_that_does_not_fit_names_each_tensor() -> None:
    tensors = small_network().state_dict()
    del tensors["1.running_var"]
    tensors["3.weight"] = torch.zeros(5, 4)
    tensors["head.weight"] = torch.zeros(1)
    with pytest.raises(ModelLoadError) as raised:
        load_strictly(small_network(), tensors, what="w.pt does not fit net")
    assert str(raised.value) == (
        "w.pt does not fit net: missing 1.running_var; unexpected head.weight;"
        " 3.weight is 5x4 in the checkpoint, 2x4 in the network"
    )


def test_long_lists_of_tensors_are_shortened() -> None:
    with pytest.raises(ModelLoadError, match=r"missing 0\.weight, 0\.bias, 1\.weight and 5 more"):
        load_strictly(small_network(), {}, what="w.pt does not fit net")


def test_long_lists_of_misshapen_tensors_are_shortened_too() -> None:
    tensors = small_network().state_dict()
    for key in ("0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean"):
        tensors[key] = torch.zeros(7)
    with pytest.raises(ModelLoadError) as raised:
        load_strictly(small_network(), tensors, what="w.pt does not fit net")
    message = str(raised.value)
    assert message.count("in the checkpoint") == 3
    assert message.endswith("1.weight is 7 in the checkpoint, 4 in the network and 2 more")
