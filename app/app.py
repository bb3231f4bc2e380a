"""The web app: upload a match video, follow its processing, watch the actions found.

``python app/app.py [--model_dir M] [--host 127.0.0.1] [--port 5000]`` (or ``cd app && python app.py``). The model
directory comes from ``--model_dir``, else ``SPOT_MODEL_DIR``, else the model ``make demo`` trains (demo/model).

Routes: ``/`` upload page; ``POST /upload``; ``/jobs/<id>`` processing page; ``/jobs/<id>/result`` result page;
``/api/jobs/<id>`` status JSON (polled by the processing page); ``/jobs/<id>/files/<name>`` result files (Range
requests answered 206). Anything that is not a job's own result file is a 404.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: the folder holding this file would shadow the `app` package; import from the repo root.
    _HERE = Path(__file__).resolve().parent
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
    sys.path.insert(0, str(_HERE.parent))

import argparse  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
from typing import Any  # noqa: E402

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

from app.jobs import EVENTS_FILE, RESULT_FILES, JobRunner  # noqa: E402
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
}
SLOWMO_CHOICES = (1, 2, 3, 4)
DOWNLOAD_NAMES = {
    "video": "{stem}_annotated.mp4",
    "predictions": "{stem}_predictions.json",
    "results_spotting": "{stem}_results_spotting.json",
    "timeline": "{stem}_timeline.png",
    "scores": "{stem}_scores.npz",
}
MIMETYPES = {"video": "video/mp4", "timeline": "image/png", "scores": "application/octet-stream"}


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
    from util.eval import DEFAULT_DISPLAY_THRESHOLD

    try:
        return float(load_selection(app.config["MODEL_DIR"])["display_threshold"])
    except DataError:
        return DEFAULT_DISPLAY_THRESHOLD


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
    app.after_request(_security_headers)
    return app


def _wants_json() -> bool:
    return (
        request.accept_mimetypes.best == "application/json"
        or request.headers.get("X-Requested-With") == "XHR"
    )


def _refuse(status: int, message: str):
    if _wants_json():
        return jsonify(error=message), status
    return render_template("error.html", code=status, message=message), status


def _parse_options(form, default_threshold: float, default_slowmo: int) -> dict:
    """Threshold and slow-motion factor from the upload form; out-of-range values raise ValueError."""
    threshold = float(form.get("threshold") or default_threshold)
    if not (0.0 < threshold < 1.0) or math.isnan(threshold):
        raise ValueError("the detection threshold must be between 0 and 1")
    slowmo = int(form.get("slowmo") or default_slowmo)
    if slowmo not in SLOWMO_CHOICES:
        raise ValueError(f"slow motion must be one of {', '.join(map(str, SLOWMO_CHOICES))}")
    return {"threshold": threshold, "slowmo_factor": slowmo}


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
            slowmo_choices=SLOWMO_CHOICES,
            default_slowmo=app.config["DEFAULT_SLOWMO"],
        )

    @app.post("/upload")
    def upload():
        if not model_ready(app.config["MODEL_DIR"]):
            return _refuse(
                503, f"No model in {app.config['MODEL_DIR']}: run `make demo` or start with --model_dir."
            )
        file = request.files.get("video")
        if file is None or not file.filename:
            return _refuse(400, "Choose a video file to upload.")
        name = Path(file.filename).name
        ext = Path(name).suffix.lower()
        if ext not in ALLOWED_EXTENSIONS:
            allowed = " ".join(ALLOWED_EXTENSIONS)
            return _refuse(400, f"{name!r} is not a supported video: use one of {allowed}.")
        try:
            options = _parse_options(request.form, default_threshold(app), app.config["DEFAULT_SLOWMO"])
        except ValueError as e:
            return _refuse(400, str(e) if "must" in str(e) else "The options are not valid numbers.")
        job_id = runner.create(file.save, ext, name, options)
        url = url_for("processing", job_id=job_id)
        if _wants_json():
            return jsonify(job_id=job_id, url=url), 202
        return redirect(url, code=303)

    @app.get("/jobs/<job_id>")
    def processing(job_id: str):
        status = runner.status(job_id) or abort(404)
        if status["state"] == "done":
            return redirect(url_for("result", job_id=job_id))
        return render_template("processing.html", job=status)

    @app.get("/jobs/<job_id>/result")
    def result(job_id: str):
        status = runner.status(job_id) or abort(404)
        if status["state"] != "done":
            return redirect(url_for("processing", job_id=job_id))
        return render_template("result.html", job=status, **_result_view(runner, job_id, status))

    @app.get("/jobs/<job_id>/files/<name>")
    def job_file(job_id: str, name: str):
        path = runner.result_file(job_id, name) if name in RESULT_FILES else None
        if path is None:
            abort(404)
        stem = secure_filename(Path(runner.status(job_id).get("original_name") or "video").stem) or "video"
        download = request.args.get("download") == "1"
        return send_file(
            path,
            mimetype=MIMETYPES.get(name, "application/json"),
            as_attachment=download,
            download_name=DOWNLOAD_NAMES[name].format(stem=stem),
            conditional=True,
            max_age=0,
        )


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
    }


def _register_api(app: Flask, runner: JobRunner) -> None:
    @app.get("/api/jobs/<job_id>")
    def job_status(job_id: str):
        status = runner.status(job_id)
        if status is None:
            return jsonify(error="no such job"), 404
        public = {k: v for k, v in status.items() if k not in ("upload", "files")}
        public["result_url"] = url_for("result", job_id=job_id) if status["state"] == "done" else None
        return jsonify(public)

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
        "--workers", type=int, default=1, help="videos processed at once; others queue (default 1)"
    )
    p.add_argument(
        "--max_jobs", type=int, default=50, help="finished jobs kept; the oldest are removed (default 50)"
    )
    p.add_argument(
        "--max_job_age_h",
        type=_positive,
        default=168,
        help="finished jobs older than this are removed (hours)",
    )
    p.add_argument("--device", default=None, help="torch device for inference (default: cuda when available)")
    p.add_argument("--debug", action="store_true", help="Flask debug mode (never on a public address)")
    return p.parse_args(argv)


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
    }
    app = create_app(config)
    model_dir = app.config["MODEL_DIR"]
    if not model_ready(model_dir):
        log.warning("no trained model in %s: run `make demo`, or pass --model_dir", model_dir)
    if args.debug and args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("debug mode on %s: anyone who can reach it can run code on this machine", args.host)
    log.info("serving on http://%s:%d (model: %s)", args.host, args.port, model_dir)
    app.run(host=args.host, port=args.port, debug=args.debug, threaded=True, use_reloader=False)
    return 0


if __name__ == "__main__":
    from util.cli import run_main

    sys.exit(run_main(main, get_args()))
