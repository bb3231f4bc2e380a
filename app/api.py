"""The web app's JSON API (the pages use it too) and the result files it serves.

``POST /api/jobs`` (multipart: the file in ``video``, options as form fields; or the video as the body,
``?name=match.mp4`` and the options in the address) -> 202 ``{id, url, status_url}``; a resumable upload (the
page's): ``POST /api/uploads`` then ``PUT``, ``GET``, ``DELETE /api/uploads/<id>`` (``app.upload``);
``GET /api/jobs/<id>`` -> the status (``state``: queued | running | done | failed | interrupted, ``percent``,
``eta_s``, and when done ``events`` and ``files``); ``POST /api/jobs/<id>/retry``; ``DELETE /api/jobs/<id>``;
``/api/jobs/<id>/files/<name>`` (Range requests answered 206); ``/classes.css`` (each class's colour);
``/healthz``. Only a finished job's own result files are served, under names made from the upload's.

Live jobs (``app.live``): ``POST /api/live`` (``url``, ``latency``, ``threshold``: form fields or a JSON object) ->
202 ``{id, url, status_url}``, 400 naming the field at fault, 409 when no slot is free for it; ``GET /api/live``
(every live job); ``GET /api/live/<id>?after=N`` -> its status and its events from the N-th on (``next``: the N of
the next poll); ``DELETE /api/live/<id>`` stops a running one (its events are kept), and removes one that ended;
``/api/live/<id>/files/events.csv`` and ``events.jsonl`` (the events so far while it runs).
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, Response, abort, jsonify, request, send_file, url_for
from werkzeug.utils import secure_filename

from app import model_info
from app.access import refuse, wants_json
from app.jobs import EVENTS_FILE, RESULT_FILES, RETRY_STATES, JobRunner
from app.live import ACTIVE_STATES, LIVE_FILES, LiveRequestError, LiveRunner, live_options, shown_url
from app.upload import accept_upload, drop_upload, receive_piece, start_upload, upload_status
from model.folder import ModelFolder
from util.io import DataError, load_json

DOWNLOAD_NAMES = {
    "video": "{stem}_annotated.mp4",
    "predictions": "{stem}_predictions.json",
    "events_csv": "{stem}_events.csv",
    "results_spotting": "{stem}_results_spotting.json",
    "timeline": "{stem}_timeline.png",
    "scores": "{stem}_scores.npz",
}
MIMETYPES = {"video": "video/mp4", "timeline": "image/png", "scores": "application/octet-stream",
             "events_csv": "text/csv"}  # fmt: skip


def send_result_file(runner: JobRunner, job_id: str, name: str):
    """A finished job's result file ``name`` (one of RESULT_FILES; ``?download=1``: as an attachment), else 404."""
    path = runner.result_file(job_id, name) if name in RESULT_FILES else None
    status = runner.status(job_id) if path is not None else None
    if path is None or status is None:
        abort(404)
    stem = secure_filename(Path(status.get("original_name") or "video").stem) or "video"
    download = request.args.get("download") == "1"
    try:
        return send_file(
            path,
            mimetype=MIMETYPES.get(name, "application/json"),
            as_attachment=download,
            download_name=DOWNLOAD_NAMES[name].format(stem=stem),
            conditional=True,
            max_age=0,
        )
    except FileNotFoundError:  # deleted between the check and the send
        abort(404)


def result_view(runner: JobRunner, job_id: str, status: dict) -> dict:
    """What the result page shows: events with their time in the annotated video, counts per class."""
    try:
        doc = load_json(Path(runner.jobs_dir) / job_id / EVENTS_FILE)
    except DataError:
        doc = {}
    events = [e for e in doc.get("events") or [] if isinstance(e, dict) and "label" in e and "frame" in e]
    fps = float(doc.get("fps") or status.get("fps") or 25.0)
    for event in events:
        event["match_s"] = int(event["frame"]) / fps  # the match clock, shown
        event["time_s"] = float(event.get("video_time_s", event["match_s"]))  # the annotated video's, to seek
    counts: dict[str, int] = {}
    for event in events:
        counts[event["label"]] = counts.get(event["label"], 0) + 1
    files = {name: runner.result_file(job_id, name) is not None for name in RESULT_FILES}
    return {
        "events": events,
        "counts": sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])),
        "has_team": any(e.get("team") for e in events),
        "files": files,
        "fps": fps,
        "notes": [n for n in doc.get("notes") or [] if isinstance(n, str)],
        "truth": doc.get("ground_truth_summary")
        if isinstance(doc.get("ground_truth_summary"), dict)
        else None,
    }


