"""The web page in a real browser: headless Chromium (Debian's) driven by Playwright, against
a real server, with a fake camera playing a video of real photos."""

from __future__ import annotations

import base64
import concurrent.futures
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from browser import camera_video, launch
from certificates import Pki
from fakes import ColourNet, colour_model, solid_png
from recognizer.client import Client
from recognizer.config.schema import SecuritySettings
from support import PHOTOS, ServerThread

CAT_NAMES = {"tabby", "tiger cat", "Egyptian cat"}
SHOP, VISION = "q9Xc1kF0b7WvN2yH4tLm8a", "Zt8MvA3pQ6rJ1uE5sKx0bw"
expect.set_options(timeout=30_000)  # a shared, busy machine


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    video = tmp_path_factory.mktemp("camera") / "camera"
    video = camera_video(video, [PHOTOS["coffee"], PHOTOS["cat"]])
    with sync_playwright() as playwright:
        browser = launch(playwright, camera_video=video)
        yield browser
        browser.close()


class Visit:
    """One browser context on one server's page: what it asked for and the errors it threw.
    `ready` waits for the models to be listed (a server that needs a token lists none)."""

    def __init__(self, browser: Browser, url: str, *, ready: bool = True, **context: Any) -> None:
        self.url = url
        self.context = browser.new_context(locale="en-US", **context)
        self.context.grant_permissions(["camera"])
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("websocket", lambda socket: self.requests.append(socket.url))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(url + "/")
        if ready:
            expect(self.page.locator("#model option")).not_to_have_count(0)

    def close(self) -> None:
        self.context.close()
        assert self.errors == [], "the page threw"


@pytest.fixture
def visit(browser: Browser, default_server: ServerThread) -> Iterator[Visit]:
    visit = Visit(browser, default_server.http_url, viewport={"width": 1000, "height": 800})
    yield visit
    visit.close()


@pytest.fixture
def page(visit: Visit) -> Page:
    return visit.page


def top_label(page: Page, where: str = "#photo-labels") -> Any:
    return page.locator(f"{where} li .name").first


def file_payload(path: Path, mime: str = "image/png") -> dict[str, Any]:
    return {"name": path.name, "mimeType": mime, "buffer": path.read_bytes()}


def send_file(page: Page, event: str, path: Path) -> None:
    """Drop a file on the drop zone, or paste it on the page, as a person would."""
    transfer = page.evaluate_handle(
        """([data, name]) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: "image/png" }));
            return transfer;
        }""",
        [base64.b64encode(path.read_bytes()).decode(), path.name],
    )
    if event == "drop":
        page.dispatch_event("#dropzone", "drop", {"dataTransfer": transfer})
    else:
        page.evaluate(
            """(transfer) => document.dispatchEvent(
                new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true }))""",
            transfer,
        )


# Photos


def test_a_chosen_photo_shows_its_ranked_labels_model_and_timing(page: Page) -> None:
    page.set_input_files("#file", PHOTOS["coffee"])
    expect(top_label(page)).to_have_text("espresso")
    expect(page.locator("#photo-labels li")).to_have_count(5)
    expect(page.locator("#photo-labels li .score").first).to_have_text(re.compile(r"^\d+\.\d%$"))
    meta = page.locator("#photo-meta")
    expect(meta).to_contain_text("efficientnet-lite0")
    expect(meta).to_contain_text(re.compile(r"\d+\.\d ms on the server"))
    assert page.eval_on_selector("#preview", "image => image.naturalWidth") > 0


@pytest.mark.parametrize("event", ["drop", "paste"])
def test_a_dropped_or_pasted_photo_is_classified(page: Page, event: str) -> None:
    send_file(page, event, PHOTOS["cat"])
    expect(top_label(page)).to_have_text(re.compile("|".join(CAT_NAMES)))


def test_the_language_switch_changes_the_labels_and_the_page(page: Page) -> None:
    page.set_input_files("#file", PHOTOS["coffee"])
    expect(top_label(page)).to_have_text("espresso")
    page.get_by_text("中文").click()
    expect(top_label(page)).to_have_text("浓缩咖啡")
    expect(page.locator("#tab-photo")).to_have_text("照片")
    page.get_by_text("English").click()
    expect(top_label(page)).to_have_text("espresso")


