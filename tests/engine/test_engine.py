"""The engine without a network: correct answers, batching, limits, fair shares, rate limits,
memory budgets, deadlines, isolation."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import suppress

import numpy as np
import pytest

from fakes import POISON, ColourNet, colour_model, solid_png
from recognizer.config.schema import EngineSettings
from recognizer.engine.engine import DRAIN_QUIET_MAX_S, DRAIN_QUIET_S, Engine, ServedModel
from recognizer.engine.types import Options
from recognizer.errors import (
    DeadlineExceededError,
    InvalidImageError,
    InvalidRequestError,
    ModelNotFoundError,
    OverloadedError,
    RateLimitedError,
    ShuttingDownError,
)

RED, GREEN, BLUE = (200, 10, 10), (10, 200, 10), (10, 10, 200)


async def started(models: list[ServedModel], **settings: object) -> Engine:
    engine = Engine(models, EngineSettings(**settings))  # type: ignore[arg-type]
    await engine.start()
    return engine


@pytest.fixture
async def engine() -> AsyncIterator[Engine]:
    engine = await started([colour_model()], max_batch_size=4, max_batch_delay_ms=20)
    yield engine
    await engine.close()


async def test_classifies_with_labels_in_the_asked_language(engine: Engine) -> None:
    result = await engine.classify(solid_png(GREEN), Options(top_k=2, language="en-US"))
    assert result.model == "colours"
    assert result.language == "en"
    assert result.labels[0].class_id == 1
    assert result.labels[0].name == "green"
    assert result.labels[0].score > result.labels[1].score
    chinese = await engine.classify(solid_png(BLUE), Options())
    assert (chinese.language, chinese.labels[0].name) == ("zh", "蓝")


async def test_top_k_defaults_to_five_clamped_to_the_class_count(engine: Engine) -> None:
    result = await engine.classify(solid_png(RED), Options())
    assert result.labels[0].class_id == 0
    assert len(result.labels) == 3  # default 5, but the model has 3 classes
    one = await engine.classify(solid_png(RED), Options(top_k=1))
    assert len(one.labels) == 1


async def test_scores_are_every_class_by_id_with_only_top_k_named() -> None:
    engine = await started([colour_model()], max_top_k=2, cache_entries=8)
    try:
        without = await engine.classify(solid_png(BLUE), Options(top_k=1))
        assert without.scores is None
        for _ in range(2):  # the second from the cache, which held top 1 only before
            result = await engine.classify(solid_png(BLUE), Options(top_k=1, scores=True))
            assert [label.class_id for label in result.labels] == [2]
            assert result.scores is not None and result.scores.dtype == np.float32
            assert result.scores.shape == (3,)
            # Ranked as deep as --max-top-k: the third class is past it, so it is 0.
            assert np.count_nonzero(result.scores) == 2
            assert result.scores[2] == pytest.approx(result.labels[0].score)
        assert result.timing.cache_hit
    finally:
        await engine.close()


async def test_min_score_drops_weak_labels(engine: Engine) -> None:
    result = await engine.classify(solid_png(RED), Options(top_k=3, min_score=0.5))
    assert [label.class_id for label in result.labels] == [0]


async def test_concurrent_requests_share_batches_and_each_gets_its_own_answer(
    engine: Engine,
) -> None:
    colours = [RED, GREEN, BLUE] * 4
    results = await asyncio.gather(
        *(engine.classify(solid_png(colour), Options(top_k=1)) for colour in colours)
    )
    assert [r.labels[0].class_id for r in results] == [0, 1, 2] * 4
    assert max(r.timing.batch_size for r in results) > 1
    assert all(r.timing.inference_s > 0 and r.timing.preprocess_s > 0 for r in results)


@pytest.mark.parametrize(
    ("options", "error", "field"),
    [
        (Options(model="nope"), ModelNotFoundError, None),
        (Options(language="fr"), InvalidRequestError, "language"),
        (Options(min_score=1.5), InvalidRequestError, "min_score"),
        (Options(min_score=float("nan")), InvalidRequestError, "min_score"),
    ],
)
async def test_bad_options_are_refused_before_any_work(
    engine: Engine, options: Options, error: type[Exception], field: str | None
) -> None:
    with pytest.raises(error) as raised:
        await engine.classify(solid_png(RED), options)
    if field is not None:
        assert raised.value.field == field
    assert engine.pending() == 0


async def test_unknown_model_error_lists_the_served_models(engine: Engine) -> None:
    with pytest.raises(ModelNotFoundError, match="served models: colours"):
        await engine.classify(solid_png(RED), Options(model="resnet"))


async def test_a_missing_language_falls_back_to_the_models_first_and_says_so() -> None:
    chinese_only = colour_model("zh-only", languages=("zh",))
    engine = await started([colour_model(), chinese_only])
    try:
        result = await engine.classify(solid_png(RED), Options(model="zh-only", language="en"))
        assert (result.language, result.labels[0].name) == ("zh", "红")
    finally:
        await engine.close()


async def test_a_bad_image_fails_alone_and_its_neighbours_are_answered(engine: Engine) -> None:
    good = [engine.classify(solid_png(GREEN), Options(top_k=1)) for _ in range(3)]
    bad = engine.classify(b"not an image", Options())
    results = await asyncio.gather(*good, bad, return_exceptions=True)
    assert isinstance(results[3], InvalidImageError)
    assert all(r.labels[0].class_id == 1 for r in results[:3])  # type: ignore[union-attr]


async def test_an_input_that_breaks_the_model_fails_alone_within_its_batch(engine: Engine) -> None:
    colours = [RED, POISON, BLUE, GREEN]
    results = await asyncio.gather(
        *(engine.classify(solid_png(colour), Options(top_k=1)) for colour in colours),
        return_exceptions=True,
    )
    assert isinstance(results[1], RuntimeError)
    assert [r.labels[0].class_id for r in (results[0], results[2], results[3])] == [0, 2, 1]  # type: ignore[union-attr]


async def test_a_full_queue_refuses_at_once_with_a_retry_hint() -> None:
    engine = await started(
        [colour_model(network=ColourNet(delay_s=0.2))],
        max_batch_size=1,
        inference_workers=1,
        max_queued_requests=2,
    )
    try:
        first = [asyncio.create_task(engine.classify(solid_png(RED), Options())) for _ in range(2)]
        await asyncio.sleep(0.05)
        started_at = time.monotonic()
        with pytest.raises(OverloadedError) as raised:
            await engine.classify(solid_png(RED), Options())
        assert time.monotonic() - started_at < 0.1
        assert raised.value.retry_after_s > 0
        assert len(await asyncio.gather(*first)) == 2
        assert engine.pending() == 0
        await engine.classify(solid_png(RED), Options())  # room again
    finally:
        await engine.close()


async def test_expired_requests_are_dropped_before_the_model() -> None:
    engine = await started(
        [colour_model(network=ColourNet(delay_s=0.3))], max_batch_size=1, inference_workers=1
    )
    try:
        blocker = asyncio.create_task(engine.classify(solid_png(RED), Options()))
        await asyncio.sleep(0.05)
        with pytest.raises(DeadlineExceededError):
            await engine.classify(solid_png(GREEN), Options(), deadline=time.monotonic() + 0.1)
        result = await blocker
        assert result.labels[0].class_id == 0
    finally:
        await engine.close()


async def test_cancelled_requests_are_dropped_and_release_their_place() -> None:
    network = ColourNet(delay_s=0.2)
    engine = await started([colour_model(network=network)], max_batch_size=1, inference_workers=1)
    try:
        seen_after_warm_up = network.images_seen
        blocker = asyncio.create_task(engine.classify(solid_png(RED), Options()))
        await asyncio.sleep(0.05)
        doomed = [
            asyncio.create_task(engine.classify(solid_png(BLUE), Options())) for _ in range(5)
        ]
        await asyncio.sleep(0.05)
        for task in doomed:
            task.cancel()
        await blocker
        await asyncio.sleep(0.3)
        assert network.images_seen - seen_after_warm_up == 1
        assert engine.pending() == 0
    finally:
        await engine.close()


async def test_draining_refuses_new_requests_and_finishes_accepted_ones() -> None:
    engine = await started(
        [colour_model(network=ColourNet(delay_s=0.1))], max_batch_size=1, inference_workers=1
    )
    accepted = asyncio.create_task(engine.classify(solid_png(BLUE), Options()))
    await asyncio.sleep(0.02)
    engine.drain()
    with pytest.raises(ShuttingDownError):
        await engine.classify(solid_png(RED), Options())
    await engine.close()
    assert (await accepted).labels[0].class_id == 2


async def test_draining_waits_until_refused_callers_go_quiet() -> None:
    engine = await started([colour_model()], max_batch_size=1)
    engine.drain()
    assert await engine.wait_idle(timeout=1)  # nobody is calling: idle at once
    with pytest.raises(ShuttingDownError):
        await engine.classify(solid_png(RED), Options())
    # A caller was just refused: its next call may be on the wire, so wait for quiet.
    assert not await engine.wait_idle(timeout=DRAIN_QUIET_S / 3)
    assert await engine.wait_idle(timeout=DRAIN_QUIET_S * 3)
    await engine.close()


async def test_draining_stops_waiting_for_quiet_when_refusals_go_on() -> None:
    engine = await started([colour_model()], max_batch_size=1)
    engine.drain()

    async def keep_calling() -> None:  # a client balancing over replicas, say
        while True:
            with suppress(ShuttingDownError):
                await engine.classify(solid_png(RED), Options())
            await asyncio.sleep(DRAIN_QUIET_S / 5)

    caller = asyncio.create_task(keep_calling())
    await asyncio.sleep(DRAIN_QUIET_S / 3)  # its first calls have been refused
    started_at = time.monotonic()
    assert await engine.wait_idle(timeout=DRAIN_QUIET_MAX_S * 5)
    assert DRAIN_QUIET_MAX_S <= time.monotonic() - started_at < DRAIN_QUIET_MAX_S * 3
    caller.cancel()
    await engine.close()


async def test_no_language_means_chinese_or_else_the_models_first() -> None:
    engine = await started([colour_model("en-only", languages=("en",))])
    try:
        result = await engine.classify(solid_png(RED), Options())
        assert (result.language, result.labels[0].name) == ("en", "red")
        with pytest.raises(InvalidRequestError, match="use one of: en"):
            await engine.classify(solid_png(RED), Options(language="zh"))
    finally:
        await engine.close()


@pytest.mark.parametrize("cache_entries", [0, 8])  # with the cache, hashing comes first
async def test_closing_answers_a_request_still_waiting_to_be_decoded(cache_entries: int) -> None:
    engine = await started(
        [colour_model()], max_batch_size=1, preprocess_threads=1, cache_entries=cache_entries
    )
    release = threading.Event()
    engine.pipeline.preprocess.submit(release.wait, 5)  # the only decoding thread is busy
    accepted = asyncio.create_task(engine.classify(solid_png(BLUE), Options()))
    await asyncio.sleep(0.05)
    closing = asyncio.create_task(engine.close())
    await asyncio.sleep(0.05)
    release.set()
    result = await asyncio.wait_for(accepted, timeout=5)
    await closing
    assert result.labels[0].class_id == 2


async def test_a_flooding_caller_cannot_make_a_modest_one_lose_a_request() -> None:
    engine = await started(
        [colour_model(network=ColourNet(delay_s=0.02))],
        max_batch_size=2,
        inference_workers=1,
        max_queued_requests=16,
    )
    refused = 0
    stop = asyncio.Event()

    async def flood() -> None:
        nonlocal refused
        while not stop.is_set():
            try:
                await engine.classify(solid_png(RED), Options(), tenant="flood")
            except OverloadedError:
                refused += 1
                await asyncio.sleep(0.005)

    flooders = [asyncio.create_task(flood()) for _ in range(40)]
    try:
        await asyncio.sleep(0.3)
        assert engine.pending() == 16  # the flood alone fills the queue
        answers = [
            await engine.classify(solid_png(GREEN), Options(top_k=1), tenant="modest")
            for _ in range(15)
        ]
        assert [a.labels[0].class_id for a in answers] == [1] * 15
        assert refused > 0
    finally:
        stop.set()
        await asyncio.gather(*flooders)
        await engine.close()


async def test_a_caller_over_its_rate_limit_is_refused_with_a_retry_hint() -> None:
    engine = await started([colour_model()], rate_limit=2, rate_limit_burst=2)
    try:
        for _ in range(2):
            await engine.classify(solid_png(RED), Options(), tenant="a")
        with pytest.raises(RateLimitedError) as refused:
            await engine.classify(solid_png(RED), Options(), tenant="a")
        assert 0 < refused.value.retry_after_s <= 0.5
        await engine.classify(solid_png(RED), Options(), tenant="b")  # a bucket of its own
    finally:
        await engine.close()


async def test_top_k_is_bounded_by_max_top_k_and_each_request_keeps_its_own() -> None:
    engine = await started([colour_model()], max_top_k=2, max_batch_size=4, max_batch_delay_ms=50)
    try:
        huge, small = await asyncio.gather(
            engine.classify(solid_png(RED), Options(top_k=2**31 - 1)),
            engine.classify(solid_png(RED), Options(top_k=1)),
        )
        assert huge.timing.batch_size == 2
        assert (len(huge.labels), len(small.labels)) == (2, 1)
    finally:
        await engine.close()


async def test_decoding_waits_for_room_in_the_memory_budget() -> None:
    big = solid_png(BLUE, size=600)  # 600 x 600 RGB: 1.4 MB decoded, more than the budget
    engine = await started([colour_model()], decode_budget_mb=1, preprocess_threads=4)
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, engine.pipeline.budget.used)
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    try:
        results = await asyncio.gather(*(engine.classify(big, Options()) for _ in range(8)))
        assert all(r.labels[0].class_id == 2 for r in results)
        assert 0 < peak <= engine.pipeline.budget.limit == 1 << 20
    finally:
        watcher.cancel()
        await engine.close()


async def test_a_request_whose_deadline_passes_waiting_for_memory_is_deadline_exceeded() -> None:
    engine = await started([colour_model()], decode_budget_mb=1)
    held = engine.pipeline.budget.acquire(1 << 20, give_up=lambda: False)
    assert held is not None
    try:
        with pytest.raises(DeadlineExceededError, match="waiting for memory"):
            await engine.classify(solid_png(RED), Options(), deadline=time.monotonic() + 0.2)
    finally:
        engine.pipeline.budget.release(held)
        await engine.close()
