"""Accepting an upload (the page's form and ``POST /api/jobs`` alike): a model to run, a video of a known kind, valid
options (``app.options``), and optionally the video's Labels-ball.json, checked before the job is queued.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

from flask import Flask, request

from app.access import refuse
from app.jobs import LABELS_UPLOAD, JobRunner
from app.model_info import default_threshold, model_outputs, model_thresholds
from app.options import check_options, parse_options
from model.folder import ModelFolder
from util.io import DataError

ALLOWED_EXTENSIONS = (".mp4", ".mkv", ".avi", ".mov")
MAX_LABELS_BYTES = 20 << 20  # a Labels-ball.json of a whole game is well under 1 MB


def human_size(num_bytes: float) -> str:
    """1536 -> '1.5 KiB'; the sizes the pages show."""
    units = ("bytes", "KiB", "MiB", "GiB", "TiB")
    power = 0 if num_bytes < 1024 else min(len(units) - 1, int(math.log(num_bytes, 1024)))
    value = num_bytes / 1024**power
    return f"{int(num_bytes)} bytes" if power == 0 else f"{value:.1f} {units[power]}".replace(".0 ", " ")


def accept_upload(app: Flask, runner: JobRunner) -> tuple[str | None, Any]:
    """Check an upload (``video`` field + options) and queue it: (job id, None) or (None, the refusal)."""
    folder = ModelFolder(app.config["MODEL_DIR"])
    if not folder.ready:
        return None, refuse(
            503, f"No model in {app.config['MODEL_DIR']}: run `make demo` or start with --model_dir."
        )
    file = request.files.get("video")
    if file is None or not file.filename:
        return None, refuse(400, "Choose a video file to upload (form field 'video').")
    name = Path(file.filename).name
    ext = Path(name).suffix.lower()
    if ext not in ALLOWED_EXTENSIONS:
        allowed = " ".join(ALLOWED_EXTENSIONS)
        return None, refuse(400, f"{name!r} is not a supported video: use one of {allowed}.")
    setting = app.config["DEFAULT_THRESHOLD"]
    try:
        per_class = bool(model_thresholds(folder, setting)["classes"])
        options = parse_options(
            request.form,
            default_threshold(folder, setting),
            app.config["DEFAULT_SLOWMO"],
            per_class,
            model_outputs(folder),
        )
        check_options(options)
    except ValueError as e:
        return None, refuse(400, str(e) if "must" in str(e) else "The options are not valid numbers.")
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


def _uploaded_labels(file) -> tuple[bytes | None, Any]:
    """The optional ``labels`` field (the video's Labels-ball.json): its bytes once checked, or a refusal."""
    from util.soccernet import load_labels

    if file is None or not file.filename:
        return None, None
    data = file.read(MAX_LABELS_BYTES + 1)
    name = Path(file.filename).name
    if len(data) > MAX_LABELS_BYTES:
        return None, refuse(
            400, f"{name!r} is over {human_size(MAX_LABELS_BYTES)}: is it a Labels-ball.json?"
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / LABELS_UPLOAD
        path.write_bytes(data)
        try:
            load_labels(path)
        except DataError as e:
            reason = str(e).replace(str(path), name)
            return None, refuse(400, f"The labels file is not a SoccerNet Labels-ball.json: {reason}")
    return data, None
