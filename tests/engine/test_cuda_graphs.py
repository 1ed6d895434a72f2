"""CUDA graphs' bucketing and padding, and the fall-back to eager where recording fails.

Recording and replaying need a GPU; here only what surrounds them runs.
"""

from __future__ import annotations

import logging

import pytest
import torch

from recognizer.engine.backends.cuda_graphs import (
    bucket_for,
    graph_buckets,
    graphs_or_eager,
    pad_to,
)


@pytest.mark.parametrize(
    ("largest", "buckets"),
    [(1, (1,)), (2, (1, 2)), (8, (1, 2, 4, 8)), (48, (1, 2, 4, 8, 16, 32, 48))],
)
def test_buckets_are_the_powers_of_two_and_the_largest_batch(
    largest: int, buckets: tuple[int, ...]
) -> None:
    assert graph_buckets(largest) == buckets


def test_a_batch_runs_in_the_smallest_bucket_that_holds_it() -> None:
    buckets = graph_buckets(48)
    assert [bucket_for(size, buckets) for size in (1, 3, 4, 17, 33, 48)] == [1, 4, 4, 32, 48, 48]
    with pytest.raises(ValueError, match="over the largest graph"):
        bucket_for(49, buckets)
    with pytest.raises(ValueError, match="at least 1"):
        graph_buckets(0)


def test_padding_adds_zero_rows_and_keeps_the_batch() -> None:
    batch = torch.ones(3, 2, 2)
    padded = pad_to(batch, 4)
    assert padded.shape == (4, 2, 2)
    assert torch.equal(padded[:3], batch) and not padded[3].any()
    assert pad_to(batch, 3) is batch


def test_a_network_that_cannot_be_recorded_runs_eagerly(caplog: pytest.LogCaptureFixture) -> None:
    network = torch.nn.Identity()
    with caplog.at_level(logging.WARNING):
        chosen = graphs_or_eager(network, torch.zeros(1, 3, 4, 4), 4, name="identity")
    assert chosen is network
    assert "CUDA graphs could not be recorded" in caplog.text
