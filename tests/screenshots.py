"""Take the screenshots of the page that docs/http.md shows: `make screenshots` (into
docs/screenshots/).

It serves the default model as `recognizer serve --http-port` does, opens the page in
Debian's Chromium with a fake camera playing a real photo, and saves photo mode (labels
in Chinese) and live camera mode (in English). Chinese needs a CJK font
(`apt-get install fonts-noto-cjk`, or the smaller fonts-wqy-microhei).

    python tests/screenshots.py [FOLDER]
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Browser, expect, sync_playwright

from browser import camera_video, launch
from support import PHOTOS

ROOT = Path(__file__).parents[1]
VIEWPORT = {"width": 1000, "height": 760}


def main(folder: Path) -> None:
    if not subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True).stdout:
        sys.exit("no Chinese font: apt-get install fonts-noto-cjk (or fonts-wqy-microhei)")
    folder.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "recognizer", "serve", "--port", "0", "--http-port", "0"],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        url = _http_url(server)
        with tempfile.TemporaryDirectory() as scratch, sync_playwright() as playwright:
            video = camera_video(
                Path(scratch) / "camera", [PHOTOS["coffee"]], seconds_each=2, size=(640, 480)
            )
            browser = launch(playwright, camera_video=video)
            _photo(browser, url, folder / "photo.png")
            _camera(browser, url, folder / "camera.png")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=60)


def _http_url(server: subprocess.Popen[str]) -> str:
    """The server's HTTP address, once it serves (its log says so)."""
    assert server.stderr is not None
    url = None
    for line in server.stderr:
        if match := re.search(r"serving HTTP on (http://\S+?)/?$", line):
            url = match.group(1)
        if "serving recognizer.v1.Recognizer" in line and url:
            return url
    sys.exit("the server stopped before serving")


def _photo(browser: Browser, url: str, path: Path) -> None:
    context = browser.new_context(locale="zh-CN", viewport=VIEWPORT)
    page = context.new_page()
    page.goto(url + "/")
    page.set_input_files("#file", PHOTOS["cat"])
    expect(page.locator("#photo-labels li")).to_have_count(5, timeout=60_000)
    page.screenshot(path=path)
    context.close()
    print(f"wrote {path}")


def _camera(browser: Browser, url: str, path: Path) -> None:
    context = browser.new_context(locale="en-US", viewport={"width": 1000, "height": 900})
    context.grant_permissions(["camera"])
    page = context.new_page()
    page.goto(url + "/")
    page.click("#tab-camera")
    page.click("#camera-toggle")
    expect(page.locator("#stat-answered")).to_have_text(re.compile(r"^[1-9]\d+$"), timeout=60_000)
    page.screenshot(path=path)
    context.close()
    print(f"wrote {path}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshots")
