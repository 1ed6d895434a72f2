"""Where streamed frames come from: a video file, a camera, or a folder of images.

A source yields SourceFrames in order, each `due` some seconds after the first frame:
a video file at its own timestamps (or at index / fps when `fps` retimes it), a folder
at index / fps (or, without `fps`, as fast as the stream takes them), and a camera at
once: the device already delivers frames in real time, so `fps` asks it for that frame
rate instead. PyAV (FFmpeg) demuxes and decodes video; cameras open through its v4l2
input.
"""

from __future__ import annotations

import itertools
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import av
from av.container import InputContainer
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

# The formats the server reads; other files in a folder (notes, .DS_Store) are left out.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


class SourceError(Exception):
    """The source cannot be opened: missing, empty, or not a video."""


@dataclass(frozen=True, slots=True)
class SourceFrame:
    """One frame: its position, a name for people, when it is due, and its picture.

    `picture` is an image file's bytes, as they are, or a decoded video frame.
    """

    index: int
    name: str
    due: float | None
    picture: bytes | VideoFrame


@dataclass(slots=True)
class Source:
    """An open source: iterate `frames` once, then close it (or use it in `with`).

    `total` is the number of frames when it is known up front (not for a camera).
    """

    frames: Iterator[SourceFrame]
    total: int | None = None
    close: Callable[[], None] = lambda: None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def open_source(
    location: str | Path, *, fps: float | None = None, limit: int | None = None
) -> Source:
    """Open a folder of images, a camera device (/dev/video0) or a video file.

    `fps` sets the rate frames are due at (a camera's capture rate); `limit` stops
    after that many frames.
    """
    path = Path(location)
    if path.is_dir():
        source = _folder(path, fps)
    elif _is_device(path):
        source = _video(path, fps, camera=True)
    else:
        source = _video(path, fps, camera=False)
    if limit is not None:
        source.frames = itertools.islice(source.frames, limit)
        source.total = limit if source.total is None else min(source.total, limit)
    return source


def _folder(folder: Path, fps: float | None) -> Source:
    paths = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
        key=lambda p: _natural_key(p.name),
    )
    if not paths:
        raise SourceError(f"{folder} has no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    frames = (
        SourceFrame(index, path.name, None if fps is None else index / fps, path.read_bytes())
        for index, path in enumerate(paths)
    )
    return Source(frames, total=len(paths))


def _video(path: Path, fps: float | None, *, camera: bool) -> Source:
    try:
        if camera:
            options = {"framerate": f"{fps:g}"} if fps else {}
            container = av.open(str(path), "r", format="v4l2", options=options)
        else:
            container = av.open(str(path), "r")
    except (av.FFmpegError, OSError) as error:
        raise SourceError(f"cannot open {path}: {error}") from error
    if not container.streams.video:
        container.close()
        raise SourceError(f"{path} has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"  # decode large frames on several cores
    total = None if camera else stream.frames or None
    return Source(_decoded(container, stream, fps, live=camera), total, container.close)


def _decoded(
    container: InputContainer, stream: VideoStream, fps: float | None, *, live: bool
) -> Iterator[SourceFrame]:
    """Decoded frames, named by their time in the video and due on the schedule asked for."""
    rate = stream.average_rate or stream.guessed_rate or 25  # for frames without timestamps
    first: float | None = None
    for index, frame in enumerate(container.decode(stream)):
        at = frame.time if frame.pts is not None else index / float(rate)
        first = at if first is None else first
        position = max(at - first, 0.0)
        if live:
            due = None
        elif fps is not None:
            due = index / fps
        else:
            due = position
        yield SourceFrame(index, f"{position:.3f}s", due, frame)


def _is_device(path: Path) -> bool:
    try:
        return stat.S_ISCHR(path.stat().st_mode)
    except OSError:
        return False


def _natural_key(name: str) -> list[str | int]:
    """Sort frame_2 before frame_10, as people number frames."""
    parts = re.split(r"(\d+)", name)  # text, digits, text, ...: the digits at odd places
    return [int(part) if i % 2 else part.lower() for i, part in enumerate(parts)]
