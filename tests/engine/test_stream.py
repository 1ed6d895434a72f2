"""Streams without a network: order, per-frame errors, both policies, bounds, draining."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from fakes import ColourNet, colour_model, solid_png
from recognizer.config.schema import EngineSettings
from recognizer.engine.engine import Engine
from recognizer.engine.stream import (
    EVERY_FRAME_WINDOW,
    LATEST_FRAME_UNWRITTEN,
    Answered,
    Failed,
    Frame,
    FrameResult,
    StreamPolicy,
    StreamSettings,
    classify_stream,
)
from recognizer.engine.types import Options
from recognizer.errors import InvalidImageError, RateLimitedError, ShuttingDownError
from recognizer.models.raw import RawFrame
from recognizer.outcomes import FrameOutcome

COLOURS = [(200, 0, 0), (0, 200, 0), (0, 0, 200)]
LATEST = StreamSettings(policy=StreamPolicy.LATEST_FRAME)


def top_class(result: FrameResult) -> int:
    assert isinstance(result, Answered), result
    return result.classification.labels[0].class_id


async def frames_of(
    images: list[bytes], read: list[int] | None = None, every_s: float = 0.0
) -> AsyncIterator[Frame]:
    for index, image in enumerate(images):
        if read is not None:
            read.append(index)
        yield Frame(f"frame-{index}", image, Options(top_k=1))
        if every_s:
            await asyncio.sleep(every_s)


async def make_engine(delay_s: float = 0.0, **settings: object) -> Engine:
    engine = Engine(
        [colour_model(network=ColourNet(delay_s))],
        EngineSettings(max_batch_size=4, max_batch_delay_ms=5, **settings),  # type: ignore[arg-type]
    )
    await engine.start()
    return engine


async def test_answers_come_in_the_order_frames_were_sent() -> None:
    engine = await make_engine()
    images = [solid_png(COLOURS[i % 3]) for i in range(30)]
    results = [r async for r in classify_stream(engine, frames_of(images))]
    await engine.close()
    assert [r.request_id for r in results] == [f"frame-{i}" for i in range(30)]
    assert [top_class(r) for r in results] == [i % 3 for i in range(30)]


async def test_a_corrupt_frame_is_answered_with_its_error_and_the_stream_goes_on() -> None:
    engine = await make_engine()
    bad_raw = RawFrame(4, 4, None, b"\0" * 48)
    frames = [
        Frame("ok", solid_png(COLOURS[0]), Options()),
        Frame("corrupt", b"\x89PNG garbage", Options()),
        Frame("unknown-format", bad_raw, Options()),
        Frame("after", solid_png(COLOURS[2]), Options()),
    ]

    async def feed() -> AsyncIterator[Frame]:
        for frame in frames:
            yield frame

    results = [r async for r in classify_stream(engine, feed())]
    await engine.close()
    assert [type(r) for r in results] == [Answered, Failed, Failed, Answered]
    corrupt, unknown_format = results[1], results[2]
    assert isinstance(corrupt, Failed) and isinstance(corrupt.error, InvalidImageError)
    assert isinstance(unknown_format, Failed)
    assert isinstance(unknown_format.error, InvalidImageError)
    assert unknown_format.error.field == "raw_image.format"
    assert top_class(results[3]) == 2


async def test_every_frame_stops_reading_at_its_window_so_flow_control_reaches_the_sender() -> None:
    engine = await make_engine(delay_s=0.2)
    read: list[int] = []
    stream = classify_stream(engine, frames_of([solid_png(COLOURS[0])] * 50, read))
    first = await anext(stream)
    assert first.request_id == "frame-0"
    # The window of unanswered frames, plus the one the reader holds while it waits.
    assert len(read) <= EVERY_FRAME_WINDOW + 2
    await stream.aclose()
    await engine.close()


async def test_every_frame_never_skips_even_when_the_model_is_slow() -> None:
    engine = await make_engine(delay_s=0.02, inference_workers=1)
    images = [solid_png(COLOURS[1])] * 25
    results = [r async for r in classify_stream(engine, frames_of(images))]
    await engine.close()
    assert [r.outcome for r in results] == [FrameOutcome.ANSWERED] * 25


async def test_latest_frame_skips_stale_frames_and_answers_the_newest() -> None:
    engine = await make_engine(delay_s=0.05, inference_workers=1)
    images = [solid_png(COLOURS[i % 3]) for i in range(40)]
    results = [r async for r in classify_stream(engine, frames_of(images, every_s=0.005), LATEST)]
    await engine.close()
    outcomes = [r.outcome for r in results]
    assert [r.request_id for r in results] == [f"frame-{i}" for i in range(40)]
    assert outcomes.count(FrameOutcome.SKIPPED) >= 20
    assert outcomes[-1] is FrameOutcome.ANSWERED  # the last frame is never replaced
    for index, result in enumerate(results):
        if isinstance(result, Answered):
            assert top_class(result) == index % 3


async def test_latest_frame_skips_frames_older_than_the_maximum_age() -> None:
    engine = await make_engine(delay_s=0.06, inference_workers=1)
    settings = StreamSettings(policy=StreamPolicy.LATEST_FRAME, max_frame_age_s=0.03)
    images = [solid_png(COLOURS[0])] * 12
    results = [r async for r in classify_stream(engine, frames_of(images, every_s=0.02), settings)]
    await engine.close()
    answered = [r for r in results if isinstance(r, Answered)]
    assert answered and len(answered) < len(results)
    for result in answered:
        assert result.classification.timing.queue_s < 0.03 + 0.02


async def test_latest_frame_stops_reading_when_the_client_stops_reading_answers() -> None:
    engine = await make_engine(delay_s=0.01)
    read: list[int] = []

    async def endless() -> AsyncIterator[Frame]:
        index = 0
        while True:
            read.append(index)
            yield Frame(str(index), solid_png(COLOURS[0]), Options())
            index += 1
            await asyncio.sleep(0)

    stream = classify_stream(engine, endless(), LATEST)
    await anext(stream)
    await asyncio.sleep(0.5)  # the client reads nothing more
    assert len(read) <= LATEST_FRAME_UNWRITTEN + 3
    await stream.aclose()
    await engine.close()


async def test_draining_answers_outstanding_frames_then_ends_the_stream() -> None:
    engine = await make_engine(delay_s=0.05)
    never_ending = asyncio.Event()

    async def camera() -> AsyncIterator[Frame]:
        for index in range(3):
            yield Frame(f"frame-{index}", solid_png(COLOURS[0]), Options())
        await never_ending.wait()  # a camera that keeps the stream open
        yield Frame("late", solid_png(COLOURS[0]), Options())

    answered = []
    with pytest.raises(ShuttingDownError):
        async for result in classify_stream(engine, camera()):
            answered.append(result.request_id)
            if len(answered) == 1:
                engine.drain()
    assert answered == ["frame-0", "frame-1", "frame-2"]
    await engine.close()


async def test_a_failure_reading_the_stream_ends_it_with_that_failure() -> None:
    engine = await make_engine()

    async def broken() -> AsyncIterator[Frame]:
        yield Frame("frame-0", solid_png(COLOURS[1]), Options())
        raise ConnectionError("client went away")

    answered = []
    with pytest.raises(ConnectionError):
        async for result in classify_stream(engine, broken()):
            answered.append(result.request_id)
    assert answered == ["frame-0"]
    await engine.close()


@pytest.mark.parametrize("settings", [StreamSettings(), LATEST])
async def test_closing_a_stream_early_leaves_no_task_and_no_queued_work(
    settings: StreamSettings,
) -> None:
    engine = await make_engine(delay_s=0.1)
    stream = classify_stream(engine, frames_of([solid_png(COLOURS[0])] * 20), settings)
    await anext(stream)
    await stream.aclose()
    await asyncio.sleep(0.3)
    assert engine.pending() == 0
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert [t for t in others if t.get_name() != "watchdog"] == []  # the engine's own
    await engine.close()


async def test_a_stream_opened_while_draining_is_refused() -> None:
    engine = await make_engine()
    engine.drain()
    with pytest.raises(ShuttingDownError):
        await anext(classify_stream(engine, frames_of([solid_png(COLOURS[0])])))
    assert engine.pending() == 0
    await engine.close()


async def test_draining_before_the_stream_reads_its_first_frame_still_ends_it() -> None:
    engine = await make_engine()
    first = asyncio.ensure_future(
        anext(classify_stream(engine, frames_of([solid_png(COLOURS[0])])))
    )
    # Runs after the stream starts its reader and before the reader's first step.
    asyncio.get_running_loop().call_soon(engine.drain)
    with pytest.raises(ShuttingDownError):
        await asyncio.wait_for(first, timeout=5)
    await engine.close()


async def test_frames_over_the_callers_rate_limit_fail_alone_and_the_stream_goes_on() -> None:
    engine = await make_engine(rate_limit=1, rate_limit_burst=3)
    images = [solid_png(COLOURS[2])] * 6
    results = [r async for r in classify_stream(engine, frames_of(images), tenant="camera")]
    await engine.close()
    assert [r.outcome for r in results[:3]] == [FrameOutcome.ANSWERED] * 3
    refused = [r for r in results if isinstance(r, Failed)]
    assert len(refused) >= 2  # the burst is spent; a token comes a second later
    assert all(isinstance(r.error, RateLimitedError) for r in refused)
