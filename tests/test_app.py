"""The web app through Flask's test client: every route, every refusal, jobs that queue, fail, survive restarts.

Jobs run the real inference (``model.inference.run_inference``) with a tiny untrained model on a short synthetic
match video; only job folders for the restart and cleanup tests are written by hand.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from markupsafe import escape

from app.app import create_app, get_args, human_size
from app.jobs import STATUS_FILE, is_job_id
from tests.conftest import make_app, write_tiny_model
from util.io import load_json, store_json
from util.visualize import class_colors

JOB_TIMEOUT_S = 120
UNKNOWN_JOB = str(
    uuid.UUID(int=0x7B8DFEED969148A5990B4839817213E4, version=4)
)  # fixed: test ids must agree across workers


# ---- helpers (the model, the match and make_app live in conftest.py)


@pytest.fixture
def app(tiny_model_dir, tmp_path):
    flask_app = make_app(tiny_model_dir, tmp_path / "jobs")
    yield flask_app
    flask_app.extensions["spot_jobs"].shutdown()


@pytest.fixture
def client(app):
    return app.test_client()


def upload(client, data: bytes, name: str = "match.mp4", **form):
    """POST /upload as the page's XHR does; returns the response."""
    fields = {"video": (io.BytesIO(data), name), "threshold": "0.01", **form}
    return client.post(
        "/upload", data=fields, content_type="multipart/form-data", headers={"Accept": "application/json"}
    )


def wait_for(client, job_id: str, states=("done", "failed"), timeout_s: float = JOB_TIMEOUT_S) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = client.get(f"/api/jobs/{job_id}").get_json()
        if status["state"] in states:
            return status
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {status['state']} after {timeout_s} s")


@pytest.fixture(scope="module")
def finished_job(tiny_model_dir, match_video, tmp_path_factory):
    """One real job run to completion: (app, job id), shared by the result-page tests."""
    flask_app = make_app(tiny_model_dir, tmp_path_factory.mktemp("jobs"))
    client = flask_app.test_client()
    response = upload(client, match_video.read_bytes(), name="Wigan - Birmingham.mp4")
    assert response.status_code == 202, response.data
    job_id = response.get_json()["job_id"]
    status = wait_for(client, job_id)
    assert status["state"] == "done", status.get("error")
    yield flask_app, job_id
    flask_app.extensions["spot_jobs"].shutdown()


# ---- the upload page
def test_upload_page_offers_picker_options_and_limit(client):
    page = client.get("/").get_data(as_text=True)
    assert 'type="file"' in page and 'name="video"' in page
    for ext in (".mp4", ".mkv", ".avi", ".mov"):
        assert ext in page
    assert 'name="threshold"' in page and 'name="slowmo"' in page
    assert "4 GiB" in page
    assert "No trained model" not in page


def test_without_a_model_the_page_says_how_to_get_one(tmp_path, match_video):
    flask_app = make_app(tmp_path / "no-model", tmp_path / "jobs")
    client = flask_app.test_client()
    page = client.get("/").get_data(as_text=True)
    assert "No trained model" in page and "make demo" in page and "--model_dir" in page
    response = upload(client, match_video.read_bytes())
    assert response.status_code == 503
    assert "make demo" in response.get_json()["error"]
    flask_app.extensions["spot_jobs"].shutdown()


def test_model_dir_comes_from_the_environment_then_the_demo(monkeypatch, tmp_path):
    monkeypatch.setenv("SPOT_MODEL_DIR", str(tmp_path / "m"))
    flask_app = create_app({"JOBS_DIR": tmp_path / "jobs"})
    assert flask_app.config["MODEL_DIR"] == tmp_path / "m"
    flask_app.extensions["spot_jobs"].shutdown()
    monkeypatch.delenv("SPOT_MODEL_DIR")
    flask_app = create_app({"JOBS_DIR": tmp_path / "jobs"})
    assert flask_app.config["MODEL_DIR"].parts[-2:] == ("demo", "model")
    flask_app.extensions["spot_jobs"].shutdown()


