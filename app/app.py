"""The web app: upload a match video, follow its processing, watch the actions found.

``python app/app.py [--model_dir M] [--host 127.0.0.1] [--port 5000]`` (or ``cd app && python app.py``). The model
directory comes from ``--model_dir``, else ``SPOT_MODEL_DIR``, else the model ``make demo`` trains (demo/model).

Routes: ``/`` upload page; ``POST /upload`` (a plain form post); ``/jobs/<id>`` processing page; ``/jobs/<id>/result``
result page; ``/live`` the Live page (a stream URL watched as it plays; ``/live/<id>`` one live job, ``app.live``);
``/jobs/<id>/files/<name>`` result files (Range requests answered 206). Anything that is not a job's own
result file is a 404. The JSON API, which the pages use too: ``POST /api/jobs`` (multipart: the file in ``video``,
options as form fields; or the video as the body, ``?name=`` and the options in the address) -> 202 ``{id, url,
status_url}``; ``POST /api/uploads`` then ``PUT``/``GET``/``DELETE /api/uploads/<id>`` (the page's resumable upload,
``app.upload``); ``GET /api/jobs/<id>`` -> the status (``state``: queued | running | done | failed | interrupted,
``percent``, ``eta_s``, and when done ``events`` and ``files``); ``POST /api/jobs/<id>/retry``; ``DELETE
/api/jobs/<id>``; ``/api/jobs/<id>/files/<name>``; ``POST /api/live``, ``GET``/``DELETE /api/live/<id>`` (live jobs).

With a token (``--token`` / ``SPOT_APP_TOKEN``) every route but ``/healthz`` and the static assets needs it: a
visit with ``?token=...`` sets a cookie, scripts send ``Authorization: Bearer ...``. Requests that change something
(uploads, retries, deletes) from a browser must come from the app's own pages (same origin).

``main`` serves with waitress (Flask's own server only with ``--debug``) and stops cleanly on SIGINT / SIGTERM:
the running job is interrupted, queued ones stay queued for the next start. Either server refuses a body over
``--max_upload_gb`` (``MAX_CONTENT_LENGTH``; waitress is told it, ``app.serve``).

This file holds the app's assembly (``create_app``), its pages and its command line; the rest has rooms of its own:
``app.access`` (the token, same-origin and loopback checks, refusals, security headers), ``app.upload`` (accepting
an upload) and ``app.options`` (its options, and the ``InferenceOptions`` a job runs with), ``app.api`` (the JSON
API and the result files), ``app.model_info`` (what the pages say about the model, from one ``ModelFolder`` per
request), ``app.serve`` (waitress and the signals), ``app.jobs`` (the job runner) and ``app.live`` (live jobs, in
the runner's slots).
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
import logging  # noqa: E402
import os  # noqa: E402
from typing import Any  # noqa: E402

from flask import Flask, abort, redirect, render_template, request, url_for  # noqa: E402
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge  # noqa: E402

from app.access import check_access, is_loopback, refuse, security_headers, wants_json  # noqa: E402
from app.api import (  # noqa: E402
    created,
    live_created,
    public_live,
    register_api,
    register_live_api,
    result_view,
    send_result_file,
    start_live,
)
from app.jobs import JobRunner  # noqa: E402
from app.live import MAX_LATENCY_S, LiveRunner, min_latency_s, shown_url  # noqa: E402
from app.model_info import default_threshold, model_card, model_outputs, model_ready, model_thresholds  # noqa: E402
from app.options import SLOWMO_CHOICES  # noqa: E402
from app.serve import STOP_TIMEOUT_S, serve  # noqa: E402
from app.upload import (  # noqa: E402
    ALLOWED_EXTENSIONS,
    CHUNK_BYTES,
    DISK_MARGIN_BYTES,
    UploadRequest,
    accept_upload,
    human_size,
    sweep_uploads,
    too_large_message,
)
from model.folder import ModelFolder  # noqa: E402
from model.live import DEFAULT_LATENCY_S  # noqa: E402 - numpy only, never torch
from util.io import DataError  # noqa: E402

__all__ = ["DEFAULTS", "create_app", "get_args", "human_size", "main", "serve"]

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = ROOT / "demo" / "model"
DEFAULT_JOBS_DIR = ROOT / "app" / "jobs"
DEFAULTS: dict[str, Any] = {
    "MODEL_DIR": None,  # None: SPOT_MODEL_DIR, else demo/model
    "JOBS_DIR": None,  # None: SPOT_JOBS_DIR, else app/jobs
    "MAX_CONTENT_LENGTH": 4 * 1024**3,  # the largest upload (request body), --max_upload_gb; waitress is told
    "UPLOAD_DISK_MARGIN": DISK_MARGIN_BYTES,  # free disk an upload must leave in the jobs folder
    "UPLOAD_CHUNK_BYTES": CHUNK_BYTES,  # the page's pieces of a resumable upload
    "WORKERS": 1,  # jobs processed at once; the others queue
    "MAX_JOBS": 50,  # finished jobs kept (oldest removed first)
    "MAX_JOB_AGE_S": 7 * 24 * 3600,
    "DEFAULT_THRESHOLD": None,  # None: the display threshold the model recorded (selection.json), else 0.3
    "DEFAULT_SLOWMO": 3,  # as inference_spot.py's default; 1 = off
    "INFERENCE_KWARGS": {},  # InferenceOptions fields every job runs with (device, batch_size, ...)
    "LIVE_SETTINGS": {},  # model.live.LiveSettings fields every live job runs with (connect_timeout_s, ...)
    "TOKEN": None,  # None: SPOT_APP_TOKEN, else no access control (fine on 127.0.0.1)
}


def create_app(config: dict | None = None) -> Flask:
    """The Flask app; ``config`` overrides DEFAULTS (and any Flask setting). Starts the job runner."""
    app = Flask(__name__)
    app.request_class = (
        UploadRequest  # a form's files are parsed onto the jobs' disk, not the temporary folder
    )
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
    live = LiveRunner(
        runner,
        app.config["MODEL_DIR"],
        settings=app.config["LIVE_SETTINGS"],
        device=app.config["INFERENCE_KWARGS"].get("device"),
        max_jobs=int(app.config["MAX_JOBS"]),
        max_age_s=float(app.config["MAX_JOB_AGE_S"]),
    )
    app.extensions["spot_live"] = live
    sweep_uploads(app)  # what uploads given up, or a server that died, left behind
    app.jinja_env.globals.update(human_size=human_size, max_upload=app.config["MAX_CONTENT_LENGTH"])
    _register_pages(app, runner)
    _register_live_pages(app, live)
    register_api(app, runner)
    register_live_api(app, live)
    _register_errors(app)
    app.before_request(check_access)
    app.after_request(security_headers)
    return app


def _register_pages(app: Flask, runner: JobRunner) -> None:
    @app.get("/")
    def index():
        folder = ModelFolder(app.config["MODEL_DIR"])
        ready, setting = model_ready(folder), app.config["DEFAULT_THRESHOLD"]
        return render_template(
            "index.html",
            model_ready=ready,
            model_dir=folder.path,
            extensions=ALLOWED_EXTENSIONS,
            default_threshold=default_threshold(folder, setting),
            class_thresholds=model_thresholds(folder, setting),
            outputs=model_outputs(folder),
            model=model_card(folder) if ready else None,
            slowmo_choices=SLOWMO_CHOICES,
            default_slowmo=app.config["DEFAULT_SLOWMO"],
        )

    @app.post("/upload")
    def upload():
        job_id, refusal = accept_upload(app, runner)
        if refusal is not None:
            return refusal
        url = url_for("processing", job_id=job_id)
        if wants_json():
            return created(job_id)
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
        return render_template("result.html", job=status, **result_view(runner, job_id, status))

    @app.get("/jobs/<job_id>/files/<name>")
    def job_file(job_id: str, name: str):
        return send_result_file(runner, job_id, name)


def _register_live_pages(app: Flask, live: LiveRunner) -> None:
    @app.route("/live", methods=["GET", "POST"])
    def live_start():
        if request.method == "POST":  # the page's form (its script sends the same as JSON-wanting fetch)
            job_id, refusal = start_live(app, live)
            if refusal is not None:
                return refusal
            if wants_json():
                return live_created(job_id)
            return redirect(url_for("live_page", job_id=job_id), code=303)
        folder = ModelFolder(app.config["MODEL_DIR"])
        ready = model_ready(folder)
        runner: JobRunner = app.extensions["spot_jobs"]
        return render_template(
            "live.html",
            job=None,
            model_ready=ready,
            model_dir=folder.path,
            default_latency=DEFAULT_LATENCY_S,
            min_latency=min_latency_s(folder) if ready else 0.0,
            max_latency=MAX_LATENCY_S,
            workers=runner.workers,
            live_slots=runner.live_slots(),
            jobs=[{**s, "source": shown_url(str(s.get("source") or ""))} for s in live.all()[:10]],
        )

    @app.get("/live/<job_id>")
    def live_page(job_id: str):
        status = live.status(job_id) or abort(404)
        return render_template("live.html", job=public_live(live, job_id, status, after=10**9))


def _register_errors(app: Flask) -> None:
    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_e):
        return refuse(413, too_large_message(app.config["MAX_CONTENT_LENGTH"] or 0))

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        if e.code == 404:
            return refuse(404, "Nothing here: the page or job does not exist (old jobs are removed).")
        if e.code is not None and e.code >= 400:
            return refuse(e.code, e.description or e.name)
        return e


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
    if not args.token and not args.insecure and not is_loopback(args.host):
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
    if not model_ready(ModelFolder(model_dir)):
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
