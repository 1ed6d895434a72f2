"""Streams without a network: order, per-frame errors, the in-flight window, draining."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from fakes import ColourNet, colour_model, solid_png
from recognizer.engine.engine import Engine
from recognizer.engine.settings import EngineSettings
from recognizer.engine.stream import Frame, classify_stream
from recognizer.engine.types import Options
from recognizer.errors import InvalidImageError, ShuttingDownError

COLOURS = [(200, 0, 0), (0, 200, 0), (0, 0, 200)]


async def frames_of(images: list[bytes], read: list[int] | None = None) -> AsyncIterator[Frame]:
    for index, image in enumerate(images):
        if read is not None:
            read.append(index)
        yield Frame(f"frame-{index}", image, Options(top_k=1))


async def make_engine(delay_s: float = 0.0) -> Engine:
    engine = Engine(
        [colour_model(network=ColourNet(delay_s))],
        EngineSettings(max_batch_size=4, max_batch_delay_ms=5),
    )
    await engine.start()
    return engine


async def test_answers_come_in_the_order_frames_were_sent() -> None:
    engine = await make_engine()
    images = [solid_png(COLOURS[i % 3]) for i in range(30)]
    results = [r async for r in classify_stream(engine, frames_of(images))]
    await engine.close()
    assert [r.request_id for r in results] == [f"frame-{i}" for i in range(30)]
    assert [r.classification.labels[0].class_id for r in results] == [i % 3 for i in range(30)]  # type: ignore[union-attr]


async def test_a_corrupt_frame_is_answered_with_its_error_and_the_stream_goes_on() -> None:
    engine = await make_engine()
    images = [solid_png(COLOURS[0]), b"\x89PNG garbage", solid_png(COLOURS[2])]
    results = [r async for r in classify_stream(engine, frames_of(images))]
    await engine.close()
    assert results[0].classification is not None
    assert isinstance(results[1].error, InvalidImageError)
    assert results[2].classification.labels[0].class_id == 2  # type: ignore[union-attr]


async def test_the_reader_stops_at_the_window_so_flow_control_reaches_the_sender() -> None:
    engine = await make_engine(delay_s=0.2)
    read: list[int] = []
    images = [solid_png(COLOURS[0])] * 50
    stream = classify_stream(engine, frames_of(images, read), window=4)
    first = await anext(stream)
    # One frame answered, at most `window` in flight and one more waiting for a slot.
    assert first.request_id == "frame-0"
    assert len(read) <= 1 + 4 + 1
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


async def test_closing_a_stream_early_cancels_its_outstanding_frames() -> None:
    engine = await make_engine(delay_s=0.1)
    stream = classify_stream(engine, frames_of([solid_png(COLOURS[0])] * 20), window=6)
    await anext(stream)
    await stream.aclose()
    await asyncio.sleep(0.5)
    assert engine.pending() == 0
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert tasks == []
    await engine.close()
