"""ModelScope image-classification directories, above all 万物识别 (general recognition).

damo/cv_resnest101_general_recognition (54,092 classes) and its sibling
damo/cv_resnest101_animal_recognition (8,288) are laid out alike:

    pytorch_model.pt        the weights: a tensor dict, flat or under "state_dict", keys
                            possibly prefixed "module."
    meta_info.txt           class i on line i, tab-separated, the Chinese name second
                            (label_mapping.txt in the animal model)
    configuration.json, README.md

The network is ResNeSt-101 as in the ResNeSt paper's code (deep stem of width 64,
radix 2, cardinality 1, bottleneck width 64, avg-down, avd), with a Linear(2048, classes)
head. timm's resnest101e has the same tensors under the same names and computes the
same function, so the checkpoint loads into it strictly; ModelScope's own pipeline loads
whatever tensors happen to match and silently skips the rest. Preprocessing is
ModelScope's: shorter side to 256 (bilinear), centre crop 224, ImageNet mean and std.
"""

from __future__ import annotations

from pathlib import Path

from recognizer.config.models import LabelFile, ModelConfig
from recognizer.models.label_files import read_labels
from recognizer.models.labels import Labels
from recognizer.models.preprocessing import Preprocessing
from recognizer.models.spec import LoadedModel, configured_preprocessing, configured_spec

CHECKPOINT = "pytorch_model.pt"
LABEL_FILES = ("meta_info.txt", "label_mapping.txt")
ARCHITECTURE = "timm/resnest101e"
PREPROCESSING = Preprocessing(
    resize=256,
    crop=224,
    interpolation="bilinear",
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
)


def is_modelscope_directory(path: Path) -> bool:
    """A directory with ModelScope's checkpoint and one of its label files."""
    return (path / CHECKPOINT).is_file() and any((path / name).is_file() for name in LABEL_FILES)


def load_modelscope(config: ModelConfig) -> LoadedModel:
    """Load a ModelScope classification directory; the class count is the checkpoint's."""
    from recognizer.models.checkpoints import read_state_dict
    from recognizer.models.state_dict import fit_architecture

    directory = config.location
    fitted = fit_architecture(
        read_state_dict(directory / CHECKPOINT),
        config.architecture or ARCHITECTURE,
        checkpoint=str(directory / CHECKPOINT),
    )
    spec = configured_spec(
        config,
        architecture=fitted.architecture,
        source_format="modelscope",
        labels=read_modelscope_labels(config, fitted.num_classes, fitted.architecture),
        preprocessing=configured_preprocessing(config, PREPROCESSING),
    )
    return LoadedModel(spec, fitted.network)


def read_modelscope_labels(config: ModelConfig, num_classes: int, architecture: str) -> Labels:
    """The config's labels, or the directory's own (Chinese) label file."""
    directory = config.location
    found = tuple(LabelFile(directory / name, "zh") for name in LABEL_FILES)
    return read_labels(
        config.labels or tuple(file for file in found if file.path.is_file())[:1],
        num_classes=num_classes,
        model=f"{directory.name} ({architecture})",
    )
