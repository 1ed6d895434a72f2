"""The fair rotation alone: who is offered the next taking, and when a lower class's turn
comes."""

from __future__ import annotations

from recognizer.engine.turns import FAIR_TURNS, FairTurns


def take(turns: FairTurns, waiting: list[int]) -> int:
    """Take from the first candidate, as the pools do; return it."""
    candidates, _ = turns.candidates(waiting)
    chosen = candidates[0]
    lower_waiting = any(priority < chosen for priority in waiting)
    turns.taken(chosen, lower_turn=chosen != waiting[0], lower_waiting=lower_waiting)
    return chosen


def test_the_highest_class_waiting_goes_first_while_nothing_lower_waits() -> None:
    turns = FairTurns()
    assert [take(turns, [3]) for _ in range(3 * FAIR_TURNS)] == [3] * 3 * FAIR_TURNS
    assert turns.candidates([3, 2]) == ([3, 2], False)  # nobody lower was passed over yet


def test_a_lower_class_gets_one_turn_in_every_fair_turns_plus_one() -> None:
    turns = FairTurns()
    taken = [take(turns, [3, 2]) for _ in range(2 * (FAIR_TURNS + 1))]
    assert taken == ([3] * FAIR_TURNS + [2]) * 2


def test_lower_classes_share_the_fair_turns_in_rotation() -> None:
    turns = FairTurns()
    taken = [take(turns, [3, 2, 1]) for _ in range(2 * (FAIR_TURNS + 1))]
    assert taken[FAIR_TURNS] == 2 and taken[2 * FAIR_TURNS + 1] == 1
    assert turns.candidates([3, 2, 1])[1] is False  # the count starts again after a turn
