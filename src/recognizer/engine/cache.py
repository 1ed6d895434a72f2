"""A result cache for images seen before.

Keyed by the tenant, the model and a BLAKE2b digest of the image's bytes (a raw frame's
geometry is hashed too), so the same picture sent again skips decoding and inference.
Encoded images and raw frames hash in separate spaces (BLAKE2b's personalisation), so
no raw frame can be built to collide with an encoded image. Without auth every caller
is the one tenant "".

Each tenant has a part of its own, least recently used first out, and a fair share of
the bounds (entry count and bytes), as callers have of a model's queue (shares.py): a
tenant alone may fill the whole cache; when it is full, the tenants holding entries
share it evenly, and an insert evicts from the inserting tenant's own part while that
holds more than its share, else from the part holding the most. So no tenant's inserts
evict the entries of a tenant within its share, and a caller's `cache_hit` (and its
timing) says nothing about what another tenant sent, nor how much.

It stores a model's top-k scores and class ids, not labels, so one entry serves every
language and min_score; a request for more labels than an entry holds is a miss and
refreshes the entry.
"""

from __future__ import annotations

import hashlib
import struct
import threading
from collections import OrderedDict
from typing import NamedTuple

from recognizer.engine.types import TopClasses
from recognizer.models.raw import RawFrame

# Bytes an entry costs beyond its arrays: the key, the OrderedDict node, the objects.
_ENTRY_OVERHEAD = 256
# BLAKE2b personalisations (at most 16 bytes): one hash space per kind of image.
ENCODED_SPACE = b"recognizer.image"
RAW_SPACE = b"recognizer.frame"


class CacheKey(NamedTuple):
    """Whose entry (tenant), for which model, of which image (digest)."""

    tenant: str
    model: str
    digest: bytes


def entry_bytes(entry: TopClasses) -> int:
    """What an entry costs the cache: its arrays and the bookkeeping around them."""
    return int(entry.scores.nbytes + entry.class_ids.nbytes) + _ENTRY_OVERHEAD


def cache_key(tenant: str, model: str, image: bytes | RawFrame) -> CacheKey:
    """The key of an image's entry; hashing blocks on large images, so it runs in a pool."""
    return CacheKey(tenant, model, image_digest(image))


def image_digest(image: bytes | RawFrame) -> bytes:
    """A 128-bit content hash, in the hash space of the image's kind."""
    if isinstance(image, RawFrame):
        digest = hashlib.blake2b(digest_size=16, person=RAW_SPACE)
        layout = image.format.name if image.format else "?"
        digest.update(struct.pack("<III", image.width, image.height, image.row_stride))
        digest.update(layout.encode())
        digest.update(image.data)
    else:
        digest = hashlib.blake2b(image, digest_size=16, person=ENCODED_SPACE)
    return digest.digest()


class _Part:
    """One tenant's entries, least recently used first, and the bytes they cost."""

    __slots__ = ("entries", "nbytes")

    def __init__(self) -> None:
        self.entries: OrderedDict[CacheKey, TopClasses] = OrderedDict()
        self.nbytes = 0


class ResultCache:
    """A thread-safe map from CacheKey to TopClasses, in LRU parts by tenant, with counters."""

    def __init__(self, *, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._parts: dict[str, _Part] = {}
        self._entries = 0
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self._entries

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key: CacheKey, top_k: int) -> TopClasses | None:
        """The cached best `top_k` classes, if the entry holds at least that many."""
        with self._lock:
            part = self._parts.get(key.tenant)
            entry = part.entries.get(key) if part else None
            if part is None or entry is None or len(entry.class_ids) < top_k:
                self.misses += 1
                return None
            part.entries.move_to_end(key)
            self.hits += 1
        return TopClasses(entry.scores[:top_k], entry.class_ids[:top_k])

    def put(self, key: CacheKey, entry: TopClasses) -> None:
        """Store an entry; its arrays must be its own (a row of a batch's output would keep
        the whole batch alive). Over a bound, least recently used entries leave, from the
        tenant's own part if it holds more than its share, else from the largest part."""
        size = entry_bytes(entry)
        if size > self.max_bytes:
            return
        with self._lock:
            part = self._parts.get(key.tenant)
            if part is None:
                part = self._parts[key.tenant] = _Part()
            old = part.entries.pop(key, None)
            if old is not None:
                self._forget(part, entry_bytes(old))
            part.entries[key] = entry
            part.nbytes += size
            self._entries += 1
            self._bytes += size
            while self._entries > self.max_entries or self._bytes > self.max_bytes:
                self._evict(self._victim(part))

    def _victim(self, inserting: _Part) -> _Part:
        """The part that gives up an entry: the inserting tenant's if it holds more than its
        share of the bound passed (the bound split evenly among the tenants holding
        entries), else the one holding the most, which is then over its share."""
        if len(self._parts) == 1:
            return inserting
        by_count = self._entries > self.max_entries
        share = max(1, (self.max_entries if by_count else self.max_bytes) // len(self._parts))

        def held(part: _Part) -> int:
            return len(part.entries) if by_count else part.nbytes

        return inserting if held(inserting) > share else max(self._parts.values(), key=held)

    def _evict(self, part: _Part) -> None:
        key, evicted = part.entries.popitem(last=False)
        self._forget(part, entry_bytes(evicted))
        if not part.entries:
            del self._parts[key.tenant]

    def _forget(self, part: _Part, size: int) -> None:
        part.nbytes -= size
        self._entries -= 1
        self._bytes -= size
