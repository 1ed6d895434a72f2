"""How large a model's batches may grow when it is left to the engine, per device.

On the CPU the engine by default never waits to fill a batch (the delay is 0), so the
limit only matters under load, when requests are already queued. CPU_BATCH_SIZE is the
limit that served best end to end since OpenVINO schedules its own calls (BENCHMARKS.md,
"Batch size on the CPU"): against 4, as much throughput or more and a lower p99. The
model alone shows no difference beyond the noise of a start-up measurement, so the CPU
is not tuned at start-up.

On a GPU, throughput grows with the batch up to a hundred or more, by how much depends
on the card and the model, so the engine measures it at start-up: batch sizes 1, 2, 4,
... with all its workers busy, keeping the smallest size within 10 % of the best (a
larger batch costs every request in it latency, so it must pay clearly). A size that
fails, out of device memory say, ends the search.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

CPU_BATCH_SIZE = 2
GPU_BATCH_LIMIT = 256  # the largest batch the tuner tries
NEAR_BEST = 0.9  # the tuner keeps the smallest batch this close to the best


def tune_batch_size(
    throughput: Callable[[int], float], *, limit: int
) -> tuple[int, dict[int, float]]:
    """The chosen batch size and the images per second `throughput(size)` gave for each size."""
    rates: dict[int, float] = {}
    batch_size = 1
    while batch_size <= limit:
        try:
            rates[batch_size] = throughput(batch_size)
        except Exception as error:  # out of device memory, say (torch and ONNX Runtime differ)
            if batch_size == 1:
                raise
            logger.warning("batch size %d failed (%s); trying no larger", batch_size, error)
            break
        if rates[batch_size] < 0.8 * max(rates.values()):
            break  # clearly past the best; larger batches will not come back
        batch_size *= 2
    best = max(rates.values())
    chosen = min(size for size, rate in rates.items() if rate >= NEAR_BEST * best)
    return chosen, rates
