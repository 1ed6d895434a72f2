"""ONNX models as their authors exported them, run with ONNX Runtime.

The graph must have exactly one input, the image: float32 NCHW, which the backend
normalises with the model's mean and std, or uint8 NHWC pixels for a graph that
normalises itself. Its first output is the logits. A fixed input size sets the crop
(and the resize in proportion, as 224 is to 256) unless the config sets them; a fixed
batch of 1 caps the model's batches at 1.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from recognizer.config.models import ModelConfig
from recognizer.errors import ModelLoadError
from recognizer.models.label_files import discover_label_files, read_labels
from recognizer.models.preprocessing import Preprocessing
from recognizer.models.spec import (
    LoadedModel,
    OnnxGraph,
    configured_preprocessing,
    configured_spec,
)

# The input layouts the backend can feed: ONNX type -> (numpy type, channel axis).
LAYOUTS = {"tensor(float)": (np.float32, 1), "tensor(uint8)": (np.uint8, 3)}


def load_onnx(config: ModelConfig) -> LoadedModel:
    path = config.location
    try:
        data = path.read_bytes()
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    except OSError as error:
        raise ModelLoadError(f"cannot read {path}: {error.strerror}") from error
    except Exception as error:  # onnxruntime raises its own untyped errors
        raise ModelLoadError(f"ONNX Runtime cannot load {path}: {error}") from error
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(model_input.name for model_input in inputs)
        raise ModelLoadError(
            f"{path} has {len(inputs)} inputs ({names}); an image classifier has one, the image"
        )
    (image,) = inputs
    if image.type not in LAYOUTS or len(image.shape) != 4:
        raise ModelLoadError(
            f"{path} takes {image.type} {image.shape}; it must take float32 NCHW"
            " (N, 3, H, W) or uint8 NHWC (N, H, W, 3) images"
        )
    dtype, channel_axis = LAYOUTS[image.type]
    batch, *rest = image.shape
    channels = rest.pop(channel_axis - 1)
    height, width = rest
    if isinstance(channels, int) and channels != 3:
        raise ModelLoadError(f"{path} takes {channels}-channel images; colour images have 3")
    if isinstance(batch, int) and batch != 1:
        raise ModelLoadError(
            f"{path} takes batches of exactly {batch}: export it with a dynamic batch axis"
            " (dynamic_axes in torch.onnx.export) or a batch of 1"
        )
    if isinstance(height, int) and config.crop not in (None, height):
        raise ModelLoadError(
            f"{path} takes {height}x{width} images but crop is {config.crop}: set crop to"
            f" {height} or leave it unset"
        )
    preprocessing = configured_preprocessing(config, _defaults(path.name, height, width))
    crop = preprocessing.crop
    sample_shape = (1, 3, crop, crop) if channel_axis == 1 else (1, crop, crop, 3)
    try:
        logits = session.run(None, {image.name: np.zeros(sample_shape, dtype)})[0]
    except Exception as error:  # onnxruntime raises its own untyped errors
        raise ModelLoadError(f"{path} fails on a {crop}x{crop} image: {error}") from error
    if logits.ndim != 2 or logits.shape[0] != 1:
        raise ModelLoadError(
            f"{path} outputs {logits.shape} for one image; a classifier outputs (1, classes)"
        )
    labels = read_labels(
        config.labels or discover_label_files(path.parent),
        num_classes=int(logits.shape[1]),
        model=path.name,
    )
    spec = configured_spec(
        config,
        architecture=config.architecture or "",
        source_format="onnx",
        labels=labels,
        preprocessing=preprocessing,
        max_batch_size=1 if batch == 1 else None,
    )
    return LoadedModel(spec, OnnxGraph(data))


def _defaults(name: str, height: object, width: object) -> Preprocessing:
    """ImageNet's preprocessing, at the graph's input size if it is fixed."""
    if not isinstance(height, int):
        return Preprocessing()
    if height != width:
        raise ModelLoadError(f"{name} takes {height}x{width} images; only square inputs work")
    return Preprocessing(resize=round(height * 256 / 224), crop=height)
