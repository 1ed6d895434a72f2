"""What the load generator sends: a set of real images as encoded bytes or raw RGB8 frames."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from recognizer.bench import BenchError
from recognizer.client.payloads import raw_image
from recognizer.client.sources import IMAGE_SUFFIXES
from recognizer.errors import InvalidImageError
from recognizer.priorities import PRIORITY_NAMES
from recognizer.v1 import recognizer_pb2 as pb

_TAG_BYTES = 16  # a per-process nonce and a counter, for --unique


@dataclass(frozen=True, kw_only=True)
class Workload:
    """The images and request options, cheap to pickle: each client process builds its requests.

    `unique` makes every request's image differ (a counter appended after the encoded
    image, or written into the first pixels of a raw frame), so a server-side result
    cache cannot answer it and the model is measured instead. `priority` is the requests'
    class by its name (low, normal or high; "" leaves it to the server).
    """

    images: tuple[str, ...]
    raw: bool = False
    unique: bool = False
    model: str = ""
    top_k: int = 0
    priority: str = ""

    def requests(self) -> list[pb.ClassifyRequest]:
        """One request per image, in the order the images were given."""
        return [self.request(Path(path).read_bytes()) for path in self.images]

    def request(self, data: bytes) -> pb.ClassifyRequest:
        request = pb.ClassifyRequest(model=self.model, top_k=self.top_k)
        if self.priority:
            request.priority = PRIORITY_NAMES[self.priority]
        if self.raw:
            request.raw_image.CopyFrom(raw_rgb8(data))
        else:
            request.image = data
        return request


def find_images(paths: Iterable[str | os.PathLike[str]]) -> tuple[str, ...]:
    """Image files named directly, plus the image files (by suffix) directly in named folders."""
    found: list[str] = []
    for item in map(Path, paths):
        if item.is_dir():
            found.extend(
                str(path)
                for path in sorted(item.iterdir())
                if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
            )
        elif item.is_file():
            found.append(str(item))
        else:
            raise BenchError(f"{item}: no such file or folder")
    if not found:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise BenchError(f"no image files found (looked for {suffixes})")
    return tuple(found)


def raw_rgb8(data: bytes) -> pb.RawImage:
    """Decode an encoded image once, upright, to packed RGB8 as a camera pipeline holds it."""
    try:
        return raw_image(data, "rgb8")
    except InvalidImageError as error:
        raise BenchError(f"cannot decode an image for --raw: {error}") from error


class RequestCycle:
    """Hands out the requests round-robin, each a distinct image when `unique` is set."""

    def __init__(self, requests: Sequence[pb.ClassifyRequest], *, unique: bool) -> None:
        if not requests:
            raise BenchError("no requests to send")
        self._requests = requests
        self._unique = unique
        self._nonce = os.urandom(_TAG_BYTES - 8)  # differs per process and per run
        self._count = 0

    def __next__(self) -> pb.ClassifyRequest:
        template = self._requests[self._count % len(self._requests)]
        self._count += 1
        if not self._unique:
            return template
        tag = self._nonce + self._count.to_bytes(8, "big")
        request = pb.ClassifyRequest()
        request.CopyFrom(template)
        if request.HasField("raw_image"):
            request.raw_image.data = tag + template.raw_image.data[_TAG_BYTES:]
        else:
            request.image = template.image + tag  # decoders stop at the image's end marker
        return request

    def __iter__(self) -> RequestCycle:
        return self
