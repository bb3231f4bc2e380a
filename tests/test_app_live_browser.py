"""The web app's Live page in a real browser: Debian's Chromium driven by Playwright against the real server, watching
a synthetic match sent as a real-time UDP feed (``util.live_send``). Screenshots go to test-artifacts/."""

from __future__ import annotations

import contextlib
import re
import threading
from pathlib import Path

import pytest

from model.live import EVENT_FIELDS
from tests.conftest import free_udp_port, make_app, send_feed

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
LIVE_TIMEOUT_MS = 40_000

if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed (make system-deps installs it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


@contextlib.contextmanager
def serve(app):
    """``app`` on werkzeug's threaded server on a free loopback port: yields its base URL."""
    from werkzeug.serving import make_server

    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, name="app-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        thread.join(timeout=10)


@pytest.fixture
def page():
    ARTIFACTS.mkdir(exist_ok=True)
    errors: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        page.on("pageerror", lambda e: errors.append(str(e)))
        # Console errors fail the test, except the 400 the refused address asks for.
        page.on(
            "console", lambda m: errors.append(m.text) if m.type == "error" and "400" not in m.text else None
        )
        yield page
        browser.close()
    assert not errors, f"JavaScript errors: {errors}"


def test_the_live_page_watches_a_udp_feed_fills_its_timeline_stops_and_offers_the_events(
    page, live_model_dir, live_feed_video, tmp_path
):
    flask_app = make_app(live_model_dir, tmp_path / "jobs")
    url, stop = f"udp://127.0.0.1:{free_udp_port()}", threading.Event()
    try:
        with serve(flask_app) as base:
            page.goto(base)
            page.click("#nav-live")
            page.wait_for_url(base + "/live")
            # A file is not a stream: the page says why, naming the field.
            page.fill("#live-url", "/srv/match.mp4")
            page.click("#live-start")
            page.wait_for_selector("#live-form-error:not([hidden])")
            assert page.locator("#live-form-error").inner_text().startswith("url: ")

            page.fill("#live-url", url)
            page.fill("#live-latency", "3")
            page.fill("#live-threshold", "0.1")
            page.screenshot(path=ARTIFACTS / "app-live-1-form.png", full_page=True)
            page.click("#live-start")
            page.wait_for_url(re.compile(r"/live/[0-9a-f-]{36}$"), timeout=10_000)
            job_id = page.url.rsplit("/", 1)[-1]
            state = page.locator("#live-state")
            page.wait_for_function(
                "() => document.getElementById('live-state').textContent.startsWith('Watching the feed')",
                timeout=LIVE_TIMEOUT_MS,
            )
            send_feed(live_feed_video, url, stop)

            # The timeline fills as the events come, each one listed too.
            page.wait_for_function(
                "() => document.querySelectorAll('#live-timeline .mark').length >= 2", timeout=LIVE_TIMEOUT_MS
            )
            assert page.locator("#no-events").is_hidden()
            assert re.fullmatch(r"Watching the feed: \d+ actions? so far", state.inner_text())
            assert page.locator("#live-downloads li").first.is_visible()
            page.screenshot(path=ARTIFACTS / "app-live-2-watching.png", full_page=True)

            page.click("#live-stop")
            page.wait_for_function(
                "() => document.getElementById('live').dataset.state === 'stopped'", timeout=LIVE_TIMEOUT_MS
            )
            marks = page.locator("#live-timeline .mark").count()
            assert page.locator("#live-events li").count() == marks >= 2
            assert state.inner_text() == f"Stopped: {marks} actions."
            assert page.locator("#live-stop").is_hidden() and page.locator("#live-remove").is_visible()
            assert "of the feed watched" in page.locator("#live-summary").inner_text()
            page.screenshot(path=ARTIFACTS / "app-live-3-stopped.png", full_page=True)

            # The download link gives the events: one row each, as the timeline shows them.
            with page.expect_download() as download:
                page.click("#download-csv")
            assert download.value.suggested_filename == f"live-{job_id[:8]}-events.csv"
            rows = Path(download.value.path()).read_text().splitlines()
            assert rows[0].split(",") == EVENT_FIELDS and len(rows) == marks + 1

            # A phone's screen holds the page.
            page.set_viewport_size({"width": 390, "height": 844})
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 1, f"the Live page is wider than a phone screen by {overflow}px"
            page.screenshot(path=ARTIFACTS / "app-live-4-phone.png", full_page=True)

            page.click("#live-remove")  # a second DELETE: the job and its files go
            page.wait_for_url(base + "/live")
            assert not (tmp_path / "jobs" / "live" / job_id).exists()
            page.goto("about:blank")  # nothing in flight when the server stops (a reset is a console error)
    finally:
        stop.set()
        flask_app.extensions["spot_jobs"].shutdown()
