"""The web app's live jobs (``app.live``, ``/api/live``): a real-time UDP feed watched in a job process, polled for
its new events, stopped with its events kept and downloaded, then removed; refusals naming the field; the token and
origin rules; the rule by which live jobs and uploads share the worker slots; a restart."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from app.worker import WorkerProcess
from model.live import EVENT_FIELDS
from tests.conftest import free_udp_port, make_app, send_feed
from util.io import store_json

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "s3cret-token"
LIVE_TIMEOUT_S = 40


def wait_until(client, url: str, ok, timeout_s: float = LIVE_TIMEOUT_S, **query) -> dict:
    """Poll ``url`` until ``ok(status)``; returns that status."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = client.get(url, query_string=query).get_json()
        if ok(status):
            return status
        assert time.monotonic() < deadline, f"still {status.get('state')}, {status.get('stage')}: {status}"
        time.sleep(0.2)


# ---- a real feed, a real job process


@pytest.mark.slow  # a job process (torch starts there) watches a real-time UDP feed
def test_a_live_job_gives_new_events_as_they_come_and_keeps_them_after_its_stop(
    live_model_dir, live_feed_video, tmp_path
):
    flask_app = make_app(live_model_dir, tmp_path / "jobs")
    client = flask_app.test_client()
    url, stop = f"udp://127.0.0.1:{free_udp_port()}", threading.Event()
    try:
        reply = client.post("/api/live", data={"url": url, "latency": "3", "threshold": "0.1"})
        assert reply.status_code == 202, reply.get_json()
        job = reply.get_json()
        job_id, status_url = job["id"], job["status_url"]
        assert job["url"] == f"/live/{job_id}" and status_url == f"/api/live/{job_id}"
        wait_until(client, status_url, lambda s: s["stage"] == "watching")  # the model is loaded
        send_feed(live_feed_video, url, stop)

        seen: list[dict] = []  # each poll gives the events after those seen
        while len(seen) < 2:
            status = wait_until(
                client, status_url, lambda s: s["events"] or s["state"] != "running", after=len(seen)
            )
            assert status["state"] == "running", status
            seen += status["events"]
            assert status["next"] == status["num_events"] == len(seen)
        assert set(seen[0]) == set(EVENT_FIELDS)
        assert [e["frame"] for e in seen] == sorted(e["frame"] for e in seen)
        assert all(0 <= e["delay_s"] <= 3 + 2 for e in seen), seen  # the latency asked, give or take the CPU

        reply = client.delete(status_url)  # stops it: its last events are final, its summary written
        assert reply.status_code == 200
        final = reply.get_json()
        assert final["state"] == "stopped" and final["error"] is None and final["finished"]
        assert final["summary"]["ended"] == "stopped" and final["summary"]["source"] == url
        events = seen + client.get(status_url, query_string={"after": len(seen)}).get_json()["events"]
        assert final["summary"]["events"] == final["num_events"] == len(events)

        csv = client.get(final["files"]["events.csv"], query_string={"download": "1"})
        assert csv.status_code == 200 and csv.mimetype == "text/csv"
        assert csv.headers["Content-Disposition"] == f'attachment; filename="live-{job_id[:8]}-events.csv"'
        rows = csv.get_data(as_text=True).splitlines()
        assert rows[0].split(",") == EVENT_FIELDS and len(rows) == len(events) + 1
        lines = client.get(final["files"]["events.jsonl"]).get_data(as_text=True).splitlines()
        assert [json.loads(line) for line in lines] == events

        assert client.delete(status_url).get_json() == {"deleted": job_id}  # a second DELETE removes it
        assert client.get(status_url).status_code == 404
        assert not (tmp_path / "jobs" / "live" / job_id).exists()
    finally:
        stop.set()
        flask_app.extensions["spot_jobs"].shutdown()


@pytest.mark.slow  # a job process (torch starts there)
def test_a_feed_that_sends_nothing_fails_with_the_reason(live_model_dir, tmp_path):
    settings = {"connect_timeout_s": 2.0, "stall_timeout_s": 1.0}
    flask_app = make_app(live_model_dir, tmp_path / "jobs", LIVE_SETTINGS=settings)
    client = flask_app.test_client()
    try:
        url = f"udp://127.0.0.1:{free_udp_port()}"
        job = client.post("/api/live", data={"url": url}).get_json()
        status = wait_until(client, job["status_url"], lambda s: s["state"] not in ("running", "stopping"))
        assert status["state"] == "failed" and "no video frame in 2 s" in status["error"], status
        assert status["events"] == [] and status["summary"]["frames"] == 0
        # The slot is free again: another live job starts.
        assert client.post("/api/live", data={"url": url}).status_code == 202
    finally:
        flask_app.extensions["spot_jobs"].shutdown()


def test_the_server_side_of_live_jobs_never_imports_torch():
    code = "import sys, app.app, app.live, app.api; assert 'torch' not in sys.modules, 'torch imported'"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


# ---- refusals, access


