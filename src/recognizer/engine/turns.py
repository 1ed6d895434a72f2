"""Fair turns: how a lower priority class keeps moving while higher classes have work.

Work is taken highest class first; after FAIR_TURNS takings in a row given to higher
classes while a lower one waited, the next goes to the lower class waiting longest
without a turn. So a waiting class gets at least one taking in every FAIR_TURNS + 1,
shared in turn among the lower classes when several wait. The batch queue (batching.py)
counts batches with it, the pools (pools.py) pieces of work: a class starved at either
would be starved everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

FAIR_TURNS = 8  # takings a higher class may have in a row while a lower class waits


class FairTurns:
    """The fair rotation's count; not thread-safe (each user holds its own lock)."""

    def __init__(self) -> None:
        self._passed_over = 0  # takings in a row by a higher class while a lower one waited
        self._takings = 0
        self._last_turn: dict[int, int] = {}  # the taking count at each class's last turn

    def candidates(self, waiting: Sequence[int]) -> tuple[list[int], bool]:
        """The classes to take from, in order, given those `waiting` (highest first), and
        whether the first is a lower class's fair turn."""
        lower = waiting[1:]
        if lower and self._passed_over >= FAIR_TURNS:
            turn = min(lower, key=lambda priority: self._last_turn.get(priority, -1))
            return [turn, *waiting], True
        return list(waiting), False

    def taken(self, priority: int, *, lower_turn: bool, lower_waiting: bool) -> None:
        """Count a taking of `priority`: `lower_turn` when a higher class waited too (its
        fair turn, or the higher one had to wait), `lower_waiting` when a class below
        `priority` still waits."""
        self._takings += 1
        self._last_turn[priority] = self._takings
        passed_over = lower_waiting and not lower_turn
        self._passed_over = self._passed_over + 1 if passed_over else 0