def public_status(runner: JobRunner, job_id: str, status: dict) -> dict:
    """A job's status as the API gives it: no server paths; with the events and file URLs once done."""
    public = {k: v for k, v in status.items() if k not in ("upload", "files")}
    public["progress"] = public.get("percent")
    public["status_url"] = url_for("job_status", job_id=job_id)
    public["can_retry"] = runner.can_retry(job_id, status)
    done = status["state"] == "done"
    public["result_url"] = url_for("result", job_id=job_id) if done else None
    if done:
        view = result_view(runner, job_id, status)
        public["events"] = view["events"]
        public["notes"] = view["notes"]
        public["files"] = {
            name: url_for("api_job_file", job_id=job_id, name=name)
            for name, ok in view["files"].items()
            if ok
        }
    return public


def created(job_id: str):
    """The 202 reply to an accepted upload (the API's and the upload page's)."""
    url = url_for("processing", job_id=job_id)
    return jsonify(id=job_id, job_id=job_id, url=url, status_url=url_for("job_status", job_id=job_id)), 202


def register_api(app: Flask, runner: JobRunner) -> None:
    @app.post("/api/jobs")
    def api_create():
        job_id, refusal = accept_upload(app, runner)
        return refusal if refusal is not None else created(job_id)

    @app.post("/api/uploads")
    def api_upload_start():
        return start_upload(app)

    @app.route("/api/uploads/<upload_id>", methods=["GET", "PUT", "DELETE"])
    def api_upload(upload_id: str):
        if request.method == "PUT":
            return receive_piece(app, runner, upload_id)
        if request.method == "DELETE":
            return drop_upload(app, upload_id)
        return upload_status(app, upload_id)

    @app.get("/api/jobs/<job_id>")
    def job_status(job_id: str):
        status = runner.status(job_id)
        if status is None:
            return jsonify(error="no such job"), 404
        return jsonify(public_status(runner, job_id, status))

    @app.post("/api/jobs/<job_id>/retry")
    def job_retry(job_id: str):
        status = runner.retry(job_id)
        if status is None:
            known = runner.status(job_id)
            if known is None:
                return jsonify(error="no such job"), 404
            why = (
                "its upload is no longer there"
                if known["state"] in RETRY_STATES
                else f"it is {known['state']}"
            )
            return jsonify(error=f"this job cannot be run again: {why}"), 409
        return jsonify(public_status(runner, job_id, status)), 202

    @app.delete("/api/jobs/<job_id>")
    def job_delete(job_id: str):
        if not runner.delete(job_id):
            return jsonify(error="no such job"), 404
        return jsonify(deleted=job_id)

    @app.get("/api/jobs/<job_id>/files/<name>")
    def api_job_file(job_id: str, name: str):
        return send_result_file(runner, job_id, name)

    @app.get("/classes.css")
    def class_css():
        return Response(model_info.class_css(ModelFolder(app.config["MODEL_DIR"])), mimetype="text/css")

    @app.get("/healthz")
    def health():
        return jsonify(ok=True, model_ready=model_info.model_ready(ModelFolder(app.config["MODEL_DIR"])))


# ---- live jobs

LIVE_STOP_WAIT_S = 10.0  # a DELETE of a running live job waits this long for its end, then answers "stopping"