@pytest.fixture
def app(live_model_dir, tmp_path):
    flask_app = make_app(live_model_dir, tmp_path / "jobs")
    yield flask_app
    flask_app.extensions["spot_jobs"].shutdown()


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({}, "url", "give the stream's address"),
        ({"url": "/srv/match.mp4"}, "url", "upload it"),
        ({"url": "file:///etc/passwd"}, "url", "file:// is not a stream"),
        ({"url": "-"}, "url", "not a stream address"),
        ({"url": "ftp://host/feed"}, "url", "ftp:// is not a stream"),
        ({"url": "udp://"}, "url", "names no host or port"),
        ({"url": "udp://127.0.0.1:99999"}, "url", "not a valid address"),
        ({"url": "rtsp://cam/a b"}, "url", "spaces"),
        ({"url": "udp://@:5000", "latency": "0.5"}, "latency", "below the 1.2 s"),
        ({"url": "udp://@:5000", "latency": "90"}, "latency", "above the longest"),
        ({"url": "udp://@:5000", "latency": "soon"}, "latency", "not a number"),
        ({"url": "udp://@:5000", "threshold": "1.5"}, "threshold", "not between 0 and 1"),
    ],
)
def test_a_request_that_is_not_a_live_stream_is_refused_naming_the_field(app, fields, field, words):
    client = app.test_client()
    for reply in (client.post("/api/live", data=fields), client.post("/api/live", json=fields)):
        assert reply.status_code == 400
        body = reply.get_json()
        assert body["field"] == field and body["error"].startswith(f"{field}: ") and words in body["error"], (
            body
        )
    live = Path(app.config["JOBS_DIR"]) / "live"
    assert not live.exists() or list(live.iterdir()) == []  # nothing was made


def test_live_routes_keep_the_token_and_same_origin_rules(live_model_dir, tmp_path):
    flask_app = make_app(live_model_dir, tmp_path / "jobs", TOKEN=TOKEN)
    client = flask_app.test_client()
    job = str(uuid.uuid4())
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    try:
        for url in (
            "/live",
            f"/live/{job}",
            "/api/live",
            f"/api/live/{job}",
            f"/api/live/{job}/files/events.csv",
        ):
            assert client.get(url).status_code == 401, url
            assert client.get(url, headers=bearer).status_code != 401, url
        for method, url in (("post", "/live"), ("post", "/api/live"), ("delete", f"/api/live/{job}")):
            assert getattr(client, method)(url).status_code == 401, url
            evil = {**bearer, "Origin": "http://evil.example"}
            assert getattr(client, method)(url, headers=evil).status_code == 403, url
        reply = client.post(
            "/api/live", data={"url": "nowhere"}, headers={**bearer, "Origin": "http://localhost"}
        )
        assert reply.status_code == 400  # past the checks: the URL is refused
        first = client.get(f"/live?token={TOKEN}")
        assert first.status_code == 303 and first.headers["Location"] == "/live"
        assert 'id="live-form"' in client.get("/live").get_data(as_text=True)  # the cookie now
    finally:
        flask_app.extensions["spot_jobs"].shutdown()


def test_the_live_page_offers_the_form_and_is_linked_from_every_page(app):
    client = app.test_client()
    assert 'id="nav-live" href="/live"' in client.get("/").get_data(as_text=True)
    page = client.get("/live").get_data(as_text=True)
    for part in (
        'id="live-form"',
        'name="url"',
        'name="latency"',
        'value="4"',
        'min="1.2"',
        'name="threshold"',
    ):
        assert part in page, part
    assert "a live feed takes it when it is free, and uploads wait" in " ".join(page.split())


# ---- the slots: live jobs beside uploads, without a job process


@pytest.fixture
def slots(monkeypatch):
    """Live jobs that hold their slot until stopped and uploads that hold theirs until released, without any job
    process: the slot rule alone. Yields the event that lets the uploads finish."""
    uploads_go = threading.Event()

    def run_live(self, model_dir, output_dir, kwargs, stop, check):
        (Path(output_dir) / "events.jsonl").write_text("")
        while not stop.wait(0.02):
            check()
        return {"ended": "stopped", "events": 0, "source": kwargs["source"]}

    def process(self, job_id, status):
        uploads_go.wait(10)
        self._move(job_id, "done", finished=time.time(), files={})

    monkeypatch.setattr(WorkerProcess, "run_live", run_live)
    monkeypatch.setattr("app.jobs.JobRunner._process", process)
    yield uploads_go
    uploads_go.set()


def _upload(client, match_video) -> str:
    reply = client.post("/api/jobs", data={"video": (match_video.open("rb"), "m.mp4"), "annotated": "none"})
    assert reply.status_code == 202, reply.get_json()
    return reply.get_json()["id"]


def _state(client, job_id: str) -> str:
    return client.get(f"/api/jobs/{job_id}").get_json()["state"]


