"""What the stages of every request share beside its model: the decoding and lookup
pools, the result cache and the decoding memory budget.

The engine builds one and binds each job it admits to it (with its model's runner), so
the stages (lifecycle.py) reach what they need through the job and never the engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from recognizer.engine.budget import MemoryBudget
from recognizer.engine.cache import ResultCache
from recognizer.engine.pools import PriorityThreads


@dataclass(frozen=True, slots=True)
class Pipeline:
    """`preprocess` decodes; `lookup` hashes large images so that a cached answer never
    waits behind decoding; `cache` is None when off."""

    preprocess: PriorityThreads
    lookup: PriorityThreads
    cache: ResultCache | None
    budget: MemoryBudget
