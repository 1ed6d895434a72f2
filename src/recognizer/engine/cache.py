"""A result cache for images seen before.

Keyed by the tenant, the model and a BLAKE2b digest of the image's bytes (a raw frame's
geometry is hashed too), so the same picture sent again skips decoding and inference.
Encoded images and raw frames hash in separate spaces (BLAKE2b's personalisation), so
no raw frame can be built to collide with an encoded image. Each tenant has a part of
its own: a caller's `cache_hit` (and its timing) says nothing about what another tenant
sent. Without auth every caller is the one tenant "".

It stores a model's top-k scores and class ids, not labels, so one entry serves every
language and min_score; a request for more labels than an entry holds is a miss and
refreshes the entry. Bounded by entry count and bytes, least recently used first out.
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


class ResultCache:
    """A thread-safe LRU map from CacheKey to TopClasses, with counters."""

    def __init__(self, *, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[CacheKey, TopClasses] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, key: CacheKey, top_k: int) -> TopClasses | None:
        """The cached best `top_k` classes, if the entry holds at least that many."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or len(entry.class_ids) < top_k:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
        return TopClasses(entry.scores[:top_k], entry.class_ids[:top_k])

    def put(self, key: CacheKey, entry: TopClasses) -> None:
        """Store an entry; its arrays must be its own (a row of a batch's output would keep
        the whole batch alive)."""
        if entry_bytes(entry) > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= entry_bytes(old)
            self._entries[key] = entry
            self._bytes += entry_bytes(entry)
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= entry_bytes(evicted)
