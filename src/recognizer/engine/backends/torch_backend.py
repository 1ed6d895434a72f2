"""The PyTorch backend: eager execution on the CPU or a CUDA device, or CUDA graphs."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch

from recognizer.engine.backends import RowErrors
from recognizer.engine.backends.cuda_graphs import Network, graphs_or_eager
from recognizer.engine.backends.device_inputs import prepare_batch
from recognizer.engine.types import QuantizationCheck
from recognizer.models.jpeg import DeviceInput
from recognizer.models.spec import LoadedModel


class TorchBackend:
    """Eager PyTorch under inference_mode, the backend for CUDA.

    Channels-last layout (the uint8 NHWC batch already is), normalisation fused on the
    device, half precision on CUDA, and pinned host staging with non-blocking copies.
    It also takes JPEGs to decode on its device (`classify_rows`), and on CUDA records
    the network as CUDA graphs at warm-up (`capture_graphs`, cuda_graphs.py). On CUDA each
    worker thread queues its work on a stream of its own, so that one worker's batch is
    copied, decoded and prepared while another's runs through the model.
    """

    name = "torch"
    quantization_check: QuantizationCheck | None = None

    def __init__(self, model: LoadedModel, *, device: torch.device, half: bool = False) -> None:
        spec = model.spec
        self.precision = "fp16" if half else "fp32"
        self.device = str(device)
        self._device = device
        self._dtype = torch.float16 if half else torch.float32
        if not isinstance(model.network, torch.nn.Module):
            raise TypeError(f"{spec.name} is not a PyTorch module")
        network = model.network.eval().to(device, self._dtype)
        self._eager: Network = network.to(memory_format=torch.channels_last)
        self._network: Network = self._eager  # or its CUDA graphs, once recorded
        self._name = spec.name
        self._preprocessing = spec.preprocessing
        scale = 255.0
        self._mean = torch.tensor(spec.preprocessing.mean, device=device).view(1, 3, 1, 1) * scale
        self._std = torch.tensor(spec.preprocessing.std, device=device).view(1, 3, 1, 1) * scale
        self._activation = spec.activation
        self._staging = threading.local()
        self._streams = threading.local()
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the weights are in place for every stream

    def __call__(self, pixels: np.ndarray, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode(), self._own_stream():
            batch = self._to_device(pixels).permute(0, 3, 1, 2)  # NCHW view, channels-last
            return self._top_k((batch.float() - self._mean) / self._std, top_k)

    def classify_rows(
        self, rows: Sequence[DeviceInput], top_k: int
    ) -> tuple[np.ndarray, np.ndarray, RowErrors]:
        """Decode the JPEGs among the rows and prepare the batch here, then run the model."""
        with torch.inference_mode(), self._own_stream():
            batch, errors = prepare_batch(
                rows, self._preprocessing, self._device, upload=self._to_device
            )
            scores, class_ids = self._top_k(batch, top_k)
        return scores, class_ids, errors

    def capture_graphs(self, max_batch_size: int) -> None:
        """On CUDA, record the network for every bucket up to `max_batch_size`, if that pays
        (again from the eager network, when the largest batch changes)."""
        if self._device.type != "cuda":
            return
        crop = self._preprocessing.crop
        example = torch.zeros((1, 3, crop, crop), device=self._device, dtype=self._dtype)
        with torch.inference_mode():
            self._network = graphs_or_eager(
                self._eager,
                example.contiguous(memory_format=torch.channels_last),
                max_batch_size,
                name=self._name,
            )

    def _top_k(self, normalised: torch.Tensor, top_k: int) -> tuple[np.ndarray, np.ndarray]:
        """The network on a normalised float batch: top-k scores and class ids, on the host."""
        inputs = normalised.to(self._dtype).contiguous(memory_format=torch.channels_last)
        logits = self._network(inputs).float()
        scores = logits.softmax(dim=1) if self._activation == "softmax" else logits.sigmoid()
        top_scores, top_ids = scores.topk(min(top_k, scores.shape[1]), dim=1)
        return top_scores.cpu().numpy(), top_ids.cpu().numpy()

    def _own_stream(self) -> AbstractContextManager[object]:
        """On CUDA, this thread's own stream (the results' copy to the host waits for it)."""
        if self._device.type != "cuda":
            return nullcontext()
        stream = getattr(self._streams, "stream", None)
        if stream is None:
            stream = self._streams.stream = torch.cuda.Stream(self._device)  # type: ignore[no-untyped-call]
        return torch.cuda.stream(stream)

    def _to_device(self, pixels: np.ndarray) -> torch.Tensor:
        host = torch.from_numpy(pixels)
        if self._device.type != "cuda":
            return host
        staging: torch.Tensor | None = getattr(self._staging, "buffer", None)
        if (
            staging is None
            or staging.shape[0] < host.shape[0]
            or staging.shape[1:] != host.shape[1:]
        ):
            staging = torch.empty(host.shape, dtype=torch.uint8).pin_memory()
            self._staging.buffer = staging
        staged = staging[: host.shape[0]]
        staged.copy_(host)
        return staged.to(self._device, non_blocking=True)