def test_the_script_serves_from_the_app_folder(tiny_model_dir, tmp_path):
    """`cd app && python app.py --model_dir M --port P` (the README's way) starts the real server."""
    import socket
    import subprocess
    import sys
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app_dir = Path(__file__).resolve().parent.parent / "app"
    argv = [sys.executable, "app.py", "--model_dir", str(tiny_model_dir), "--port", str(port)]
    argv += ["--jobs_dir", str(tmp_path / "jobs")]
    server = subprocess.Popen(argv, cwd=app_dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert json.load(r) == {"ok": True, "model_ready": True}
                    break
            except OSError:
                assert server.poll() is None, server.stdout.read().decode()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert r.status == 200 and b'id="upload-form"' in r.read()
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_cli_defaults_and_debug_off(app):
    args = get_args([])
    assert (args.host, args.port, args.model_dir, args.debug) == ("127.0.0.1", 5000, None, False)
    assert get_args(["--model_dir", "m", "--port", "8080"]).port == 8080
    assert not app.debug


# ---- refusals
def test_wrong_extension_is_refused(client, match_video):
    response = upload(client, b"hello", name="notes.txt")
    assert response.status_code == 400
    assert ".mp4" in response.get_json()["error"]
    page = client.post(
        "/upload", data={"video": (io.BytesIO(b"x"), "clip.exe")}, content_type="multipart/form-data"
    )
    assert page.status_code == 400 and "not a supported video" in page.get_data(as_text=True)


def test_missing_file_and_bad_options_are_refused(client, match_video):
    no_file = client.post("/upload", data={}, headers={"Accept": "application/json"})
    assert no_file.status_code == 400 and "Choose a video" in no_file.get_json()["error"]
    for form in ({"threshold": "2"}, {"threshold": "nan"}, {"threshold": "abc"}, {"slowmo": "9"},
                 {"thresholds": "mine"}):  # fmt: skip
        response = upload(client, match_video.read_bytes(), **form)
        assert response.status_code == 400, form
    assert "thresholds must be" in response.get_json()["error"]
    assert _left_behind(client.application) == []  # no job, no file


def test_file_over_the_limit_gets_a_413_page_with_the_limit(tiny_model_dir, tmp_path):
    flask_app = make_app(tiny_model_dir, tmp_path / "jobs", MAX_CONTENT_LENGTH=2048)
    client = flask_app.test_client()
    page = client.post(
        "/upload", data={"video": (io.BytesIO(b"0" * 4096), "big.mp4")}, content_type="multipart/form-data"
    )
    assert page.status_code == 413
    assert "2 KiB" in page.get_data(as_text=True)
    response = upload(client, b"0" * 4096, name="big.mp4")
    assert response.status_code == 413 and "2 KiB" in response.get_json()["error"]
    flask_app.extensions["spot_jobs"].shutdown()


@pytest.mark.slow  # a job in the worker process (torch starts there)
@pytest.mark.parametrize(
    "data",
    [b"", b"this is not a video\n" * 50, "truncated"],
    ids=["zero-bytes", "text", "truncated"],
)
def test_undecodable_video_fails_with_a_reason_and_the_server_keeps_serving(client, match_video, data):
    if data == "truncated":
        data = match_video.read_bytes()[:3000]
    response = upload(client, data, name="broken.mp4")
    assert response.status_code == 202
    job_id = response.get_json()["job_id"]
    status = wait_for(client, job_id)
    assert status["state"] == "failed"
    assert status["error"].startswith("broken.mp4: ")  # the user's file name, not a server path
    assert (
        str(client.application.config["JOBS_DIR"]) not in status["error"]
        and "Traceback" not in status["error"]
    )
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert "could not be processed" in page and str(escape(status["error"])) in page
    assert 'href="/"' in page
    assert client.get(f"/jobs/{job_id}/result").status_code == 302
    assert client.get("/").status_code == 200


@pytest.mark.parametrize(
    "url",
    [
        "/jobs/not-a-job",
        f"/jobs/{UNKNOWN_JOB}",
        f"/jobs/{UNKNOWN_JOB}/result",
        f"/api/jobs/{UNKNOWN_JOB}",
        "/api/jobs/..%2F..%2Fetc%2Fpasswd",
        "/jobs/../../etc/passwd",
        "/jobs/..%2F..%2Fapp/files/video",
        "/jobs/%2e%2e%2f%2e%2e%2fapp/files/video",
        f"/jobs/{UNKNOWN_JOB.upper()}",
        "/static/..%2Fapp.py",
        "/static/../app.py",
    ],
)
def test_unknown_malformed_and_traversal_urls_are_404(client, url):
    response = client.get(url)
    assert response.status_code == 404, url


# ---- a real job, start to finish
@pytest.mark.slow  # a job in the worker process (torch starts there)
def test_job_status_reports_stages_and_finishes(finished_job):
    flask_app, job_id = finished_job
    client = flask_app.test_client()
    assert is_job_id(job_id) and uuid.UUID(job_id).version == 4
    status = client.get(f"/api/jobs/{job_id}").get_json()
    assert status["state"] == "done" and status["percent"] == 100
    assert status["result_url"] == f"/jobs/{job_id}/result"
    assert {"decoding", "detecting", "rendering"} <= set(status["stages"])
    assert "upload" not in status  # no server paths in the public status: the files are URLs of the API
    assert set(status["files"]) == {
        "video",
        "predictions",
        "events_csv",
        "results_spotting",
        "timeline",
        "scores",
    }
    csv_file = client.get(status["files"]["events_csv"] + "?download=1")
    assert csv_file.status_code == 200 and csv_file.mimetype == "text/csv"
    assert csv_file.data.decode().startswith("time_s,time,label,team,score,team_score,frame\n")
    assert "_events.csv" in csv_file.headers["Content-Disposition"]
    assert all(url == f"/api/jobs/{job_id}/files/{name}" for name, url in status["files"].items())
    assert status["events"] == [] or {"label", "frame", "score"} <= set(status["events"][0])
    response = client.get(f"/jobs/{job_id}")
    assert response.status_code == 302 and response.headers["Location"].endswith("/result")


@pytest.mark.slow  # a job in the worker process (torch starts there)
def test_upload_is_stored_under_a_generated_name(finished_job):
    flask_app, job_id = finished_job
    folder = Path(flask_app.config["JOBS_DIR"]) / job_id
    assert (folder / "input.mp4").is_file()
    assert not list(folder.rglob("Wigan*"))
    assert load_json(folder / STATUS_FILE)["original_name"] == "Wigan - Birmingham.mp4"


@pytest.mark.slow  # a job in the worker process (torch starts there)
def test_a_plain_form_post_redirects_to_the_processing_page(client):
    response = client.post(
        "/upload", data={"video": (io.BytesIO(b""), "a.mov")}, content_type="multipart/form-data"
    )
    assert response.status_code == 303
    job_id = response.headers["Location"].rsplit("/", 1)[-1]
    assert is_job_id(job_id)
    page = client.get(f"/jobs/{job_id}").get_data(as_text=True)
    assert 'http-equiv="refresh"' in page  # without JavaScript the page reloads itself
    wait_for(client, job_id)


@pytest.mark.slow  # a job in the worker process (torch starts there)
def test_a_client_file_name_never_becomes_a_path(client):
    jobs = Path(client.application.config["JOBS_DIR"])
    job_id = upload(client, b"", name="../../evil.mp4").get_json()["job_id"]
    wait_for(client, job_id)
    # (status.json may still be being replaced: the job's state is served from memory before its file is written,
    # so an atomic write's ".status.json.*.tmp" may be there for a moment.)
    names = {
        p.name for p in (jobs / job_id).iterdir() if not (p.name.startswith(".") and p.name.endswith(".tmp"))
    }
    assert names <= {"input.mp4", STATUS_FILE, "output"}
    assert not list(jobs.parent.rglob("evil*"))
    assert client.get(f"/api/jobs/{job_id}").get_json()["original_name"] == "evil.mp4"


@pytest.mark.slow  # a job in the worker process (torch starts there)
def test_result_page_lists_the_actions_found(finished_job):
    flask_app, job_id = finished_job
    client = flask_app.test_client()
    predictions = json.loads(client.get(f"/jobs/{job_id}/files/predictions").data)
    events = predictions["events"]
    assert events, "threshold 0.01 on an untrained model should still give some events"
    page = client.get(f"/jobs/{job_id}/result").get_data(as_text=True)
    assert page.count('class="event"') == len(events)
    assert f"{len(events)}</span> action" in page
    assert "<video" in page and f"/jobs/{job_id}/files/video" in page
    labels = {e["label"] for e in events}
    for label in labels:
        assert f'<option value="{label}">' in page  # per-class counts feed the class filter
    assert 'id="class-counts"' in page
    assert any(e.get("team") for e in events)  # the tiny model has a team head
    assert 'id="team-filter"' in page and "team-badge team-" in page
    for name in ("video", "predictions", "results_spotting", "timeline"):
        assert f"/jobs/{job_id}/files/{name}?download=1" in page


@pytest.mark.slow  # a job in the worker process (torch starts there)
def test_clicking_an_action_seeks_to_its_frame_in_the_slowed_down_video(finished_job):
    """Slow motion (3x by default) stretches the annotated video: each action's time is where its frame is."""
    import av

    flask_app, job_id = finished_job
    client = flask_app.test_client()
    events = json.loads(client.get(f"/jobs/{job_id}/files/predictions").data)["events"]
    page = client.get(f"/jobs/{job_id}/result").get_data(as_text=True)
    times = [float(t) for t in re.findall(r'data-time="([0-9.]+)"', page)]
    assert len(times) == len(events) and times == sorted(times)
    path = Path(flask_app.config["JOBS_DIR"]) / job_id / "output" / "annotated.mp4"
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [
            (float(f.pts * stream.time_base), f.to_ndarray(format="rgb24")) for f in container.decode(stream)
        ]
    predictions = json.loads(client.get(f"/jobs/{job_id}/files/predictions").data)
    assert len(frames) > predictions["num_frames"]  # slow motion on
    colors = class_colors(predictions.get("classes") or sorted({e["label"] for e in events}))
    for event, t in zip(events, times, strict=True):
        assert t >= event["frame"] / predictions["fps"] - 1e-6
        # The frame shown at that time is the event's own: only there is the frame edged in the class colour.
        shown = min(frames, key=lambda f: abs(f[0] - t))[1]
        edge = shown[0, shown.shape[1] // 4 : -shown.shape[1] // 4].mean(axis=0)
        same_frame = [e["label"] for e in events if e["frame"] == event["frame"]]
        assert min(np.abs(edge - colors[label]).max() for label in same_frame) < 40, (event, edge)


@pytest.mark.slow  # a job in the worker process (torch starts there)
def test_video_answers_range_requests_with_206(finished_job):
    flask_app, job_id = finished_job
    client = flask_app.test_client()
    full = client.get(f"/jobs/{job_id}/files/video")
    assert full.status_code == 200 and full.mimetype == "video/mp4"
    assert full.headers.get("Accept-Ranges") == "bytes"
    size = len(full.data)
    part = client.get(f"/jobs/{job_id}/files/video", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206
    assert part.headers["Content-Range"] == f"bytes 100-199/{size}"
    assert part.data == full.data[100:200]
    assert (
        client.get(f"/jobs/{job_id}/files/video", headers={"Range": f"bytes={size + 10}-"}).status_code == 416
    )


@pytest.mark.slow  # a job in the worker process (torch starts there)
def test_downloads_are_the_job_files(finished_job):
    flask_app, job_id = finished_job
    client = flask_app.test_client()
    spotting = client.get(f"/jobs/{job_id}/files/results_spotting?download=1")
    assert spotting.status_code == 200
    assert "attachment" in spotting.headers["Content-Disposition"]
    assert "predictions" in json.loads(spotting.data)
    timeline = client.get(f"/jobs/{job_id}/files/timeline")
    assert timeline.mimetype == "image/png" and timeline.data[:4] == b"\x89PNG"


@pytest.mark.slow  # a job in the worker process (torch starts there)
@pytest.mark.parametrize(
    "name", ["status.json", "input.mp4", "..%2Fstatus.json", "output", "scores.npz", "etc"]
)
def test_only_named_result_files_are_served(finished_job, name):
    flask_app, job_id = finished_job
    assert flask_app.test_client().get(f"/jobs/{job_id}/files/{name}").status_code == 404


def test_a_result_path_outside_the_job_folder_is_never_served(tiny_model_dir, tmp_path):
    jobs = tmp_path / "jobs"
    secret = tmp_path / "secret.json"
    secret.write_text('{"secret": 1}')
    job_id = str(uuid.uuid4())
    status = _hand_made_status(job_id, "done", time.time())
    status["files"] = {"predictions": "../../secret.json", "video": str(secret)}
    store_json(jobs / job_id / STATUS_FILE, status)
    flask_app = make_app(tiny_model_dir, jobs)
    client = flask_app.test_client()
    assert client.get(f"/jobs/{job_id}/files/predictions").status_code == 404
    assert client.get(f"/jobs/{job_id}/files/video").status_code == 404
    flask_app.extensions["spot_jobs"].shutdown()


def test_security_headers(client):
    headers = client.get("/").headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'self'" in headers["Content-Security-Policy"]
    assert client.get("/classes.css").mimetype == "text/css"


# ---- queueing, restarts, cleanup
@pytest.mark.slow  # a job in the worker process (torch starts there)
def test_concurrent_uploads_queue_and_all_finish(client, match_video):
    data = match_video.read_bytes()
    ids = [upload(client, data, name=f"m{i}.mp4").get_json()["job_id"] for i in range(3)]
    assert len(set(ids)) == 3
    states = [client.get(f"/api/jobs/{i}").get_json() for i in ids]
    assert states[-1]["state"] == "queued" and states[-1]["queue_position"] >= 1
    assert client.get("/").status_code == 200  # the server answers while a job runs
    for job_id in ids:
        assert wait_for(client, job_id)["state"] == "done"


def _hand_made_status(job_id: str, state: str, when: float) -> dict:
    return {
        "id": job_id,
        "state": state,
        "original_name": "old.mp4",
        "upload": "input.mp4",
        "upload_bytes": 0,
        "options": {"threshold": 0.5, "slowmo_factor": 1},
        "created": when,
        "finished": when if state in ("done", "failed") else None,
        "stages": {},
        "percent": 0.0,
        "error": None,
    }


@pytest.mark.slow  # a job in the worker process (torch starts there)
def test_restart_marks_running_jobs_interrupted_and_requeues_queued_ones(
    tiny_model_dir, match_video, tmp_path
):
    jobs = tmp_path / "jobs"
    running, queued = str(uuid.uuid4()), str(uuid.uuid4())
    store_json(
        jobs / running / STATUS_FILE, {**_hand_made_status(running, "running", time.time()), "percent": 40}
    )
    store_json(jobs / queued / STATUS_FILE, _hand_made_status(queued, "queued", time.time()))
    for job_id in (running, queued):
        (jobs / job_id / "input.mp4").write_bytes(match_video.read_bytes())
    flask_app = make_app(tiny_model_dir, jobs)
    client = flask_app.test_client()
    status = client.get(f"/api/jobs/{running}").get_json()
    assert status["state"] == "interrupted" and "server stopped" in status["error"] and status["can_retry"]
    page = client.get(f"/jobs/{running}").get_data(as_text=True)
    assert "server stopped" in page and "Run it again" in page
    assert wait_for(client, queued)["state"] == "done"
    # The interrupted job runs again from its upload, once (a second retry while it is queued is refused).
    assert client.post(f"/api/jobs/{running}/retry").status_code == 202
    assert client.post(f"/api/jobs/{running}/retry").status_code == 409
    assert wait_for(client, running)["state"] == "done"
    assert client.post(f"/api/jobs/{running}/retry").status_code == 409  # done: nothing to run again
    flask_app.extensions["spot_jobs"].shutdown()


def test_cleanup_removes_jobs_by_age_and_by_count(tiny_model_dir, tmp_path):
    jobs = tmp_path / "jobs"
    now = time.time()
    ages_h = [0.1, 1, 2, 3, 500]
    ids = [str(uuid.uuid4()) for _ in ages_h]
    for job_id, age in zip(ids, ages_h, strict=True):
        store_json(jobs / job_id / STATUS_FILE, _hand_made_status(job_id, "done", now - age * 3600))
    (jobs / "not-a-job").mkdir()
    # Folders of uploads that never became jobs (the server died while saving): removed after a day.
    stale, fresh = str(uuid.uuid4()), str(uuid.uuid4())
    (jobs / stale).mkdir()
    (jobs / fresh).mkdir()
    os.utime(jobs / stale, (now - 25 * 3600, now - 25 * 3600))
    flask_app = make_app(tiny_model_dir, jobs, MAX_JOBS=3, MAX_JOB_AGE_S=100 * 3600)
    left = sorted(p.name for p in jobs.iterdir() if p.name != ".lock")
    assert left == sorted([*ids[:3], "not-a-job", fresh])
    flask_app.extensions["spot_jobs"].shutdown()


def test_human_size():
    assert human_size(0) == "0 bytes"
    assert human_size(2048) == "2 KiB"
    assert human_size(4 * 1024**3) == "4 GiB"
    assert human_size(1536 * 1024) == "1.5 MiB"


# ---- access control, the API's refusals, safe cleanup, one server per jobs folder
TOKEN = "s3cret-token"


def test_the_token_guards_every_route(tiny_model_dir, tmp_path):
    flask_app = make_app(tiny_model_dir, tmp_path / "jobs", TOKEN=TOKEN)
    client = flask_app.test_client()
    job = str(uuid.uuid4())
    urls = {"/", "/classes.css", f"/jobs/{job}", f"/jobs/{job}/result", f"/jobs/{job}/files/video",
            f"/api/jobs/{job}", f"/api/jobs/{job}/files/video", f"/api/uploads/{job}", "/live", f"/live/{job}",
            "/api/live", f"/api/live/{job}", f"/api/live/{job}/files/events.csv"}  # fmt: skip
    routes = {r.rule for r in flask_app.url_map.iter_rules()} - {"/static/<path:filename>", "/healthz"}
    assert (
        len(routes) == len(urls) + 4
    )  # + POST /upload, POST /api/jobs, POST .../retry, POST /api/uploads (DELETE, PUT share a rule)
    for url in urls:
        assert client.get(url).status_code == 401, url
        assert client.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401, url
        assert client.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code != 401, url
    for method, url in (("post", "/upload"), ("post", "/api/jobs"), ("post", f"/api/jobs/{job}/retry"),
                        ("delete", f"/api/jobs/{job}"), ("post", "/api/uploads"), ("put", f"/api/uploads/{job}"),
                        ("delete", f"/api/uploads/{job}"), ("post", "/live"), ("post", "/api/live"),
                        ("delete", f"/api/live/{job}")):  # fmt: skip
        assert getattr(client, method)(url).status_code == 401, url
        assert getattr(client, method)(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code != 401
    assert client.get("/healthz").status_code == 200 and client.get("/static/style.css").status_code == 200
    # A browser: the link with ?token= sets a cookie and drops the token from the address bar.
    first = client.get(f"/?token={TOKEN}")
    assert first.status_code == 303 and first.headers["Location"] == "/"
    assert "HttpOnly" in first.headers["Set-Cookie"] and "SameSite=Lax" in first.headers["Set-Cookie"]
    assert client.get(f"/jobs/{job}?token={TOKEN}&x=1").headers["Location"] == f"/jobs/{job}?x=1"
    assert client.get(f"/nowhere?token={TOKEN}").status_code == 303  # unknown paths too: no 500
    assert client.get("/").status_code == 200  # the cookie now
    flask_app.extensions["spot_jobs"].shutdown()


@pytest.mark.slow  # a job in the worker process (torch starts there)
def test_changes_from_another_origin_are_refused(client, match_video):
    evil = {"Origin": "http://evil.example", "Accept": "application/json"}
    data = {"video": (io.BytesIO(match_video.read_bytes()), "m.mp4")}
    assert client.post("/api/jobs", data=data, headers=evil).status_code == 403
    own = {"Origin": "http://localhost", "Accept": "application/json"}
    data = {"video": (io.BytesIO(match_video.read_bytes()), "m.mp4")}
    reply = client.post("/api/jobs", data=data, headers=own)
    assert reply.status_code == 202 and set(reply.get_json()) >= {"id", "url", "status_url"}
    job_id = reply.get_json()["id"]
    assert client.delete(f"/api/jobs/{job_id}", headers=evil).status_code == 403
    wait_for(client, job_id)
    assert client.delete(f"/api/jobs/{job_id}").get_json() == {"deleted": job_id}
    assert client.get(f"/api/jobs/{job_id}").status_code == 404
    assert client.post(f"/api/jobs/{job_id}/retry").status_code == 404


def test_cleanup_never_removes_active_or_recent_jobs(tiny_model_dir, tmp_path):
    jobs, now = tmp_path / "jobs", time.time()
    cases = {"queued old": ("queued", 50), "running old": ("running", 50), "done recent": ("done", 0.5),
             "failed recent": ("failed", 0.2), "done old": ("done", 5), "done older": ("done", 6)}  # fmt: skip
    ids = {name: str(uuid.uuid4()) for name in cases}
    for name, (state, age_h) in cases.items():
        store_json(jobs / ids[name] / STATUS_FILE, _hand_made_status(ids[name], state, now - age_h * 3600))
    from app.jobs import JobRunner

    runner = JobRunner(jobs, tiny_model_dir, workers=1, max_jobs=1)  # recovery marks "running" interrupted
    runner.stop()
    left = {name for name, job_id in ids.items() if (jobs / job_id).is_dir()}
    # max_jobs 1: of the finished ones only the newest stays, except those finished in the last hour.
    assert left == {"queued old", "running old", "done recent", "failed recent"}
    with pytest.raises(ValueError, match="at least 1"):
        JobRunner(jobs, tiny_model_dir, workers=0)


def test_one_server_per_jobs_folder(tiny_model_dir, tmp_path):
    from app.jobs import JobRunner
    from util.io import DataError

    first = JobRunner(tmp_path / "jobs", tiny_model_dir)
    with pytest.raises(DataError, match=r"another server is using this jobs folder \(pid \d+"):
        JobRunner(tmp_path / "jobs", tiny_model_dir)
    first.stop()
    JobRunner(tmp_path / "jobs", tiny_model_dir).stop()  # free again


def test_cli_refuses_an_open_address_without_a_token_and_zero_workers(capsys):
    for argv in (["--host", "0.0.0.0"], ["--workers", "0"], ["--max_jobs", "0"]):
        with pytest.raises(SystemExit):
            get_args(argv)
    assert "--token" in capsys.readouterr().err
    assert get_args(["--host", "0.0.0.0", "--insecure"]).host == "0.0.0.0"
    assert get_args(["--host", "0.0.0.0", "--token", "t"]).token == "t"
    assert get_args(["--host", "::1"]).token is None


def test_without_a_token_only_loopback_names_are_answered(tiny_model_dir, tmp_path):
    flask_app = make_app(tiny_model_dir, tmp_path / "jobs", LOOPBACK_ONLY=True)
    client = flask_app.test_client()
    assert client.get("/", base_url="http://localhost:5000").status_code == 200
    assert client.get("/", base_url="http://127.0.0.1:5000").status_code == 200
    assert client.get("/", base_url="http://evil.example:5000").status_code == 403  # DNS rebinding
    flask_app.extensions["spot_jobs"].shutdown()


def test_the_render_ratio_a_server_learns_survives_a_restart(tiny_model_dir, tmp_path):
    from app.jobs import RENDER_TO_DETECT, TIMING_FILE, JobRunner, _Progress

    jobs = tmp_path / "jobs"
    runner = JobRunner(jobs, tiny_model_dir)
    assert runner.expected_render_ratio("highlights") == RENDER_TO_DETECT["highlights"]  # nothing learned yet
    progress = _Progress(runner, "job", time.time(), "full")
    progress.stage_started = {"detecting": (time.time() - 30, 0), "rendering": (time.time() - 6, 0)}
    runner._learn_render_ratio(progress)  # 24 s detecting, 6 s rendering
    runner.stop()
    again = JobRunner(jobs, tiny_model_dir)
    assert again.expected_render_ratio("full") == pytest.approx(0.25, abs=0.01)
    # A kind it never made: its guess, scaled as this server's other kind compared with its guess; no video: 0.
    scale = 0.25 / RENDER_TO_DETECT["full"]
    assert again.expected_render_ratio("highlights") == pytest.approx(
        RENDER_TO_DETECT["highlights"] * scale, rel=0.05
    )
    assert again.expected_render_ratio("none") == 0.0
    again.stop()
    (jobs / TIMING_FILE).write_text("{not json")
    broken = JobRunner(jobs, tiny_model_dir)  # a damaged record is ignored, not fatal
    assert broken.render_ratio == {}
    broken.stop()


@pytest.mark.slow  # a job in the worker process (torch starts there)
def test_an_upload_with_its_labels_shows_what_was_found_missed_and_falsely_detected(client, match_video):
    labels = (match_video.parent / "Labels-ball.json").read_bytes()
    bad = upload(client, match_video.read_bytes(), labels=(io.BytesIO(b'{"no": 1}'), "mine.json"))
    assert bad.status_code == 400 and "mine.json" in bad.get_json()["error"]
    reply = upload(client, match_video.read_bytes(), labels=(io.BytesIO(labels), "Labels-ball.json"))
    assert reply.status_code == 202, reply.get_data(as_text=True)
    job_id = reply.get_json()["job_id"]
    assert wait_for(client, job_id)["state"] == "done"
    folder = Path(client.application.config["JOBS_DIR"]) / job_id
    doc = load_json(folder / "output" / "predictions.json")
    summary = doc["ground_truth_summary"]
    assert summary["events"] == len(doc["ground_truth"]) > 0
    assert summary["false_alarms"] == sum(not e["correct"] for e in doc["events"])
    page = client.get(f"/jobs/{job_id}/result").get_data(as_text=True)
    assert f"<strong>{summary['found']} of {summary['events']}</strong> true actions found" in page
    assert page.count('class="ev-truth ') == len(doc["events"])
    # Without labels, nothing of the kind (and no guess from the video's name).
    plain = upload(client, match_video.read_bytes()).get_json()["job_id"]
    assert wait_for(client, plain)["state"] == "done"
    assert "ground_truth" not in load_json(
        Path(client.application.config["JOBS_DIR"]) / plain / "output" / "predictions.json"
    )


def test_a_reel_of_chosen_actions_or_team_is_offered_and_checked_against_the_model(
    client, match_video, tmp_path
):
    page = client.get("/").get_data(as_text=True)
    classes = load_json(client.application.config["MODEL_DIR"] / "config.json")["classes"]
    assert all(f'name="highlight_classes" value="{c}"' in page for c in classes)
    assert 'name="highlight_team"' in page  # the tiny model has a team head
    for form, said in (
        ({"highlight_classes": "PASS,NOT A CLASS"}, "NOT A CLASS is not"),
        ({"highlight_classes": "PASS", "annotated": "full"}, "annotated=highlights"),
        ({"highlight_team": "up"}, "highlight_team must be 'left' or 'right'"),
    ):
        reply = upload(client, match_video.read_bytes(), **form)
        assert reply.status_code == 400 and said in reply.get_json()["error"], form
    no_team = make_app(write_tiny_model(tmp_path / "no-team", team=False), tmp_path / "other-jobs")
    other = no_team.test_client()
    assert 'name="highlight_team"' not in other.get("/").get_data(as_text=True)
    reply = upload(other, match_video.read_bytes(), highlight_team="left")
    assert reply.status_code == 400 and "does not tell the teams apart" in reply.get_json()["error"]
    no_team.extensions["spot_jobs"].shutdown()


@pytest.mark.slow  # a job in the worker process (torch starts there)
def test_a_reel_of_one_class_and_team_leaves_the_other_actions_out_of_the_video(client, match_video):
    reply = upload(
        client, match_video.read_bytes(), highlight_classes=["PASS", "DRIVE"], highlight_team="right"
    )
    assert reply.status_code == 202, reply.get_data(as_text=True)
    job_id = reply.get_json()["job_id"]
    status = wait_for(client, job_id)
    assert status["state"] == "done", status.get("error")
    assert status["options"]["annotated"] == "highlights"  # "auto" with a choice is a reel
    assert status["options"]["highlight_classes"] == ["PASS", "DRIVE"]
    folder = Path(client.application.config["JOBS_DIR"]) / job_id
    events = load_json(folder / "events.json")["events"]
    chosen = [e["label"] in ("PASS", "DRIVE") and e["team"] == "right" for e in events]
    assert any(chosen) and not all(chosen)  # the untrained model at 0.01 spots every class
    assert [e.get("in_reel", True) for e in events] == chosen
    page = client.get(f"/jobs/{job_id}/result").get_data(as_text=True)
    assert page.count('title="not in the highlight reel you chose"') == chosen.count(False)
    assert "highlights of pass, drive, right team" in page


# ---- uploads of a whole match: streamed to the job folder once, limits, interruptions, the free disk, resuming
class Reads(io.BytesIO):
    """A request body that records how much the app asks for at a time (and can fail after ``fail_after`` bytes,
    as a socket does when the client goes away)."""

    def __init__(self, data: bytes, fail_after: int | None = None) -> None:
        super().__init__(data)
        self.asked: list[int] = []
        self.fail_after = fail_after

    def _check(self, size: int) -> None:
        self.asked.append(size)
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise ConnectionResetError("the client went away")

    def read(self, size: int | None = -1) -> bytes:
        self._check(-1 if size is None else size)
        return super().read(size)

    def readinto(self, buffer) -> int:
        self._check(len(buffer))
        return super().readinto(buffer)


class Unread(io.BytesIO):
    """A request body the app must not read (refused from its headers)."""

    def read(self, size=-1):
        raise AssertionError("the body was read")

    readinto = read


@pytest.fixture
def held(tiny_model_dir, tmp_path):
    """An app whose jobs are queued but never run (no worker process): the uploads alone are tested."""
    flask_app = make_app(tiny_model_dir, tmp_path / "jobs")
    flask_app.extensions["spot_jobs"]._submit = lambda job_id: None
    yield flask_app
    flask_app.extensions["spot_jobs"].shutdown()


def _left_behind(flask_app) -> list[str]:
    """Everything under the jobs folder but its lock and the (empty) folder of uploads in flight."""
    jobs = Path(flask_app.config["JOBS_DIR"])
    return sorted(
        p.relative_to(jobs).as_posix()
        for p in jobs.rglob("*")
        if p.name != ".lock" and not (p.is_dir() and p.name == ".uploads" and not any(p.iterdir()))
    )


def post_raw(client, body, name: str = "match.mp4", length: int | None = None, **query):
    """POST /api/jobs with the video as the body (curl -T); ``length``: a Content-Length other than the body's."""
    overrides = {} if length is None else {"CONTENT_LENGTH": str(length)}
    return client.post(
        "/api/jobs",
        query_string={"name": name, **query},
        input_stream=body,
        content_type="application/octet-stream",
        environ_overrides=overrides,
    )


def test_a_raw_body_streams_into_the_job_folder_as_one_file_in_bounded_reads(held):
    client = held.test_client()
    data = os.urandom(5 << 20)
    body = Reads(data)
    reply = post_raw(client, body, name="Derby day.mkv", threshold="0.2", slowmo="1")
    assert reply.status_code == 202, reply.get_data(as_text=True)
    job_id = reply.get_json()["job_id"]
    folder = Path(held.config["JOBS_DIR"]) / job_id
    assert (folder / "input.mkv").read_bytes() == data
    assert _left_behind(held) == sorted([job_id, f"{job_id}/input.mkv", f"{job_id}/{STATUS_FILE}"])
    status = client.get(f"/api/jobs/{job_id}").get_json()
    assert status["original_name"] == "Derby day.mkv" and status["state"] == "queued"
    assert status["options"]["threshold"] == 0.2 and status["upload_bytes"] == len(data)
    # Memory stays flat: read a MiB at a time, never the whole body at once.
    assert body.asked and max(body.asked) <= 1 << 20 and -1 not in body.asked
    # A raw body needs a name of a known kind, and valid options; nothing is kept.
    assert post_raw(client, io.BytesIO(b"x"), name="").status_code == 400
    assert "not a supported video" in post_raw(client, io.BytesIO(b"x"), name="a.exe").get_json()["error"]
    assert post_raw(client, io.BytesIO(b"x"), threshold="7").status_code == 400
    assert len(_left_behind(held)) == 3


def test_an_upload_over_the_limit_is_refused_from_its_length_before_reading(tiny_model_dir, tmp_path):
    limit = int(0.001 * 1024**3)  # --max_upload_gb 0.001
    flask_app = make_app(tiny_model_dir, tmp_path / "jobs", MAX_CONTENT_LENGTH=limit)
    client = flask_app.test_client()
    reply = post_raw(client, Unread(b"x" * 16), length=limit + 1)
    assert reply.status_code == 413 and "upload limit of 1 MiB" in reply.get_json()["error"]
    form = client.post(
        "/upload",
        input_stream=Unread(b"x" * 16),
        content_type="multipart/form-data; boundary=b",
        environ_overrides={"CONTENT_LENGTH": str(5 * 10**9)},
    )
    assert form.status_code == 413 and "1 MiB" in form.get_data(as_text=True)
    # A resumable upload that declares more than the limit is refused before any byte is sent.
    start = client.post("/api/uploads", data={"name": "big.mp4", "size": str(limit + 1)})
    assert start.status_code == 413 and "1 MiB" in start.get_json()["error"]
    assert _left_behind(flask_app) == []
    flask_app.extensions["spot_jobs"].shutdown()


def test_without_a_length_the_limit_holds_while_streaming(tiny_model_dir, tmp_path):
    """A chunked body (no Content-Length, as Flask's own server in --debug passes it) is cut at the limit."""
    flask_app = make_app(tiny_model_dir, tmp_path / "jobs", MAX_CONTENT_LENGTH=1 << 20)
    flask_app.extensions["spot_jobs"]._submit = lambda job_id: None
    client = flask_app.test_client()
    chunked = {"CONTENT_LENGTH": "", "HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True}
    over = client.post(
        "/api/jobs?name=long.mp4",
        input_stream=io.BytesIO(os.urandom((1 << 20) + 1)),
        content_type="application/octet-stream",
        environ_overrides=chunked,
    )
    assert over.status_code == 413 and "1 MiB" in over.get_json()["error"]
    assert _left_behind(flask_app) == []
    data = os.urandom(1 << 19)
    under = client.post(
        "/api/jobs?name=short.mp4",
        input_stream=io.BytesIO(data),
        content_type="application/octet-stream",
        environ_overrides=chunked,
    )
    assert under.status_code == 202, under.get_data(as_text=True)
    assert (
        Path(flask_app.config["JOBS_DIR"]) / under.get_json()["job_id"] / "input.mp4"
    ).read_bytes() == data
    flask_app.extensions["spot_jobs"].shutdown()


def test_an_interrupted_upload_leaves_nothing_behind(held):
    client = held.test_client()
    data = os.urandom(3 << 20)
    # The connection drops after 2 MiB (the socket fails), or the body ends before its Content-Length.
    for body, length in ((Reads(data, fail_after=2 << 20), None), (io.BytesIO(data), len(data) + 1000)):
        reply = post_raw(client, body, length=length)
        assert reply.status_code == 400 and "interrupted" in reply.get_json()["error"], reply.get_json()
        assert _left_behind(held) == []
    # The same through the form: a multipart body cut in the middle of the video.
    boundary = "cut"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="video"; filename="m.mp4"\r\n\r\n'.encode()
    reply = client.post(
        "/upload",
        input_stream=io.BytesIO(head + data),
        content_type=f"multipart/form-data; boundary={boundary}",
        environ_overrides={"CONTENT_LENGTH": str(len(head) + len(data) + 500)},
        headers={"Accept": "application/json"},
    )
    assert reply.status_code == 400
    assert _left_behind(held) == []
    assert client.get("/").status_code == 200


def test_the_free_disk_is_checked_before_accepting(held, monkeypatch):
    import shutil

    client = held.test_client()
    real = shutil.disk_usage
    free = 64 << 20

    def usage(path):
        total, used, _ = real(path)
        return type(real(path))(total, used, free)

    monkeypatch.setattr(shutil, "disk_usage", usage)
    held.config["UPLOAD_DISK_MARGIN"] = 32 << 20
    reply = post_raw(client, Unread(b"x"), length=40 << 20)  # 40 MiB + the 32 MiB margin > 64 MiB free
    assert reply.status_code == 507
    message = reply.get_json()["error"]
    assert "64 MiB free" in message and "72 MiB" in message and "jobs folder" in message
    form = client.post(
        "/api/jobs",
        input_stream=Unread(b"x"),
        content_type="multipart/form-data; boundary=b",
        environ_overrides={"CONTENT_LENGTH": str(40 << 20)},
    )
    assert form.status_code == 507
    start = client.post("/api/uploads", data={"name": "m.mp4", "size": str(40 << 20)})
    assert start.status_code == 507 and "64 MiB free" in start.get_json()["error"]
    assert _left_behind(held) == []
    # What fits is accepted; a resumable upload in flight holds its room (the next one must fit beside it).
    assert post_raw(client, io.BytesIO(b"x" * 1000)).status_code == 202
    first = client.post("/api/uploads", data={"name": "m.mp4", "size": str(20 << 20)})
    assert first.status_code == 201
    second = client.post("/api/uploads", data={"name": "n.mp4", "size": str(20 << 20)})
    assert second.status_code == 507, second.get_json()


def test_a_resumable_upload_goes_on_from_where_it_stopped(held, match_video):
    client = held.test_client()
    data = os.urandom(3 << 20)
    labels = (match_video.parent / "Labels-ball.json").read_bytes()
    start = client.post(
        "/api/uploads",
        data={"name": "Final.mp4", "size": str(len(data)), "threshold": "0.4",
              "labels": (io.BytesIO(labels), "Labels-ball.json")},
        content_type="multipart/form-data",
    )  # fmt: skip
    assert start.status_code == 201, start.get_data(as_text=True)
    session = start.get_json()
    url = session["upload_url"]
    assert session["offset"] == 0 and session["size"] == len(data) and session["chunk_bytes"] > 0

    def put(offset: int, body, length: int | None = None):
        overrides = {} if length is None else {"CONTENT_LENGTH": str(length)}
        return client.put(
            url,
            input_stream=body,
            content_type="application/octet-stream",
            headers={"Upload-Offset": str(offset)},
            environ_overrides=overrides,
        )

    first = put(0, io.BytesIO(data[: 1 << 20]))
    assert first.status_code == 200 and first.get_json()["offset"] == 1 << 20
    # A piece from the wrong place is refused with where to go on from.
    wrong = put(5, io.BytesIO(data[5:100]))
    assert wrong.status_code == 409 and wrong.get_json()["offset"] == 1 << 20
    # The connection drops in the middle of the next piece: what arrived is kept, and the client asks where to
    # go on from.
    cut = put(1 << 20, Reads(data[1 << 20 :], fail_after=1 << 19))
    assert cut.status_code == 400
    offset = client.get(url).get_json()["offset"]
    assert (1 << 20) < offset < len(data)  # more than before, not all
    assert not [p for p in Path(held.config["JOBS_DIR"]).iterdir() if is_job_id(p.name)]  # no job yet
    # Past the declared size: refused.
    assert put(offset, io.BytesIO(data[offset:] + b"extra")).status_code == 413
    done = put(offset, io.BytesIO(data[offset:]))
    assert done.status_code == 202, done.get_data(as_text=True)
    job_id = done.get_json()["job_id"]
    folder = Path(held.config["JOBS_DIR"]) / job_id
    assert (folder / "input.mp4").read_bytes() == data
    assert (folder / "Labels-ball.json").read_bytes() == labels
    status = client.get(f"/api/jobs/{job_id}").get_json()
    assert status["original_name"] == "Final.mp4" and status["options"]["threshold"] == 0.4
    assert status["options"]["labels"] is True
    assert _left_behind(held) == sorted(
        [job_id, f"{job_id}/input.mp4", f"{job_id}/Labels-ball.json", f"{job_id}/{STATUS_FILE}"]
    )
    assert client.get(url).status_code == 404  # the upload became the job
    # An upload given up is deleted with nothing left; an unknown one is a 404; a bad start names its problem.
    again = client.post("/api/uploads", data={"name": "Other.mp4", "size": "10"}).get_json()["upload_url"]
    assert client.put(again, data=b"12345", headers={"Upload-Offset": "0"}).status_code == 200
    assert client.delete(again).status_code == 200
    assert client.get(again).status_code == 404 and len(_left_behind(held)) == 4
    assert (
        client.put(f"/api/uploads/{UNKNOWN_JOB}", data=b"1", headers={"Upload-Offset": "0"}).status_code
        == 404
    )
    for form, said in (({"name": "x.txt", "size": "3"}, "not a supported video"), ({"name": "x.mp4"}, "size"),
                       ({"name": "x.mp4", "size": "3", "slowmo": "9"}, "slow motion")):  # fmt: skip
        reply = client.post("/api/uploads", data=form)
        assert reply.status_code == 400 and said in reply.get_json()["error"], (form, reply.get_json())


def test_a_resumable_upload_given_up_expires(held, monkeypatch):
    client = held.test_client()
    url = client.post("/api/uploads", data={"name": "m.mp4", "size": "10"}).get_json()["upload_url"]
    assert client.put(url, data=b"123", headers={"Upload-Offset": "0"}).status_code == 200
    staged = Path(held.config["JOBS_DIR"]) / ".uploads"
    old = time.time() - 25 * 3600
    for path in staged.rglob("*"):
        os.utime(path, (old, old))
    client.post("/api/uploads", data={"name": "n.mp4", "size": "10"})  # a new upload sweeps the old ones
    assert client.get(url).status_code == 404
    assert len(list(staged.iterdir())) == 1


@pytest.mark.slow  # a job in the worker process (torch starts there)
def test_a_4_3_upload_is_letterboxed_and_the_result_says_so(client, tmp_path):
    from tests.conftest import write_index_video

    video = tmp_path / "phone.mp4"
    write_index_video(video, fps=25.0, seconds=2.0, size=(160, 120))  # 4:3, the tiny model's frames are 16:9
    job_id = upload(client, video.read_bytes(), name="phone clip.mp4", annotated="none").get_json()["job_id"]
    status = wait_for(client, job_id)
    assert status["state"] == "done", status.get("error")
    (note,) = [n for n in status["notes"] if "aspect" in n]  # (another note says the rate was resampled)
    assert "phone clip.mp4" in note and "4:3" in note and "letterboxed" in note
    assert str(client.application.config["JOBS_DIR"]) not in note  # the upload's name, not the server's path
    page = client.get(f"/jobs/{job_id}/result").get_data(as_text=True)
    assert 'id="notes"' in page and "letterboxed" in page


def test_the_form_chooses_how_another_aspect_is_fitted(client):
    from werkzeug.datastructures import MultiDict

    from app.options import inference_options, parse_options

    crop = parse_options(MultiDict({"aspect": "crop"}), default_threshold=0.5, default_slowmo=3)
    assert inference_options(crop, Path("v.mp4"), "v.mp4", None).aspect == "crop"
    default = parse_options(MultiDict(), default_threshold=0.5, default_slowmo=3)
    assert "aspect" not in default and inference_options(default, Path("v"), "v", None).aspect == "letterbox"
    with pytest.raises(ValueError, match="aspect must be one of letterbox, crop, stretch"):
        parse_options(MultiDict({"aspect": "squash"}), default_threshold=0.5, default_slowmo=3)
    assert 'name="aspect"' in client.get("/").get_data(as_text=True)
