"""The result cache: bounded, least recently used out, right for every option, kept apart
by tenant and by kind of image, and shared fairly between tenants."""

from __future__ import annotations

import asyncio
import hashlib
import struct

import numpy as np

from fakes import ColourNet, colour_model, solid_png
from recognizer.config.schema import EngineSettings
from recognizer.engine.cache import (
    CacheKey,
    ResultCache,
    cache_key,
    entry_bytes,
    image_digest,
)
from recognizer.engine.engine import Engine
from recognizer.engine.types import Options, TopClasses
from recognizer.models.raw import PixelFormat, RawFrame


def key(model: str, digest: bytes, tenant: str = "") -> CacheKey:
    return CacheKey(tenant, model, digest)


def scores(k: int) -> TopClasses:
    return TopClasses(np.linspace(1, 0, k, dtype=np.float32), np.arange(k))


def test_least_recently_used_entries_leave_first() -> None:
    cache = ResultCache(max_entries=2, max_bytes=1 << 20)
    cache.put(key("m", b"a"), scores(3))
    cache.put(key("m", b"b"), scores(3))
    assert cache.get(key("m", b"a"), 3) is not None  # a is now the most recent
    cache.put(key("m", b"c"), scores(3))
    assert cache.get(key("m", b"b"), 3) is None
    assert cache.get(key("m", b"a"), 3) is not None and cache.get(key("m", b"c"), 3) is not None
    assert (len(cache), cache.hits, cache.misses) == (2, 3, 1)


def test_the_byte_bound_holds() -> None:
    entry = scores(1000)
    cache = ResultCache(max_entries=100, max_bytes=3 * entry_bytes(entry))
    for number in range(10):
        cache.put(key("m", bytes([number])), scores(1000))
        assert cache.nbytes <= cache.max_bytes
    assert len(cache) == 3
    cache.put(key("m", b"huge"), scores(100_000))  # larger than the whole cache: not kept
    assert cache.get(key("m", b"huge"), 1) is None and len(cache) == 3


def test_entries_answer_fewer_labels_but_not_more() -> None:
    cache = ResultCache(max_entries=10, max_bytes=1 << 20)
    cache.put(key("m", b"x"), scores(5))
    hit = cache.get(key("m", b"x"), 2)
    assert hit is not None and hit.class_ids.tolist() == [0, 1]
    assert cache.get(key("m", b"x"), 6) is None
    assert cache.get(key("other-model", b"x"), 1) is None


def test_digests_tell_raw_frames_by_their_geometry() -> None:
    data = bytes(48)
    square = RawFrame(4, 4, PixelFormat.RGB8, data)
    assert image_digest(square) != image_digest(RawFrame(8, 2, PixelFormat.RGB8, data))
    assert image_digest(square) != image_digest(RawFrame(4, 4, PixelFormat.BGR8, data))
    assert image_digest(square) == image_digest(RawFrame(4, 4, PixelFormat.RGB8, bytes(48)))
    assert image_digest(b"abc") != image_digest(b"abd")


def test_raw_frames_and_encoded_images_hash_in_separate_spaces() -> None:
    frame = RawFrame(4, 4, PixelFormat.RGB8, bytes(48))
    # The bytes an unpersonalised hash of the frame would read, sent as an encoded image:
    layout = struct.pack("<III", 4, 4, 0) + b"RGB8" + bytes(48)
    unpersonalised = hashlib.blake2b(layout, digest_size=16).digest()
    assert image_digest(layout) != unpersonalised
    assert image_digest(frame) != image_digest(layout)


def test_tenants_have_entries_of_their_own() -> None:
    cache = ResultCache(max_entries=10, max_bytes=1 << 20)
    cache.put(key("m", b"x", tenant="shop"), scores(3))
    assert cache.get(key("m", b"x", tenant="shop"), 3) is not None
    assert cache.get(key("m", b"x", tenant="vision"), 3) is None
    assert cache.get(key("m", b"x"), 3) is None


def kept(cache: ResultCache, tenant: str, count: int) -> list[int]:
    """Which of a tenant's entries 0..count-1 the cache still holds."""
    return [n for n in range(count) if cache.get(key("m", bytes([n]), tenant), 3) is not None]


def test_a_tenant_alone_may_fill_the_whole_cache() -> None:
    cache = ResultCache(max_entries=10, max_bytes=1 << 20)
    for number in range(12):
        cache.put(key("m", bytes([number]), tenant="shop"), scores(3))
    assert kept(cache, "shop", 12) == list(range(2, 12))


