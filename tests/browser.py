"""Headless Chromium from Debian's packages, driven by Playwright, and a camera video for it.

Playwright's own browser download cannot work offline, so Playwright drives
/usr/bin/chromium (`apt-get install chromium`; .ci/run installs it). The flags keep
Chromium off the network, and a fake camera plays a video file the tests write.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from playwright.sync_api import Browser, Playwright

from videos import write_video

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def chromium_path() -> str:
    path = shutil.which("chromium")
    assert path, "Debian's Chromium is not installed: apt-get install chromium (.ci/run does)"
    return path


def launch(playwright: Playwright, *, camera_video: Path | None = None) -> Browser:
    """Chromium with an empty profile; `camera_video` (y4m or mjpeg) plays as the camera."""
    args = list(FLAGS)
    if camera_video is not None:
        args += [
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={camera_video}",
        ]
    return playwright.chromium.launch(executable_path=chromium_path(), args=args, headless=True)


def camera_video(
    path: Path,
    photos: Sequence[Path],
    *,
    seconds_each: float = 1.0,
    size: tuple[int, int] = (320, 240),
) -> Path:
    """A y4m video showing each photo in turn, at 10 frames a second; Chromium's fake camera
    loops it."""
    fps = 10
    pictures = []
    for photo in photos:
        picture = np.asarray(Image.open(photo).convert("RGB").resize(size))
        pictures += [picture] * round(seconds_each * fps)
    return write_video(path.with_suffix(".y4m"), pictures, fps=fps, codec="rawvideo")
