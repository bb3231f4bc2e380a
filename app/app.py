"""The web app: upload a match video, follow its processing, watch the actions found.

``python app/app.py [--model_dir M] [--host 127.0.0.1] [--port 5000]`` (or ``cd app && python app.py``). The model
directory comes from ``--model_dir``, else ``SPOT_MODEL_DIR``, else the model ``make demo`` trains (demo/model).

Routes: ``/`` upload page; ``POST /upload`` (a plain form post); ``/jobs/<id>`` processing page; ``/jobs/<id>/result``
result page; ``/jobs/<id>/files/<name>`` result files (Range requests answered 206). Anything that is not a job's own
result file is a 404. The JSON API, which the pages use too: ``POST /api/jobs`` (multipart: the file in ``video``,
options as form fields) -> 202 ``{id, url, status_url}``; ``GET /api/jobs/<id>`` -> the status (``state``: queued |
running | done | failed | interrupted, ``percent``, ``eta_s``, and when done ``events`` and ``files``); ``POST
/api/jobs/<id>/retry``; ``DELETE /api/jobs/<id>``; ``/api/jobs/<id>/files/<name>``.

With a token (``--token`` / ``SPOT_APP_TOKEN``) every route but ``/healthz`` and the static assets needs it: a
visit with ``?token=...`` sets a cookie, scripts send ``Authorization: Bearer ...``. Requests that change something
(uploads, retries, deletes) from a browser must come from the app's own pages (same origin).

``main`` serves with waitress (Flask's own server only with ``--debug``) and stops cleanly on SIGINT / SIGTERM:
the running job is interrupted, queued ones stay queued for the next start.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: the folder holding this file would shadow the `app` package; import from the repo root.
    _HERE = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
    sys.path.insert(0, str(_HERE.parent))

if __name__ == "__main__":  # before torch is imported: re-execute with tcmalloc when it is installed
    from util.allocator import use_fast_allocator

    use_fast_allocator()

import argparse  # noqa: E402
import hmac  # noqa: E402
import ipaddress  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import urlencode, urlsplit  # noqa: E402

from flask import (  # noqa: E402
    Flask,
    Response,
    abort,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge  # noqa: E402
from werkzeug.utils import secure_filename  # noqa: E402

from app.jobs import EVENTS_FILE, LABELS_UPLOAD, RESULT_FILES, RETRY_STATES, JobRunner  # noqa: E402
from util.io import DataError, load_json  # noqa: E402

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = ROOT / "demo" / "model"
DEFAULT_JOBS_DIR = ROOT / "app" / "jobs"
ALLOWED_EXTENSIONS = (".mp4", ".mkv", ".avi", ".mov")
DEFAULTS: dict[str, Any] = {
    "MODEL_DIR": None,  # None: SPOT_MODEL_DIR, else demo/model
    "JOBS_DIR": None,  # None: SPOT_JOBS_DIR, else app/jobs
    "MAX_CONTENT_LENGTH": 4 * 1024**3,
    "WORKERS": 1,  # jobs processed at once; the others queue
    "MAX_JOBS": 50,  # finished jobs kept (oldest removed first)
    "MAX_JOB_AGE_S": 7 * 24 * 3600,
    "DEFAULT_THRESHOLD": None,  # None: the display threshold the model recorded (selection.json), else 0.3
    "DEFAULT_SLOWMO": 3,  # as inference_spot.py's default; 1 = off
    "INFERENCE_KWARGS": {},  # extra keyword arguments for run_inference (device, batch_size, ...)
    "TOKEN": None,  # None: SPOT_APP_TOKEN, else no access control (fine on 127.0.0.1)
}
TOKEN_COOKIE = "spot_token"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
OPEN_PATHS = ("/healthz", "/static/")  # no data behind them: reachable without the token
STOP_TIMEOUT_S = 4.0
SLOWMO_CHOICES = (1, 2, 3, 4)
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


def human_size(num_bytes: float) -> str:
    """1536 -> '1.5 KiB'; the sizes the pages show."""
    units = ("bytes", "KiB", "MiB", "GiB", "TiB")
    power = 0 if num_bytes < 1024 else min(len(units) - 1, int(math.log(num_bytes, 1024)))
    value = num_bytes / 1024**power
    return f"{int(num_bytes)} bytes" if power == 0 else f"{value:.1f} {units[power]}".replace(".0 ", " ")


def model_ready(model_dir: Path) -> bool:
    return (model_dir / "config.json").is_file() and any(model_dir.glob("checkpoint_*.pt"))


def default_threshold(app: Flask) -> float:
    """The threshold the upload form starts at: the app's setting, else the model's display threshold."""
    if app.config["DEFAULT_THRESHOLD"] is not None:
        return float(app.config["DEFAULT_THRESHOLD"])
    from model.usage import load_selection
    from util.postprocess import DEFAULT_DISPLAY_THRESHOLD

    try:
        return float(load_selection(app.config["MODEL_DIR"])["display_threshold"])
    except DataError:
        return DEFAULT_DISPLAY_THRESHOLD


def model_thresholds(app: Flask) -> dict:
    """The per-class display thresholds the model recorded on val (selection.json) and their target precision:
    ``{"classes": {class: threshold}, "target_precision": p}`` ({} classes when it recorded none, or the app's
    DEFAULT_THRESHOLD setting replaces them)."""
    from model.usage import load_selection

    if app.config["DEFAULT_THRESHOLD"] is not None:
        return {"classes": {}, "target_precision": None}
    try:
        usage = load_selection(app.config["MODEL_DIR"])
    except DataError:
        return {"classes": {}, "target_precision": None}
    return {"classes": dict(usage["class_thresholds"]), "target_precision": usage["target_precision"]}


def model_outputs(model_dir: Path) -> dict:
    """What the model spots, for the form's reel choices: ``{"classes": [...], "team": bool}`` from its
    config.json (no classes when it cannot be read: the form then offers no choice)."""
    try:
        config = load_json(model_dir / "config.json")
        classes = [c for c in config.get("classes") or [] if isinstance(c, str)]
        return {"classes": classes, "team": bool(config.get("team"))}
    except (DataError, AttributeError):
        return {"classes": [], "team": False}


def model_card(model_dir: Path) -> dict | None:
    """Which model the app runs, for the upload page: ``{name, architecture, trained_on, licence, source, epoch}``
    (None when config.json cannot be read). A published model says its project and what it was trained on
    (import_checkpoint.py records it); a model trained here, its dataset and the epoch chosen on val."""
    from model.usage import load_selection

    try:
        config = load_json(model_dir / "config.json")
        if not isinstance(config, dict):
            return None
        epoch = load_selection(model_dir).get("epoch")
    except DataError:
        return None
    architecture = f"{config.get('feature_arch')} + {config.get('temporal_arch')}"
    classes = config.get("classes") or []
    geometry = (
        f"{config.get('frame_width')}x{config.get('frame_height')} at {float(config.get('fps') or 0):g} fps"
    )
    source = config.get("source") if isinstance(config.get("source"), dict) else None
    if source:
        return {
            "name": source.get("project", "a published model"),
            "architecture": architecture,
            "trained_on": source.get("trained_on") or geometry,
            "licence": source.get("licence"),
            "source": source.get("weights_file"),
            "epoch": epoch,
        }
    dataset = Path(str(config.get("dataset") or "")).name or "its labels"
    return {
        "name": f"trained with this toolkit ({model_dir.name})",
        "architecture": architecture,
        "trained_on": f"{dataset} ({len(classes)} classes), {geometry}",
        "licence": None,
        "source": None,
        "epoch": epoch,
    }


def create_app(config: dict | None = None) -> Flask:
    """The Flask app; ``config`` overrides DEFAULTS (and any Flask setting). Starts the job runner."""
    app = Flask(__name__)
    app.config.update(DEFAULTS)
    app.config.update(config or {})
    app.config["MODEL_DIR"] = Path(
        app.config["MODEL_DIR"] or os.environ.get("SPOT_MODEL_DIR") or DEFAULT_MODEL_DIR
    )
    app.config["JOBS_DIR"] = Path(
        app.config["JOBS_DIR"] or os.environ.get("SPOT_JOBS_DIR") or DEFAULT_JOBS_DIR
    )
    app.config["TOKEN"] = app.config["TOKEN"] or os.environ.get("SPOT_APP_TOKEN") or None
    runner = JobRunner(
        app.config["JOBS_DIR"],
        app.config["MODEL_DIR"],
        workers=int(app.config["WORKERS"]),
        max_jobs=int(app.config["MAX_JOBS"]),
        max_age_s=float(app.config["MAX_JOB_AGE_S"]),
        inference_kwargs=app.config["INFERENCE_KWARGS"],
    )
    app.extensions["spot_jobs"] = runner
    app.jinja_env.globals.update(human_size=human_size, max_upload=app.config["MAX_CONTENT_LENGTH"])
    _register_pages(app, runner)
    _register_api(app, runner)
    _register_errors(app)
    app.before_request(_check_access)
    app.after_request(_security_headers)
    return app


def _given_token() -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.args.get("token") or request.cookies.get(TOKEN_COOKIE)


def _same_origin() -> bool:
    """A browser's request from the app's own pages (or not from a browser at all: no Origin, no Referer)."""
    source = request.headers.get("Origin") or request.headers.get("Referer")
    if not source or source == "null":
        return source is None
    parts = urlsplit(source)
    return f"{parts.scheme}://{parts.netloc}" == request.host_url.rstrip("/")


def _check_access():
    """Before every request: the token when one is set, and same-origin for requests that change something."""
    if request.path.startswith(OPEN_PATHS):
        return None
    from flask import current_app

    token = current_app.config["TOKEN"]
    if token:
        given = _given_token()
        if not given or not hmac.compare_digest(given.encode(), token.encode()):
            return _refuse(
                401, "This server needs its access token: open the link you were given (…?token=…)."
            )
        if request.args.get("token") and request.method == "GET":
            # Set the cookie and drop the token from the address bar (and from the history): the same path,
            # relative, with the other arguments as they came.
            rest = urlencode([(k, v) for k, v in request.args.items(multi=True) if k != "token"])
            response = redirect(request.path + (f"?{rest}" if rest else ""), code=303)
            # Lax, not Strict: a shared link opened from a mail or a chat must arrive with the cookie.
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Lax", secure=request.is_secure)
            return response
    elif (
        current_app.config.get("LOOPBACK_ONLY")
        and request.host.rsplit(":", 1)[0].strip("[]") not in LOOPBACK_NAMES
    ):
        # No token on a loopback address: a page elsewhere whose name points here (DNS rebinding) is refused.
        return _refuse(403, "This server answers to localhost only (start it with --token to share it).")
    if request.method in ("POST", "PUT", "PATCH", "DELETE") and not _same_origin():
        return _refuse(403, "Uploads and changes are accepted from this app's own pages only.")
    return None


def _wants_json() -> bool:
    return (
        request.path.startswith("/api/")
        or request.accept_mimetypes.best == "application/json"
        or request.headers.get("X-Requested-With") == "XHR"
    )


def _refuse(status: int, message: str):
    if _wants_json():
        return jsonify(error=message), status
    return render_template("error.html", code=status, message=message), status


ANNOTATED_CHOICES = ("auto", "full", "highlights", "none")


def _parse_options(
    form, default_threshold: float, default_slowmo: int, per_class: bool = False, outputs: dict | None = None
) -> dict:
    """Threshold, slow-motion factor and annotated-video kind from the upload form; bad values raise ValueError.

    ``thresholds=model`` (the form's checkbox), or no ``threshold`` when the model recorded per-class thresholds
    (``per_class``), keeps the model's per-class thresholds (no "threshold" in the options); a ``threshold``
    applies to every class. ``highlight_classes`` (repeated, or comma-separated) and ``highlight_team`` cut the
    highlight reel around those actions only: they must be among the model's ``outputs`` (``model_outputs``),
    and they make "auto" a highlight reel."""
    wanted = form.get("thresholds")
    if wanted not in (None, "", "model", "one"):
        raise ValueError("thresholds must be 'model' or 'one'")
    options: dict = {}
    if per_class and (wanted == "model" or (not form.get("threshold") and wanted != "one")):
        options["thresholds"] = "model"
    else:
        threshold = float(form.get("threshold") or default_threshold)
        if not (0.0 < threshold < 1.0) or math.isnan(threshold):
            raise ValueError("the detection threshold must be between 0 and 1")
        options["threshold"] = threshold
    slowmo = int(form.get("slowmo") or default_slowmo)
    if slowmo not in SLOWMO_CHOICES:
        raise ValueError(f"slow motion must be one of {', '.join(map(str, SLOWMO_CHOICES))}")
    annotated = form.get("annotated") or "auto"
    if annotated not in ANNOTATED_CHOICES:
        raise ValueError(f"annotated must be one of {', '.join(ANNOTATED_CHOICES)}")
    options.update(_reel_choice(form, outputs or {"classes": [], "team": False}))
    if "highlight_classes" in options or "highlight_team" in options:
        if annotated == "auto":
            annotated = "highlights"
        elif annotated != "highlights":
            raise ValueError("a reel of chosen actions or of one team must be annotated=highlights")
    return {**options, "slowmo_factor": slowmo, "annotated": annotated}


def _reel_choice(form, outputs: dict) -> dict:
    """The form's highlight-reel selection: ``{"highlight_classes": [...], "highlight_team": "left"}``, each
    only when chosen; a class the model does not spot, or a team without a team head, raises ValueError."""
    chosen = {}
    names = [n.strip() for value in form.getlist("highlight_classes") for n in value.split(",") if n.strip()]
    if names:
        unknown = sorted(set(names) - set(outputs["classes"]))
        if unknown:
            raise ValueError(
                f"highlight_classes must be among the model's classes ({', '.join(outputs['classes'])}): "
                f"{', '.join(unknown)} is not"
            )
        chosen["highlight_classes"] = [c for c in outputs["classes"] if c in names]  # the model's order
    team = form.get("highlight_team") or ""
    if team not in ("", "either"):
        if team not in ("left", "right"):
            raise ValueError("highlight_team must be 'left' or 'right' (or empty: either)")
        if not outputs["team"]:
            raise ValueError("highlight_team must be empty: this model does not tell the teams apart")
        chosen["highlight_team"] = team
    return chosen


def _register_pages(app: Flask, runner: JobRunner) -> None:
    @app.get("/")
    def index():
        model_dir = app.config["MODEL_DIR"]
        return render_template(
            "index.html",
            model_ready=model_ready(model_dir),
            model_dir=model_dir,
            extensions=ALLOWED_EXTENSIONS,
            default_threshold=default_threshold(app),
            class_thresholds=model_thresholds(app),
            outputs=model_outputs(model_dir),
            model=model_card(model_dir) if model_ready(model_dir) else None,
            slowmo_choices=SLOWMO_CHOICES,
            default_slowmo=app.config["DEFAULT_SLOWMO"],
        )

    @app.post("/upload")
    def upload():
        job_id, refusal = _accept_upload(app, runner)
        if refusal is not None:
            return refusal
        url = url_for("processing", job_id=job_id)
        if _wants_json():
            return _created(job_id)
        return redirect(url, code=303)

    @app.get("/jobs/<job_id>")
    def processing(job_id: str):
        status = runner.status(job_id) or abort(404)
        if status["state"] == "done":
            return redirect(url_for("result", job_id=job_id))
        return render_template("processing.html", job=status, can_retry=runner.can_retry(job_id, status))

    @app.get("/jobs/<job_id>/result")
    def result(job_id: str):
        status = runner.status(job_id) or abort(404)
        if status["state"] != "done":
            return redirect(url_for("processing", job_id=job_id))
        return render_template("result.html", job=status, **_result_view(runner, job_id, status))

    @app.get("/jobs/<job_id>/files/<name>")
    def job_file(job_id: str, name: str):
        return _send_result_file(runner, job_id, name)


def _send_result_file(runner: JobRunner, job_id: str, name: str):
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


def _accept_upload(app: Flask, runner: JobRunner) -> tuple[str | None, Any]:
    """Check an upload (``video`` field + options) and queue it: (job id, None) or (None, the refusal)."""
    if not model_ready(app.config["MODEL_DIR"]):
        return None, _refuse(
            503, f"No model in {app.config['MODEL_DIR']}: run `make demo` or start with --model_dir."
        )
    file = request.files.get("video")
    if file is None or not file.filename:
        return None, _refuse(400, "Choose a video file to upload (form field 'video').")
    name = Path(file.filename).name
    ext = Path(name).suffix.lower()
    if ext not in ALLOWED_EXTENSIONS:
        allowed = " ".join(ALLOWED_EXTENSIONS)
        return None, _refuse(400, f"{name!r} is not a supported video: use one of {allowed}.")
    try:
        per_class = bool(model_thresholds(app)["classes"])
        options = _parse_options(
            request.form,
            default_threshold(app),
            app.config["DEFAULT_SLOWMO"],
            per_class,
            model_outputs(app.config["MODEL_DIR"]),
        )
    except ValueError as e:
        return None, _refuse(400, str(e) if "must" in str(e) else "The options are not valid numbers.")
    labels, refusal = _uploaded_labels(request.files.get("labels"))
    if refusal is not None:
        return None, refusal
    if labels is not None:
        options["labels"] = True

    def save(path: Path) -> None:
        file.save(path)
        if labels is not None:
            (path.parent / LABELS_UPLOAD).write_bytes(labels)

    return runner.create(save, ext, name, options), None


MAX_LABELS_BYTES = 20 << 20  # a Labels-ball.json of a whole game is well under 1 MB


def _uploaded_labels(file) -> tuple[bytes | None, Any]:
    """The optional ``labels`` field (the video's Labels-ball.json): its bytes once checked, or a refusal."""
    import tempfile

    from util.soccernet import load_labels

    if file is None or not file.filename:
        return None, None
    data = file.read(MAX_LABELS_BYTES + 1)
    name = Path(file.filename).name
    if len(data) > MAX_LABELS_BYTES:
        return None, _refuse(
            400, f"{name!r} is over {human_size(MAX_LABELS_BYTES)}: is it a Labels-ball.json?"
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / LABELS_UPLOAD
        path.write_bytes(data)
        try:
            load_labels(path)
        except DataError as e:
            reason = str(e).replace(str(path), name)
            return None, _refuse(400, f"The labels file is not a SoccerNet Labels-ball.json: {reason}")
    return data, None


def _result_view(runner: JobRunner, job_id: str, status: dict) -> dict:
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
        "truth": doc.get("ground_truth_summary")
        if isinstance(doc.get("ground_truth_summary"), dict)
        else None,
    }


def _public_status(runner: JobRunner, job_id: str, status: dict) -> dict:
    """A job's status as the API gives it: no server paths; with the events and file URLs once done."""
    public = {k: v for k, v in status.items() if k not in ("upload", "files")}
    public["progress"] = public.get("percent")
    public["status_url"] = url_for("job_status", job_id=job_id)
    public["can_retry"] = runner.can_retry(job_id, status)
    done = status["state"] == "done"
    public["result_url"] = url_for("result", job_id=job_id) if done else None
    if done:
        view = _result_view(runner, job_id, status)
        public["events"] = view["events"]
        public["files"] = {
            name: url_for("api_job_file", job_id=job_id, name=name)
            for name, ok in view["files"].items()
            if ok
        }
    return public


def _created(job_id: str):
    """The 202 reply to an accepted upload (the API's and the upload page's)."""
    url = url_for("processing", job_id=job_id)
    return jsonify(id=job_id, job_id=job_id, url=url, status_url=url_for("job_status", job_id=job_id)), 202


def _register_api(app: Flask, runner: JobRunner) -> None:
    @app.post("/api/jobs")
    def api_create():
        job_id, refusal = _accept_upload(app, runner)
        return refusal if refusal is not None else _created(job_id)

    @app.get("/api/jobs/<job_id>")
    def job_status(job_id: str):
        status = runner.status(job_id)
        if status is None:
            return jsonify(error="no such job"), 404
        return jsonify(_public_status(runner, job_id, status))

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
        return jsonify(_public_status(runner, job_id, status)), 202

    @app.delete("/api/jobs/<job_id>")
    def job_delete(job_id: str):
        if not runner.delete(job_id):
            return jsonify(error="no such job"), 404
        return jsonify(deleted=job_id)

    @app.get("/api/jobs/<job_id>/files/<name>")
    def api_job_file(job_id: str, name: str):
        return _send_result_file(runner, job_id, name)

    @app.get("/classes.css")
    def class_css():
        return Response(_class_css(app.config["MODEL_DIR"]), mimetype="text/css")

    @app.get("/healthz")
    def health():
        return jsonify(ok=True, model_ready=model_ready(app.config["MODEL_DIR"]))


def _class_css(model_dir: Path) -> str:
    """One CSS rule per class giving ``--c``, the class's colour in the annotated video and timeline plot."""
    from util.soccernet import CLASSES
    from util.visualize import class_colors

    classes = list(CLASSES)
    try:
        model_classes = load_json(model_dir / "config.json").get("classes") or []
        classes += [c for c in model_classes if isinstance(c, str) and c not in classes]
    except (DataError, AttributeError):
        pass
    rules = []
    for name, (r, g, b) in class_colors(classes).items():
        selector = name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
        rules.append(f'[data-label="{selector}"] {{ --c: rgb({r}, {g}, {b}); }}')
    return "\n".join(rules) + "\n"


def _register_errors(app: Flask) -> None:
    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_e):
        limit = human_size(app.config["MAX_CONTENT_LENGTH"] or 0)
        return _refuse(413, f"The file is larger than the upload limit of {limit}.")

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        if e.code == 404:
            return _refuse(404, "Nothing here: the page or job does not exist (old jobs are removed).")
        if e.code is not None and e.code >= 400:
            return _refuse(e.code, e.description or e.name)
        return e


def _security_headers(response):
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; script-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    )
    return response


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def get_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python app/app.py", description="Web app: upload a match video, watch the actions."
    )
    p.add_argument(
        "--model_dir",
        type=Path,
        default=None,
        help="trained model folder (default: $SPOT_MODEL_DIR, else demo/model)",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for all)"
    )
    p.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    p.add_argument(
        "--jobs_dir",
        type=Path,
        default=None,
        help="where jobs are kept (default: $SPOT_JOBS_DIR, else app/jobs)",
    )
    p.add_argument(
        "--max_upload_gb", type=_positive, default=4.0, help="largest upload accepted, in GiB (default 4)"
    )
    p.add_argument(
        "--workers", type=_at_least_1, default=1, help="videos processed at once; others queue (default 1)"
    )
    p.add_argument(
        "--max_jobs",
        type=_at_least_1,
        default=50,
        help="finished jobs kept; the oldest are removed, never one finished in the last hour (default 50)",
    )
    p.add_argument(
        "--max_job_age_h",
        type=_positive,
        default=168,
        help="finished jobs older than this are removed (hours)",
    )
    p.add_argument("--device", default=None, help="torch device for inference (default: cuda when available)")
    p.add_argument(
        "--token",
        default=None,
        help="access token every page, file and API call needs (default: $SPOT_APP_TOKEN; none on 127.0.0.1 is "
        "fine); share http://HOST:PORT/?token=TOKEN, scripts send 'Authorization: Bearer TOKEN'",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow a non-loopback --host without a token (anyone on the network sees every upload)",
    )
    p.add_argument("--threads", type=_at_least_1, default=8, help="request threads of the server (default 8)")
    p.add_argument(
        "--trusted_proxy",
        metavar="ADDRESS",
        help="a reverse proxy (e.g. 127.0.0.1) whose X-Forwarded-Proto/-Host/-For headers are believed, so that "
        "HTTPS, the public host name and the same-origin check work behind it",
    )
    p.add_argument(
        "--debug",
        action="store_true",
        help="Flask's development server in debug mode (never on a public address)",
    )
    args = p.parse_args(argv)
    args.token = args.token or os.environ.get("SPOT_APP_TOKEN") or None
    if not args.token and not args.insecure and not _is_loopback(args.host):
        p.error(
            f"--host {args.host} exposes every upload and result to the network: give --token (or SPOT_APP_TOKEN), "
            "or --insecure if that is what you want"
        )
    return args


