"""Videos the tests write with PyAV: solid-colour frames at a known rate."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np


def solid_video(
    path: Path,
    colours: Sequence[tuple[int, int, int]],
    *,
    fps: int = 25,
    codec: str = "mpeg4",
    size: tuple[int, int] = (64, 48),
) -> Path:
    """Write one frame of each colour, in order, as a yuv420p video; returns `path`."""
    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for colour in colours:
            pixels = np.full((height, width, 3), colour, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path
