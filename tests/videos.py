"""Videos the tests write with PyAV: pictures or solid colours at a known frame rate."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np


def write_video(
    path: Path, pictures: Sequence[np.ndarray], *, fps: int = 25, codec: str = "mpeg4"
) -> Path:
    """Write (H, W, 3) RGB arrays (even sizes), one frame each, as yuv420p; returns `path`."""
    height, width, _ = pictures[0].shape
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for pixels in pictures:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def solid_video(
    path: Path,
    colours: Sequence[tuple[int, int, int]],
    *,
    fps: int = 25,
    codec: str = "mpeg4",
    size: tuple[int, int] = (64, 48),
) -> Path:
    """One frame of each colour, in order."""
    width, height = size
    pictures = [np.full((height, width, 3), colour, dtype=np.uint8) for colour in colours]
    return write_video(path, pictures, fps=fps, codec=codec)
