"""Each caller's share of the server's calls: a caller alone may hold them all; a caller
within its share takes the place of the newest call of the caller holding the most."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from recognizer.errors import TooManyCallsError
from recognizer.service.calls import RETRY_AFTER_S, CallShares


def test_a_caller_alone_may_hold_every_call_and_no_more() -> None:
    shares = CallShares(3)
    ended: list[TooManyCallsError] = []
    with ExitStack() as calls:
        for _ in range(3):
            calls.enter_context(shares.place("10.0.0.7", ended.append))
        with pytest.raises(TooManyCallsError) as refused:
            calls.enter_context(shares.place("10.0.0.7", ended.append))
        assert "holds 3 of them, its share being 3" in refused.value.message
        assert refused.value.reason == "TOO_MANY_CALLS"
        assert refused.value.retry_after_s == RETRY_AFTER_S
    assert (shares.total, ended) == (0, [])


def test_a_caller_within_its_share_takes_the_place_of_the_biggest_holders_newest() -> None:
    shares = CallShares(4)
    ended: list[int] = []
    with ExitStack() as calls:
        for index in range(4):
            calls.enter_context(shares.place("abuser", lambda _, index=index: ended.append(index)))
        calls.enter_context(shares.place("shop", lambda _: ended.append(-1)))
        assert ended == [3]  # the abuser's newest
        assert (shares.held("abuser"), shares.held("shop")) == (3, 1)
        calls.enter_context(shares.place("shop", lambda _: ended.append(-1)))
        assert ended == [3, 2]
        with pytest.raises(TooManyCallsError):  # the abuser is at its share (2 of 4)
            calls.enter_context(shares.place("abuser", lambda _: ended.append(-2)))
    assert shares.total == 0