def test_another_tenants_inserts_never_evict_a_tenant_within_its_share() -> None:
    cache = ResultCache(max_entries=10, max_bytes=1 << 20)
    for number in range(4):  # under half the cache, its share beside one other tenant
        cache.put(key("m", bytes([number]), tenant="shop"), scores(3))
    for number in range(100):
        cache.put(key("m", bytes([number]), tenant="vision"), scores(3))
    assert kept(cache, "shop", 4) == [0, 1, 2, 3]  # nothing tells shop how much vision sent
    assert kept(cache, "vision", 100) == list(range(94, 100))  # the rest, its newest


def test_a_tenant_over_its_share_gives_its_oldest_entries_to_a_newcomer() -> None:
    cache = ResultCache(max_entries=10, max_bytes=1 << 20)
    for number in range(10):
        cache.put(key("m", bytes([number]), tenant="shop"), scores(3))
    for number in range(8):
        cache.put(key("m", bytes([number]), tenant="vision"), scores(3))
    assert kept(cache, "shop", 10) == list(range(5, 10))  # down to its share, newest kept
    assert kept(cache, "vision", 8) == list(range(3, 8))  # at its share, its own go first
    assert len(cache) == 10


def test_the_byte_bound_is_shared_too() -> None:
    large, small = scores(1000), scores(3)
    cache = ResultCache(max_entries=1000, max_bytes=4 * entry_bytes(large))
    for number in range(4):
        cache.put(key("m", bytes([number]), tenant="shop"), large)
    for number in range(200):
        cache.put(key("m", bytes([number]), tenant="vision"), small)
    assert cache.nbytes <= cache.max_bytes
    assert len(kept(cache, "shop", 4)) == 2  # half the bytes: two large entries
    assert kept(cache, "vision", 200)[-1] == 199


async def test_a_repeated_image_skips_decoding_and_the_model() -> None:
    network = ColourNet()
    engine = Engine(
        [colour_model(network=network)], EngineSettings(max_batch_size=1, cache_entries=8)
    )
    await engine.start()
    image = solid_png((0, 0, 200))
    first = await engine.classify(image, Options(top_k=2))
    seen = network.images_seen
    again = await engine.classify(image, Options(top_k=1, language="en"))
    assert (first.timing.cache_hit, again.timing.cache_hit) == (False, True)
    assert network.images_seen == seen
    assert [label.class_id for label in again.labels] == [2]
    assert again.labels[0].name == "blue" and first.labels[0].name == "蓝"
    assert again.labels[0].score == first.labels[0].score
    more = await engine.classify(image, Options(top_k=3))  # more labels than cached: recomputed
    assert not more.timing.cache_hit and len(more.labels) == 3
    assert (await engine.classify(image, Options(top_k=3))).timing.cache_hit
    strict = await engine.classify(image, Options(top_k=3, min_score=0.9))
    assert strict.timing.cache_hit and len(strict.labels) < 3
    assert engine.pipeline.cache is not None and engine.pipeline.cache.hits == 3
    await engine.close()


async def test_the_cache_is_off_by_default() -> None:
    engine = Engine([colour_model()], EngineSettings(max_batch_size=1))
    await engine.start()
    image = solid_png((0, 200, 0))
    await engine.classify(image, Options())
    assert not (await engine.classify(image, Options())).timing.cache_hit
    assert engine.pipeline.cache is None
    await engine.close()


async def test_entries_own_their_arrays_not_their_batchs() -> None:
    engine = Engine(
        [colour_model()], EngineSettings(max_batch_size=4, max_batch_delay_ms=50, cache_entries=8)
    )
    await engine.start()
    images = [solid_png((0, 0, 200 + i)) for i in range(4)]
    await asyncio.gather(*(engine.classify(image, Options(top_k=2)) for image in images))
    assert engine.pipeline.cache is not None
    for image in images:
        hit = engine.pipeline.cache.get(cache_key("", engine.runner("colours").cached_as, image), 2)
        assert hit is not None
        entry_scores = hit.scores.base  # the cached entry, which `get` slices
        assert entry_scores is not None and entry_scores.base is None and entry_scores.size == 2
    await engine.close()


async def test_one_tenants_flood_leaves_anothers_cached_answers_in_place() -> None:
    engine = Engine([colour_model()], EngineSettings(max_batch_size=4, cache_entries=8))
    await engine.start()
    mine = solid_png((200, 0, 0))
    await engine.classify(mine, Options(), tenant="shop")
    for blue in range(40):
        await engine.classify(solid_png((0, 0, 100 + blue)), Options(), tenant="vision")
    assert (await engine.classify(mine, Options(), tenant="shop")).timing.cache_hit
    await engine.close()
