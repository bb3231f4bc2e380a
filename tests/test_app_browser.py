"""The web app in a real browser: Debian's Chromium driven by Playwright against the real server.

A synthetic match video is dropped on the upload page, followed through the processing page to the result page,
where the annotated video must play and seek (Range requests), a click on an action must move the video there, the
team filter and the theme toggle must work, and the pages must fit a phone's screen. Screenshots of every page are
saved under test-artifacts/ (look at them: they are how the pages really look).
"""

from __future__ import annotations

import base64
import contextlib
import re
import threading
from pathlib import Path

import pytest

from tests.conftest import make_app, write_tiny_model

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
JOB_TIMEOUT_MS = 90_000

if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed (make system-deps installs it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


@contextlib.contextmanager
def serve(root: Path, **config):
    """The real app (werkzeug's threaded server) on a free loopback port: yields its base URL."""
    from werkzeug.serving import make_server

    app = make_app(write_tiny_model(root / "model"), root / "jobs", **config)
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, name="app-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        thread.join(timeout=10)
        app.extensions["spot_jobs"].shutdown()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with serve(tmp_path_factory.mktemp("browser")) as url:
        yield url


@pytest.fixture(scope="module")
def video(match_video_6s) -> Path:
    return match_video_6s


@pytest.fixture(scope="module")
def browser():
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # Console errors fail the test, except the 413 that test_refusals_in_the_page asks for.
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" and "413" not in m.text else None)
    yield page
    context.close()
    assert not errors, f"JavaScript errors: {errors}"


def drop_file(page, selector: str, path: Path, name: str) -> None:
    """Drag-and-drop a file onto ``selector`` as a user would (a DataTransfer carrying a File)."""
    data = base64.b64encode(path.read_bytes()).decode()
    transfer = page.evaluate_handle(
        """([data, name]) => {
            const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name, { type: "video/mp4" }));
            return dt;
        }""",
        [data, name],
    )
    for event in ("dragenter", "dragover", "drop"):
        page.dispatch_event(selector, event, {"dataTransfer": transfer})


@pytest.fixture(scope="module")
def result_url(browser, server, video) -> str:
    """Upload the match through the page (drag and drop), follow it to its result page; returns that URL."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server)
    page.screenshot(path=ARTIFACTS / "app-1-upload.png", full_page=True)
    drop_file(page, "#dropzone", video, "Synthetic match.mp4")
    info = page.locator("#file-info")
    assert "Synthetic match.mp4" in info.inner_text() and "KiB" in info.inner_text()
    page.locator("#threshold").fill("0.01")
    assert page.locator("#threshold-value").inner_text() == "0.01"
    page.screenshot(path=ARTIFACTS / "app-2-upload-chosen.png", full_page=True)
    page.click("#upload-button")
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}$"), timeout=30_000)
    page.wait_for_selector("#percent")
    page.screenshot(path=ARTIFACTS / "app-3-processing.png", full_page=True)
    page.reload()  # the processing page survives a reload (or has moved on to the result)
    page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}/result$"), timeout=JOB_TIMEOUT_MS)
    url = page.url
    page.close()
    return url


def test_upload_then_result_video_plays_seeks_and_actions_seek(page, result_url, server):
    ranges = []
    page.on("response", lambda r: ranges.append(r.status) if "/files/video" in r.url else None)
    page.goto(result_url)
    page.wait_for_function("() => document.getElementById('player').readyState >= 2", timeout=20_000)
    page.screenshot(path=ARTIFACTS / "app-4-result.png", full_page=True)
    duration = page.evaluate("document.getElementById('player').duration")
    assert duration > 4  # 6 s of match, slowed down around the actions
    assert 206 in ranges  # Chromium fetched the video with Range requests

    # It plays: the clock advances.
    page.evaluate("() => { const v = document.getElementById('player'); v.muted = true; return v.play(); }")
    page.wait_for_function("() => document.getElementById('player').currentTime > 0.3", timeout=10_000)
    # It seeks.
    page.evaluate("() => { const v = document.getElementById('player'); v.pause(); v.currentTime = 2.5; }")
    page.wait_for_function("() => !document.getElementById('player').seeking", timeout=10_000)
    assert abs(page.evaluate("document.getElementById('player').currentTime") - 2.5) < 0.05

    # Clicking an action moves the video to that action.
    events = page.locator("button.event")
    assert events.count() >= 2
    target = events.nth(events.count() // 2)
    t = float(target.get_attribute("data-time"))
    target.click()
    page.wait_for_function(
        f"() => Math.abs(document.getElementById('player').currentTime - {t}) < 0.6 && "
        "!document.getElementById('player').seeking",
        timeout=10_000,
    )
    page.evaluate("document.getElementById('player').pause()")
    assert abs(page.evaluate("document.getElementById('player').currentTime") - t) < 0.6
    assert page.locator("#timeline .mark").count() == events.count()

    # Per-class counts add up to the list; the downloads are there and are the job's files.
    counts = page.locator("#class-counts td.num").all_inner_texts()
    assert sum(int(c) for c in counts) == events.count()
    for name in ("video", "predictions", "results_spotting", "timeline"):
        href = page.locator(f"#downloads a[href*='/files/{name}']").get_attribute("href")
        assert page.request.get(server + href).status == 200


def test_team_and_class_filters(page, result_url):
    page.goto(result_url)
    total = page.locator("button.event").count()
    page.click("#team-filter button[data-team='left']")
    visible = page.locator("li:not([hidden]) > button.event")
    teams = {visible.nth(i).get_attribute("data-team") for i in range(visible.count())}
    assert teams <= {"left"}
    left = visible.count()
    page.click("#team-filter button[data-team='right']")
    assert left + page.locator("li:not([hidden]) > button.event").count() == total
    page.click("#team-filter button[data-team='']")
    label = page.locator("#class-filter option").nth(1).get_attribute("value")
    page.select_option("#class-filter", label)
    shown = page.locator("li:not([hidden]) > button.event")
    assert shown.count() >= 1
    assert {shown.nth(i).get_attribute("data-label") for i in range(shown.count())} == {label}


def test_choosing_the_actions_of_a_reel_makes_the_video_a_highlight_reel(page, server):
    page.goto(server)
    assert page.locator("#annotated").input_value() == "auto"
    page.check("#reel-choice input[value='SHOT']")
    assert page.locator("#annotated").input_value() == "highlights"
    page.select_option("#annotated", "full")
    page.select_option("#highlight-team", "left")  # a team alone is a reel too
    assert page.locator("#annotated").input_value() == "highlights"


def test_theme_toggle_is_remembered(page, result_url, server):
    page.goto(server)
    page.evaluate("localStorage.setItem('spot-theme', 'light')")
    page.reload()
    assert page.get_attribute("html", "data-theme") == "light"
    light_bg = page.evaluate("getComputedStyle(document.body).backgroundColor")
    page.click("#theme-toggle")
    assert page.get_attribute("html", "data-theme") == "dark"
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") != light_bg
    page.goto(result_url)  # another page, later: still dark
    assert page.get_attribute("html", "data-theme") == "dark"
    page.wait_for_function("() => document.getElementById('player').readyState >= 2", timeout=20_000)
    page.screenshot(path=ARTIFACTS / "app-5-result-dark.png", full_page=True)
    page.click("#theme-toggle")
    assert page.evaluate("localStorage.getItem('spot-theme')") == "light"


def test_pages_fit_a_phone_screen(browser, result_url, server):
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    for url, shot in ((server, "app-6-phone-upload.png"), (result_url, "app-7-phone-result.png")):
        page.goto(url)
        page.wait_for_load_state("networkidle")
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 1, f"{url} is wider than a phone screen by {overflow}px"
        page.screenshot(path=ARTIFACTS / shot, full_page=True)
    context.close()


def test_refusals_in_the_page(page, tmp_path, video):
    with serve(tmp_path, MAX_CONTENT_LENGTH=64 * 1024) as url:
        page.goto(url)
        text = tmp_path / "notes.txt"
        text.write_text("not a video")
        page.set_input_files("#video-input", str(text))
        assert "not a supported video" in page.locator("#upload-error").inner_text()
        # Over the limit: refused before sending, naming the limit; and the server's own answer is a 413 page.
        page.set_input_files("#video-input", str(video))
        assert "over the upload limit of 64 KiB" in page.locator("#upload-error").inner_text()
        page.click("#upload-button")
        assert page.locator("#upload-progress").is_hidden()
        response = page.request.post(
            url + "/upload",
            multipart={"video": {"name": "big.mp4", "mimeType": "video/mp4", "buffer": video.read_bytes()}},
        )
        assert response.status == 413 and "64 KiB" in response.text()
        # The page without its script (a plain form post) gets the 413 page too.
        page.evaluate("HTMLFormElement.prototype.submit.call(document.getElementById('upload-form'))")
        page.wait_for_selector("#error-page")
        assert "64 KiB" in page.locator("#error-page").inner_text()
        page.screenshot(path=ARTIFACTS / "app-9-too-large.png")


def test_undecodable_video_shows_the_reason_and_a_way_back(page, server, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_text("this is not a video\n" * 20)
    page.goto(server)
    page.set_input_files("#video-input", str(broken))
    page.click("#upload-button")
    page.wait_for_selector("#error-block:not([hidden])", timeout=30_000)
    assert "broken.mp4" in page.locator("#error-reason").inner_text()
    page.screenshot(path=ARTIFACTS / "app-8-failed.png", full_page=True)
    page.click("#error-block a")
    page.wait_for_url(server + "/")


def test_a_dropped_connection_goes_on_from_where_it_stopped(browser, tmp_path, video):
    """The page sends the video in pieces; a piece whose connection drops is sent again from the offset the server
    has, and the job's upload is the file, byte for byte."""
    with serve(tmp_path, UPLOAD_CHUNK_BYTES=16 * 1024) as url:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        offsets: list[int] = []

        def drop_the_second_piece(route) -> None:
            if route.request.method == "PUT":
                offsets.append(int(route.request.headers["upload-offset"]))
                if len(offsets) == 2:
                    route.abort("connectionreset")
                    return
            route.continue_()

        page.route("**/api/uploads/*", drop_the_second_piece)
        page.goto(url)
        page.set_input_files("#video-input", str(video))
        page.click("#upload-button")
        page.wait_for_url(re.compile(r"/jobs/[0-9a-f-]{36}$"), timeout=30_000)
        job_id = page.url.rsplit("/", 1)[-1]
        size = video.stat().st_size
        assert (tmp_path / "jobs" / job_id / "input.mp4").read_bytes() == video.read_bytes()
        assert offsets[:3] == [0, 16 * 1024, 16 * 1024]  # the dropped piece again, from where the server was
        assert offsets == sorted(offsets) and len(offsets) == -(-size // (16 * 1024)) + 1
        assert not list((tmp_path / "jobs" / ".uploads").iterdir())  # the upload became the job
        page.request.delete(f"{url}/api/jobs/{job_id}")  # no need to run it
        context.close()
        assert not errors, errors