def test_with_one_worker_a_live_job_takes_the_free_slot_and_uploads_wait_for_its_stop(
    slots, live_model_dir, match_video, tmp_path
):
    flask_app = make_app(live_model_dir, tmp_path / "jobs", WORKERS=1)
    client = flask_app.test_client()
    try:
        live = client.post("/api/live", data={"url": "udp://@:5000"}).get_json()
        again = client.post("/api/live", data={"url": "udp://@:5001"})
        assert (
            again.status_code == 409
            and "watched in the only worker slot: stop it first" in again.get_json()["error"]
        )
        upload = _upload(client, match_video)
        time.sleep(0.3)
        status = client.get(f"/api/jobs/{upload}").get_json()
        assert status["state"] == "queued" and status["live_jobs"] == 1  # the page says why it waits
        assert client.delete(live["status_url"]).get_json()["state"] == "stopped"
        wait_until(client, f"/api/jobs/{upload}", lambda s: s["state"] == "running", timeout_s=5)
        # An upload holds the only slot: a live job is refused at once, it never queues.
        refused = client.post("/api/live", data={"url": "udp://@:5000"})
        assert (
            refused.status_code == 409
            and "the only worker slot is busy with an upload" in refused.get_json()["error"]
        )
        slots.set()
        wait_until(client, f"/api/jobs/{upload}", lambda s: s["state"] == "done", timeout_s=5)
        assert client.post("/api/live", data={"url": "udp://@:5000"}).status_code == 202
    finally:
        flask_app.extensions["spot_jobs"].shutdown()


def test_with_two_workers_live_jobs_leave_one_slot_to_uploads(slots, live_model_dir, match_video, tmp_path):
    flask_app = make_app(live_model_dir, tmp_path / "jobs", WORKERS=2)
    client = flask_app.test_client()

    def until(job_id: str, state: str) -> None:
        wait_until(client, f"/api/jobs/{job_id}", lambda s: s["state"] == state, timeout_s=5)

    try:
        uploads = [_upload(client, match_video) for _ in range(2)]
        for job_id in uploads:
            until(job_id, "running")
        busy = client.post("/api/live", data={"url": "udp://@:5000"})
        assert busy.status_code == 409 and "all 2 worker slots are busy" in busy.get_json()["error"]
        slots.set()  # the uploads finish
        for job_id in uploads:
            until(job_id, "done")
        slots.clear()

        assert client.post("/api/live", data={"url": "udp://@:5000"}).status_code == 202
        refused = client.post("/api/live", data={"url": "udp://@:5001"})
        assert refused.status_code == 409
        assert (
            "may hold 1 of the 2 worker slots at once (one stays for uploads)" in refused.get_json()["error"]
        )
        first, second = _upload(client, match_video), _upload(client, match_video)
        until(first, "running")  # the slot left to uploads: no wait for the live feed
        second_status = client.get(f"/api/jobs/{second}").get_json()
        assert (
            second_status["state"] == "queued" and second_status["live_jobs"] == 1
        )  # behind the first upload
        slots.set()
        for job_id in (first, second):
            until(job_id, "done")
        listed = client.get("/api/live").get_json()["jobs"]
        assert [job["state"] for job in listed] == ["running"]
    finally:
        flask_app.extensions["spot_jobs"].shutdown()  # asks the live job to stop: the pool's threads end


def test_a_live_job_found_running_after_a_restart_is_interrupted_with_its_events_kept(
    live_model_dir, tmp_path
):
    job_id = str(uuid.uuid4())
    folder = tmp_path / "jobs" / "live" / job_id
    folder.mkdir(parents=True)
    status = {"id": job_id, "kind": "live", "state": "running", "source": "rtsp://cam:secret@10.0.0.5/feed",
              "latency_s": 4.0, "threshold": None, "created": time.time() - 60, "started": time.time() - 59,
              "finished": None, "error": None, "note": None, "summary": None}  # fmt: skip
    store_json(folder / "status.json", status)
    event = dict.fromkeys(EVENT_FIELDS, None) | {"frame": 10, "label": "PASS", "time_s": 2.0}
    (folder / "events.jsonl").write_text(json.dumps(event) + "\n" + '{"frame": 1')  # a line half written
    (folder / "events.csv").write_text(",".join(EVENT_FIELDS) + "\n10,2.0\n")
    flask_app = make_app(live_model_dir, tmp_path / "jobs")
    client = flask_app.test_client()
    try:
        status = client.get(f"/api/live/{job_id}").get_json()
        assert status["state"] == "interrupted" and "server stopped" in status["error"]
        assert status["events"] == [event] and status["source"] == "rtsp://cam:***@10.0.0.5/feed"
        assert client.get(status["files"]["events.jsonl"]).get_data(as_text=True) == json.dumps(event) + "\n"
        assert "secret" not in client.get(f"/live/{job_id}").get_data(as_text=True)
        assert client.delete(f"/api/live/{job_id}").get_json() == {"deleted": job_id}
    finally:
        flask_app.extensions["spot_jobs"].shutdown()
