"""The network recorded as CUDA graphs, one per bucket of batch sizes, replayed with padding.

At batch 1 an eager forward of a small network is bound by kernel launches (about 3.4 ms
on an H100, against 0.6 ms replayed as a graph: ../shared/notes/measured-limits.md), so
on CUDA the Torch backend records the network once per bucket at warm-up and runs a
batch by padding it to the smallest bucket that holds it. Buckets are the powers of two
up to the largest batch, and the largest batch itself, so padding never doubles the work
and few graphs are kept. A graph replays into fixed buffers, so replays are serialised:
on the host by a lock, and on the device by an event, since each worker thread queues its
replay on a stream of its own.

Not yet run on a GPU: the capture falls back to eager execution on any error, and the
choice is timed against eager at start-up and logged.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence

import torch

logger = logging.getLogger(__name__)

Network = Callable[[torch.Tensor], torch.Tensor]
_WARM_UP_RUNS = 3  # eager runs on a side stream before capture, as PyTorch's docs ask
_TIMED_RUNS = 10


def graph_buckets(max_batch_size: int) -> tuple[int, ...]:
    """The batch sizes to record: powers of two below the largest batch, then the largest."""
    if max_batch_size < 1:
        raise ValueError(f"the largest batch must be at least 1, not {max_batch_size}")
    powers = {1 << power for power in range(max_batch_size.bit_length())}  # all <= the largest
    return tuple(sorted(powers | {max_batch_size}))


def bucket_for(batch_size: int, buckets: Sequence[int]) -> int:
    """The smallest bucket that holds the batch; a batch larger than all is refused."""
    position = bisect_left(buckets, batch_size)
    if position == len(buckets):
        raise ValueError(f"a batch of {batch_size} is over the largest graph ({buckets[-1]})")
    return buckets[position]


def pad_to(batch: torch.Tensor, size: int) -> torch.Tensor:
    """The batch with zero rows after it, up to `size` rows (itself if already that size)."""
    missing = size - batch.shape[0]
    if missing <= 0:
        return batch
    padding = torch.zeros((missing, *batch.shape[1:]), dtype=batch.dtype, device=batch.device)
    return torch.cat([batch, padding])


class GraphedNetwork:
    """A network replayed from CUDA graphs recorded for each bucket of batch sizes."""

    def __init__(self, network: Network, example: torch.Tensor, max_batch_size: int) -> None:
        """Record `network` for channels-last inputs shaped like `example` (one row of it)."""
        self.buckets = graph_buckets(max_batch_size)
        self._network = network
        self._lock = threading.Lock()
        self._free = torch.cuda.Event()  # type: ignore[no-untyped-call]  # buffers free again
        self._inputs: dict[int, torch.Tensor] = {}
        self._outputs: dict[int, torch.Tensor] = {}
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}
        pool = None
        torch.cuda.synchronize(example.device)  # every worker stream's work done first
        side = torch.cuda.Stream(example.device)  # type: ignore[no-untyped-call]
        side.wait_stream(torch.cuda.current_stream(example.device))
        for size in reversed(self.buckets):  # the largest first, so the others reuse its pool
            static = pad_to(example[:1], size).clone(memory_format=torch.channels_last)
            with torch.cuda.stream(side):
                for _ in range(_WARM_UP_RUNS):
                    network(static)
            torch.cuda.current_stream(example.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            # thread_local: only this thread's calls are barred while recording, not a
            # neighbouring model's worker
            with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
                self._outputs[size] = network(static)
            pool = graph.pool()
            self._inputs[size], self._graphs[size] = static, graph

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        size = batch.shape[0]
        if size > self.buckets[-1]:  # larger than recorded (the batch-size tuning's trials)
            return self._network(batch)
        bucket = bucket_for(size, self.buckets)
        with self._lock:
            torch.cuda.current_stream(batch.device).wait_event(self._free)
            self._inputs[bucket][:size].copy_(batch)
            self._graphs[bucket].replay()
            logits = self._outputs[bucket][:size].clone()
            self._free.record()
            return logits


def graphs_or_eager(
    network: Network, example: torch.Tensor, max_batch_size: int, *, name: str
) -> Network:
    """The graphed network where recording works and runs faster than eager; else `network`.

    The choice, and the times it rests on, are logged.
    """
    try:
        graphed = GraphedNetwork(network, example, max_batch_size)
    except Exception as error:  # capture fails in many ways (dynamic shapes, host syncs)
        logger.warning("%s: CUDA graphs could not be recorded (%s); running eagerly", name, error)
        return network
    batch = pad_to(example[:1], max_batch_size).contiguous(memory_format=torch.channels_last)
    eager_s, graph_s = _timed(network, batch), _timed(graphed, batch)
    chosen = "CUDA graphs" if graph_s < eager_s else "eager"
    logger.info(
        "%s: %s at batch %d: eager %.2f ms, CUDA graph %.2f ms (graphs for batch sizes %s)",
        name,
        chosen,
        max_batch_size,
        eager_s * 1000,
        graph_s * 1000,
        ", ".join(map(str, graphed.buckets)),
    )
    return graphed if graph_s < eager_s else network


def _timed(network: Network, batch: torch.Tensor) -> float:
    """Seconds per run of the network on the batch, the device synchronised."""
    network(batch)
    torch.cuda.synchronize(batch.device)
    started = time.perf_counter()
    for _ in range(_TIMED_RUNS):
        network(batch)
    torch.cuda.synchronize(batch.device)
    return (time.perf_counter() - started) / _TIMED_RUNS