def _at_least_1(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(app: Flask, host: str, port: int, threads: int, trusted_proxy: str | None = None) -> None:
    """Serve with waitress until SIGINT / SIGTERM, then stop the jobs (running: interrupted; queued: kept)."""
    from waitress import create_server

    runner: JobRunner = app.extensions["spot_jobs"]
    proxy = {}
    if trusted_proxy:
        headers = "x-forwarded-proto x-forwarded-host x-forwarded-for"
        proxy = {"trusted_proxy": trusted_proxy, "trusted_proxy_headers": headers}
    try:
        server = create_server(app, host=host, port=port, threads=threads, ident="spot", **proxy)
    except OSError:
        runner.stop(0)  # the jobs recovered at start-up must not run without a server
        raise

    def on_signal(signum, _frame):
        log.info("%s: stopping (queued jobs are kept for the next start)", signal.Signals(signum).name)
        runner.stop(STOP_TIMEOUT_S)  # first the jobs (fast: their processes are killed), then the requests
        raise SystemExit(0)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    started = time.monotonic()
    try:
        server.run()
    except SystemExit:
        pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        stopping = time.monotonic()
        clean = runner.stop(STOP_TIMEOUT_S)
        server.close()
        log.info("stopped in %.1f s after %.0f s of serving", time.monotonic() - stopping, stopping - started)
        if not clean:  # a worker stuck in a long call: its job is marked interrupted, do not wait for it
            logging.shutdown()
            os._exit(0)


def main(args: argparse.Namespace) -> int:
    from util.cli import setup_logging

    setup_logging()
    config = {
        "MODEL_DIR": args.model_dir,
        "JOBS_DIR": args.jobs_dir,
        "MAX_CONTENT_LENGTH": int(args.max_upload_gb * 1024**3),
        "WORKERS": args.workers,
        "MAX_JOBS": args.max_jobs,
        "MAX_JOB_AGE_S": args.max_job_age_h * 3600,
        "INFERENCE_KWARGS": {"device": args.device} if args.device else {},
        "TOKEN": args.token,
        "LOOPBACK_ONLY": not args.token and not args.insecure,
    }
    try:
        app = create_app(config)
    except DataError as e:
        log.error("%s", e)
        return 2
    model_dir = app.config["MODEL_DIR"]
    if not model_ready(model_dir):
        log.warning("no trained model in %s: run `make demo`, or pass --model_dir", model_dir)
    if args.debug and args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("debug mode on %s: anyone who can reach it can run code on this machine", args.host)
    access = " (token required)" if args.token else ""
    log.info("serving on http://%s:%d%s (model: %s)", args.host, args.port, access, model_dir)
    if args.debug:
        app.run(host=args.host, port=args.port, debug=True, threaded=True, use_reloader=False)
        app.extensions["spot_jobs"].stop(STOP_TIMEOUT_S)
    else:
        try:
            serve(app, args.host, args.port, args.threads, args.trusted_proxy)
        except OSError as e:
            log.error("cannot serve on %s:%d: %s", args.host, args.port, e)
            return 2
    return 0


if __name__ == "__main__":
    from util.cli import run_main

    sys.exit(run_main(main, get_args()))