def public_live(live: LiveRunner, job_id: str, status: dict, after: int = 0) -> dict:
    """A live job's status as the API gives it, with its events from the ``after``-th on (read after the status:
    once it says the job ended, every event is there)."""
    events, total = live.events(job_id, after)
    public = {k: v for k, v in status.items() if k not in ("source", "summary")}
    public["source"] = shown_url(str(status.get("source") or ""))
    summary = status.get("summary")
    public["summary"] = {**summary, "source": public["source"]} if isinstance(summary, dict) else None
    public.update(
        stage=live.stage(job_id, status),
        events=events,
        num_events=total,
        next=total,
        url=url_for("live_page", job_id=job_id),
        status_url=url_for("api_live_job", job_id=job_id),
        files={
            name: url_for("api_live_file", job_id=job_id, name=name)
            for name in LIVE_FILES
            if live.file(job_id, name) is not None
        },
    )
    return public


def start_live(app: Flask, live: LiveRunner) -> tuple[str | None, Response | None]:
    """Start a live job from the request's fields (a form or a JSON object): (its id, None), or (None, the
    refusal: 503 without a model, 400 naming the field at fault, 409 when no slot is free)."""
    folder = ModelFolder(app.config["MODEL_DIR"])
    if not model_info.model_ready(folder):
        return None, refuse(
            503, f"No model in {app.config['MODEL_DIR']}: run `make demo` or start with --model_dir."
        )
    fields = request.get_json(silent=True) if request.is_json else request.form
    try:
        options = live_options(fields if isinstance(fields, dict) else request.form, folder)
    except LiveRequestError as e:
        if wants_json():
            return None, (jsonify(error=str(e), field=e.field), 400)
        return None, refuse(400, str(e))
    job_id, why = live.start(options)
    if job_id is None:
        return None, refuse(409, f"Not started: {why}.")
    return job_id, None


def live_created(job_id: str):
    """The 202 reply to a live job started."""
    return jsonify(id=job_id, url=url_for("live_page", job_id=job_id),
                   status_url=url_for("api_live_job", job_id=job_id)), 202  # fmt: skip


def register_live_api(app: Flask, live: LiveRunner) -> None:
    @app.route("/api/live", methods=["GET", "POST"])
    def api_live():
        if request.method == "GET":
            return jsonify(jobs=[public_live(live, s["id"], s, after=10**9) for s in live.all()])
        job_id, refusal = start_live(app, live)
        return refusal if refusal is not None else live_created(job_id)

    @app.route("/api/live/<job_id>", methods=["GET", "DELETE"])
    def api_live_job(job_id: str):
        status = live.status(job_id)
        if status is None:
            return jsonify(error="no such live job"), 404
        if request.method == "DELETE":
            return _delete_live(live, job_id, status)
        after = request.args.get("after", "0")
        if not after.isdigit():
            return jsonify(error=f"after: {after!r} is not a count of events (0, 1, ...)", field="after"), 400
        return jsonify(public_live(live, job_id, status, int(after)))

    @app.get("/api/live/<job_id>/files/<name>")
    def api_live_file(job_id: str, name: str):
        path = live.file(job_id, name)
        if path is None:
            abort(404)
        data = path.read_bytes()
        data = data[: data.rfind(b"\n") + 1]  # complete lines only: the job may be writing the last one
        response = Response(data, mimetype=LIVE_FILES[name])
        if request.args.get("download") == "1":
            response.headers["Content-Disposition"] = f'attachment; filename="live-{job_id[:8]}-{name}"'
        response.headers["Cache-Control"] = "no-store"
        return response


def _delete_live(live: LiveRunner, job_id: str, status: dict):
    """A running live job stops (200 once it has, 202 while it still finishes); one that ended is removed."""
    if status.get("state") in ACTIVE_STATES:
        status = live.stop(job_id, LIVE_STOP_WAIT_S) or live.status(job_id) or status
        code = 202 if status.get("state") in ACTIVE_STATES else 200
        return jsonify(public_live(live, job_id, status)), code
    if not live.remove(job_id):
        return jsonify(error="it is still stopping; send the DELETE again in a moment"), 409
    return jsonify(deleted=job_id)