def test_the_model_switch_classifies_again_with_the_chosen_model(
    browser: Browser, tmp_path: Path
) -> None:
    models = [colour_model("colours"), colour_model("tints", languages=("en",))]
    with ServerThread(models, http=True) as running:
        visit = Visit(browser, running.http_url)
        try:
            page = visit.page
            expect(page.locator("#model option")).to_have_text(["colours (3)", "tints (3)"])
            blue = tmp_path / "blue.png"
            blue.write_bytes(solid_png((0, 0, 200)))
            page.get_by_text("中文").click()
            page.set_input_files("#file", blue)
            expect(top_label(page)).to_have_text("蓝")
            page.select_option("#model", "tints")
            expect(page.locator("#photo-meta")).to_contain_text("tints")
            expect(top_label(page)).to_have_text("blue")  # tints names its classes in English only
        finally:
            visit.close()


def test_a_file_that_is_not_an_image_shows_an_error(page: Page) -> None:
    page.set_input_files("#file", {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hi"})
    expect(page.locator("#photo-error")).to_have_text("This is not an image, or it is damaged.")
    expect(page.locator("#photo-result")).to_be_hidden()
    page.set_input_files("#file", PHOTOS["coffee"])
    expect(top_label(page)).to_have_text("espresso")
    expect(page.locator("#photo-error")).to_be_hidden()


def test_too_large_and_busy_are_told_apart(browser: Browser, tmp_path: Path) -> None:
    with ServerThread(
        [colour_model(network=ColourNet(delay_s=2.0))],
        http=True,
        max_message_mb=1,
        max_queued_requests=1,
        max_batch_size=1,
        inference_workers=1,
    ) as running:
        visit = Visit(browser, running.http_url)
        try:
            page = visit.page
            big = tmp_path / "big.png"
            big.write_bytes(solid_png((0, 0, 200), size=2000) + b"\0" * (2 << 20))
            page.set_input_files("#file", big)
            expect(page.locator("#photo-error")).to_have_text("The image is too large.")
            blue = tmp_path / "blue.png"
            blue.write_bytes(solid_png((0, 0, 200)))
            with Client(running.address) as client, concurrent.futures.ThreadPoolExecutor() as pool:
                holding = pool.submit(client.classify, solid_png((200, 0, 0)))
                time.sleep(0.3)  # it holds the model's one place
                page.set_input_files("#file", blue)
                expect(page.locator("#photo-error")).to_have_text(
                    re.compile(r"^The server is busy: try again in \d+ s\.$")
                )
                assert holding.result().labels[0].class_id == 0
            page.set_input_files("#file", blue)
            expect(top_label(page)).to_have_text("blue")
        finally:
            visit.close()


# The live camera


def test_live_camera_labels_appear_keep_updating_and_report_latency(page: Page) -> None:
    page.click("#tab-camera")
    page.select_option("#camera-rate", "5")
    page.click("#camera-toggle")
    expect(page.locator("#camera-toggle")).to_have_text("Stop camera")
    expect(top_label(page, "#camera-labels")).to_be_visible()
    seen: set[str] = set()
    answered = []
    deadline = time.monotonic() + 60
    while not ({"espresso"} <= seen and seen & CAT_NAMES) and time.monotonic() < deadline:
        seen.add(top_label(page, "#camera-labels").inner_text())
        answered.append(int(page.inner_text("#stat-answered")))
        time.sleep(0.2)
    assert "espresso" in seen and seen & CAT_NAMES, seen  # the video shows both in turn
    assert answered[-1] > answered[0]
    expect(page.locator("#stat-latency")).to_have_text(re.compile(r"^\d+ ms$"))
    assert re.fullmatch(r"\d+", page.inner_text("#stat-skipped"))
    assert page.inner_text("#stat-failed") == "0"
    page.click("#camera-toggle")
    expect(page.locator("#camera-toggle")).to_have_text("Start camera")


def test_the_camera_streams_over_the_websocket_with_the_latest_frame_policy(visit: Visit) -> None:
    visit.page.click("#tab-camera")
    visit.page.click("#camera-toggle")
    expect(top_label(visit.page, "#camera-labels")).to_be_visible()
    sockets = [url for url in visit.requests if url.startswith("ws://")]
    assert len(sockets) == 1 and "/v1/classify/stream?policy=latest&max_frame_age_ms=" in sockets[0]
    visit.page.get_by_text("中文").click()  # a new stream, in the new language
    expect(top_label(visit.page, "#camera-labels")).to_have_text(re.compile("浓缩咖啡|猫"))
    assert len([url for url in visit.requests if url.startswith("ws://")]) == 2
    visit.page.click("#tab-photo")  # leaving the tab stops the camera
    expect(visit.page.locator("#video")).to_have_js_property("srcObject", None)


# Everything else a person expects


def test_everything_comes_from_the_server_itself(visit: Visit) -> None:
    response = visit.page.goto(visit.url + "/")
    assert (
        response is not None and "default-src 'self'" in response.headers["content-security-policy"]
    )
    expect(visit.page.locator("#model option")).not_to_have_count(0)
    visit.page.set_input_files("#file", PHOTOS["coffee"])
    expect(top_label(visit.page)).to_have_text("espresso")
    origin = visit.url.removeprefix("http://")
    for url in visit.requests:
        assert re.match(rf"(https?|wss?)://{re.escape(origin)}/|blob:|data:", url), url


def test_it_fits_a_phone_screen(browser: Browser, default_server: ServerThread) -> None:
    visit = Visit(
        browser,
        default_server.http_url,
        viewport={"width": 375, "height": 740},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    try:
        page = visit.page
        page.set_input_files("#file", PHOTOS["coffee"])
        expect(top_label(page)).to_have_text("espresso")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        image = page.locator("#preview").bounding_box()
        labels = page.locator("#photo-labels").bounding_box()
        assert image and labels and image["y"] + image["height"] <= labels["y"]  # stacked
        page.click("#tab-camera")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
    finally:
        visit.close()


def test_it_can_be_used_from_the_keyboard(page: Page) -> None:
    reached = []
    for _ in range(8):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id || document.activeElement.value"))
    assert {"en", "model", "tab-photo", "file"} <= set(reached), reached
    page.focus("#file")
    expect(page.locator("#file")).to_be_focused()  # a loaded machine may lag
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Space")
    chooser.value.set_files(PHOTOS["coffee"])
    expect(top_label(page)).to_have_text("espresso")
    page.focus("#tab-photo")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#camera")).to_be_visible()
    expect(page.locator("#tab-camera")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.locator("#camera-toggle")).to_be_focused()


def test_the_docs_page_draws_the_api_from_the_package(visit: Visit) -> None:
    visit.page.goto(visit.url + "/docs")
    expect(visit.page.locator(".opblock-summary-path").first).to_have_text("/v1/classify")
    origin = visit.url.removeprefix("http://")
    assert all(re.match(rf"(https?|wss?)://{re.escape(origin)}/|data:", u) for u in visit.requests)


# A server that needs a token


def models_with_tokens(tmp_path: Path, lines: str) -> tuple[list[Any], SecuritySettings]:
    (tmp_path / "tokens").write_text(lines, encoding="utf-8")
    return [colour_model("colours"), colour_model("blues")], SecuritySettings(
        tokens_file=tmp_path / "tokens"
    )


def enter_token(page: Page, token: str) -> None:
    page.fill("#token", token)
    page.keyboard.press("Enter")


def test_the_page_asks_for_a_token_sends_it_and_keeps_it_in_this_tab_only(
    browser: Browser, tmp_path: Path
) -> None:
    models, security = models_with_tokens(tmp_path, f"shop:{SHOP}\n")
    with ServerThread(models, security=security, http=True) as running:
        visit = Visit(browser, running.http_url, ready=False)
        try:
            page = visit.page
            expect(page.locator("#token-message")).to_have_text("This server needs a token.")
            expect(page.locator("#token")).to_be_focused()
            enter_token(page, "q9Xc1kF0b7WvN2yH4tLm8b")
            expect(page.locator("#token-message")).to_have_text(
                "The token was refused: it is wrong, or it was revoked."
            )
            enter_token(page, SHOP)
            expect(page.locator("#token-form")).to_be_hidden()
            expect(page.locator("#model option")).to_have_text(["colours (3)", "blues (3)"])
            blue = tmp_path / "blue.png"
            blue.write_bytes(solid_png((0, 0, 200)))
            with page.expect_request("**/v1/classify?*") as sent:
                page.set_input_files("#file", blue)
            assert sent.value.headers["authorization"] == f"Bearer {SHOP}"
            expect(top_label(page)).to_have_text("blue")
            stored = page.evaluate("[sessionStorage.length, localStorage.length]")
            assert stored == [1, 0]
            assert page.evaluate("sessionStorage.getItem('recognizer.token')") == SHOP
            page.reload()  # the same tab keeps it
            expect(page.locator("#model option")).to_have_count(2)
            expect(page.locator("#token-form")).to_be_hidden()
            page.click("#forget-token")
            expect(page.locator("#token-form")).to_be_visible()
            assert page.evaluate("sessionStorage.length") == 0
        finally:
            visit.close()


def test_a_model_taken_away_shows_403_and_a_revoked_token_asks_again(
    browser: Browser, tmp_path: Path
) -> None:
    models, security = models_with_tokens(tmp_path, f"vision:{VISION} blues\n")
    with ServerThread(models, security=security, http=True) as running:
        visit = Visit(browser, running.http_url, ready=False)
        try:
            page = visit.page
            enter_token(page, VISION)
            expect(page.locator("#model option")).to_have_text(["blues (3)"])
            blue = tmp_path / "blue.png"
            blue.write_bytes(solid_png((0, 0, 200)))
            page.set_input_files("#file", blue)
            expect(top_label(page)).to_have_text("blue")

            (tmp_path / "tokens").write_text(f"vision:{VISION} colours\n", encoding="utf-8")
            deadline = time.monotonic() + 15  # the file is looked at once a second
            while page.locator("#photo-error").is_hidden() and time.monotonic() < deadline:
                page.set_input_files("#file", blue)
                time.sleep(0.5)
            expect(page.locator("#photo-error")).to_have_text("Your token may not use this model.")

            (tmp_path / "tokens").write_text(f"shop:{SHOP}\n", encoding="utf-8")  # revoked
            deadline = time.monotonic() + 15
            while page.locator("#token-form").is_hidden() and time.monotonic() < deadline:
                page.set_input_files("#file", blue)
                time.sleep(0.5)
            expect(page.locator("#token-form")).to_be_visible()
            expect(page.locator("#token-message")).to_have_text(
                "The token was refused: it is wrong, or it was revoked."
            )
        finally:
            visit.close()


def test_live_camera_over_https_sends_the_token_on_the_websocket(
    browser: Browser, pki: Pki, tmp_path: Path
) -> None:
    models, security = models_with_tokens(tmp_path, f"shop:{SHOP}\n")
    security = security.model_copy(update={"tls_cert": pki.server[0], "tls_key": pki.server[1]})
    with ServerThread(models, security=security, http=True) as running:
        # Chromium does not know the tests' CA; httpx, curl and websockets check it elsewhere.
        visit = Visit(browser, running.http_url, ready=False, ignore_https_errors=True)
        try:
            page = visit.page
            page.click("#tab-camera")
            page.click("#camera-toggle")
            expect(page.locator("#camera-error")).to_have_text("This server needs a token.")
            expect(page.locator("#token-form")).to_be_visible()
            enter_token(page, SHOP)
            expect(page.locator("#token-form")).to_be_hidden()
            page.click("#camera-toggle")
            expect(top_label(page, "#camera-labels")).to_be_visible()
            expect(page.locator("#stat-answered")).not_to_have_text("0")
            sockets = [url for url in visit.requests if url.startswith("wss://")]
            assert len(sockets) == 2  # refused without the token, then opened with it
            metrics = httpx.get(running.http_url + "/metrics", verify=pki.context()).text
            frames = re.search(
                r'recognizer_requests_total\{[^}]*tenant="shop"[^}]*\} (\S+)', metrics
            )
            assert frames and float(frames.group(1)) > 0, metrics  # the stream was shop's
        finally:
            visit.close()
