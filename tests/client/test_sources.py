"""Frame sources: folders in order, videos at their own rate or a given one, cameras live."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from av.video.frame import VideoFrame

from fakes import solid_png
from recognizer.client import sources
from recognizer.client.sources import SourceError, open_source
from videos import solid_video

RED, GREEN, BLUE = (200, 0, 0), (0, 200, 0), (0, 0, 200)
COLOURS = [RED, GREEN, BLUE, RED, GREEN, BLUE]


def colour(frame: VideoFrame) -> tuple[int, ...]:
    """The mean colour of a decoded frame, rounded."""
    pixels = frame.to_ndarray(format="rgb24")
    return tuple(round(float(c)) for c in pixels.reshape(-1, 3).mean(axis=0))


def assert_close(actual: tuple[int, ...], expected: tuple[int, int, int]) -> None:
    assert np.abs(np.array(actual) - expected).max() <= 6, (actual, expected)


def test_a_folder_gives_its_images_as_they_are_in_natural_order(tmp_path: Path) -> None:
    names = ["frame_10.png", "frame_2.PNG", "frame_1.jpg", "notes.txt", ".hidden"]
    for name in names:
        (tmp_path / name).write_bytes(name.encode())
    (tmp_path / "sub.png").mkdir()
    with open_source(tmp_path) as source:
        frames = list(source.frames)
        assert source.total == 3
    assert [f.name for f in frames] == ["frame_1.jpg", "frame_2.PNG", "frame_10.png"]
    assert [f.index for f in frames] == [0, 1, 2]
    assert [f.picture for f in frames] == [b"frame_1.jpg", b"frame_2.PNG", b"frame_10.png"]
    assert [f.due for f in frames] == [None, None, None]  # as fast as the stream takes them


def test_a_folder_is_paced_by_fps_and_cut_by_limit(tmp_path: Path) -> None:
    for index in range(5):
        (tmp_path / f"{index}.png").write_bytes(solid_png(RED))
    with open_source(tmp_path, fps=4, limit=3) as source:
        assert source.total == 3
        assert [f.due for f in source.frames] == [0.0, 0.25, 0.5]


@pytest.mark.parametrize("codec", ["mpeg4", "h264"])
def test_a_video_gives_every_frame_at_its_own_rate(tmp_path: Path, codec: str) -> None:
    path = solid_video(tmp_path / f"clip-{codec}.mp4", COLOURS, fps=10, codec=codec)
    with open_source(path) as source:
        assert source.total == len(COLOURS)
        frames = list(source.frames)
    assert [f.index for f in frames] == list(range(len(COLOURS)))
    assert [f.due for f in frames] == pytest.approx([i / 10 for i in range(len(COLOURS))])
    assert [f.name for f in frames] == ["0.000s", "0.100s", "0.200s", "0.300s", "0.400s", "0.500s"]
    for frame, expected in zip(frames, COLOURS, strict=True):
        assert isinstance(frame.picture, VideoFrame)
        assert (frame.picture.width, frame.picture.height) == (64, 48)
        assert_close(colour(frame.picture), expected)


def test_fps_retimes_a_video_and_limit_cuts_it(tmp_path: Path) -> None:
    path = solid_video(tmp_path / "clip.mp4", COLOURS, fps=10)
    with open_source(path, fps=50, limit=4) as source:
        assert source.total == 4
        frames = list(source.frames)
    assert [f.due for f in frames] == pytest.approx([0, 0.02, 0.04, 0.06])
    assert [f.name for f in frames][-1] == "0.300s"  # still named by its time in the video


def test_a_camera_opens_through_v4l2_and_its_frames_are_due_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clip = solid_video(tmp_path / "clip.mp4", COLOURS[:3], fps=10)
    opened: list[tuple[str, dict[str, Any]]] = []
    real_open = av.open

    def fake_open(file: str, mode: str, **kwargs: Any) -> Any:
        opened.append((file, kwargs))
        return real_open(str(clip), mode)  # the "device" plays the clip

    monkeypatch.setattr(sources, "_is_device", lambda path: True)
    monkeypatch.setattr(av, "open", fake_open)
    with open_source("/dev/video7", fps=15) as source:
        assert source.total is None  # a camera does not end by itself
        frames = list(source.frames)
    assert opened == [("/dev/video7", {"format": "v4l2", "options": {"framerate": "15"}})]
    assert [f.due for f in frames] == [None, None, None]
    assert [f.name for f in frames] == ["0.000s", "0.100s", "0.200s"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing.mp4", "cannot open"),
        (lambda tmp: tmp, "has no image files"),
        (lambda tmp: _write(tmp / "notes.mp4", b"not a video"), "cannot open"),
        (lambda tmp: _silence(tmp / "sound.wav"), "has no video stream"),
    ],
)
def test_a_source_that_cannot_be_read_says_why(tmp_path: Path, make: Any, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        open_source(make(tmp_path))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _silence(path: Path) -> Path:
    """A short WAV file: a container with audio and no video."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 800), np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path
