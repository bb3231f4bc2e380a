"""Accepting an upload: a model to run, a video of a known kind, valid options (``app.options``), optionally the
video's Labels-ball.json, a size within ``--max_upload_gb`` and room on the disk, all checked before the job is
queued. The video is written to disk once by the app, read from the request a MiB at a time (memory stays flat):

- **The page: a resumable upload.** ``POST /api/uploads`` (form fields: ``name``, ``size`` in bytes, the options,
  ``labels``) checks everything and holds room for the video -> 201 ``{id, upload_url, offset: 0, size,
  chunk_bytes}``; then ``PUT upload_url`` with the bytes from ``Upload-Offset`` as the body, in pieces of about
  ``chunk_bytes`` (each held in waitress's memory, never spooled to a file). Each piece is appended to the upload's
  file under ``JOBS_DIR/.uploads/<id>/`` -> 200 ``{offset, size}``; the last one turns it into a job (the file is
  hard-linked into the job folder, not copied) -> 202 as ``POST /api/jobs``. After a dropped connection the page
  asks ``GET upload_url`` for the ``offset`` the server has and goes on from there; ``DELETE upload_url`` gives it
  up, and an upload left alone for a day is removed.
- **A script: the video as the body.** ``POST /api/jobs?name=match.mp4&threshold=0.3`` with ``Content-Type:
  application/octet-stream`` (``curl -X POST -T match.mp4``) streams the body into the job folder.
- **A form post** (``/upload`` without JavaScript, ``POST /api/jobs`` multipart): the file parts are parsed into
  ``JOBS_DIR/.uploads/`` (never the system's temporary folder) and the video hard-linked into the job folder.

waitress receives a whole request before the app sees it, and keeps a body over ``inbuf_overflow`` in a temporary
file (``app.serve``): the raw body and the form post are written there first, then once by the app; the page's
pieces are not. A too-large upload is refused from its ``Content-Length`` before a byte is read (by waitress itself
past the limit, with the app's message), or while it streams when no length is given; an interrupted one leaves
nothing (a resumable upload keeps what arrived, to go on from).
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from flask import Flask, Request, current_app, jsonify, request, url_for
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from app.access import refuse
from app.folders import is_job_id
from app.jobs import LABELS_UPLOAD, JobRunner
from app.model_info import default_threshold, model_outputs, model_thresholds
from app.options import check_options, parse_options
from model.folder import ModelFolder
from util.io import DataError, load_json, store_json

ALLOWED_EXTENSIONS = (".mp4", ".mkv", ".avi", ".mov")
MAX_LABELS_BYTES = 20 << 20  # a Labels-ball.json of a whole game is well under 1 MB
READ_BYTES = 1 << 20  # a request body is read this much at a time
CHUNK_BYTES = 8 << 20  # the page sends a resumable upload in pieces of this size (UPLOAD_CHUNK_BYTES)
DISK_MARGIN_BYTES = (
    1 << 30
)  # free disk an upload must leave beside it, for its job's results (UPLOAD_DISK_MARGIN)
STAGING_DIR = ".uploads"  # under JOBS_DIR: resumable uploads and form files in flight (not a job id: no job)
SESSION_FILE = "upload.json"
DATA_FILE = "video"
STAGED_TTL_S = 24 * 3600  # a resumable upload untouched this long is given up
RAW_TYPES = ("application/octet-stream",)  # a body that is the video itself (also video/*)


def human_size(num_bytes: float) -> str:
    """1536 -> '1.5 KiB'; the sizes the pages show."""
    units = ("bytes", "KiB", "MiB", "GiB", "TiB")
    power = 0 if num_bytes < 1024 else min(len(units) - 1, int(math.log(num_bytes, 1024)))
    value = num_bytes / 1024**power
    return f"{int(num_bytes)} bytes" if power == 0 else f"{value:.1f} {units[power]}".replace(".0 ", " ")


def too_large_message(limit: int) -> str:
    """The refusal of an upload over ``limit`` bytes (the app's and waitress's, ``app.serve``)."""
    return f"The file is larger than the upload limit of {human_size(limit)}."


class UploadRefused(Exception):
    """An upload refused: the HTTP status and the message the user reads (``extra``: more JSON fields)."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra

    def response(self):
        if self.extra:
            return jsonify(error=self.message, **self.extra), self.status
        return refuse(self.status, self.message)


class UploadRequest(Request):
    """Flask's request, with the files of a form parsed into ``JOBS_DIR/.uploads/`` (the jobs' disk), each in a
    named file that goes when the request ends; :func:`_place` links the video from there into its job."""

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        staging = staging_dir(current_app)
        staging.mkdir(parents=True, exist_ok=True)
        return tempfile.NamedTemporaryFile("w+b", dir=staging, prefix="form-", suffix=".part")  # noqa: SIM115


def staging_dir(app: Flask) -> Path:
    return Path(app.config["JOBS_DIR"]) / STAGING_DIR


def upload_limit(app: Flask) -> int | None:
    """The largest request body accepted (``--max_upload_gb``), None for no limit."""
    limit = app.config.get("MAX_CONTENT_LENGTH")
    return None if limit is None else int(limit)


# ---- the checks every way in shares
def _ready_model(app: Flask) -> ModelFolder:
    folder = ModelFolder(app.config["MODEL_DIR"])
    if not folder.ready:
        raise UploadRefused(
            503, f"No model in {app.config['MODEL_DIR']}: run `make demo` or start with --model_dir."
        )
    return folder


def _video_name(given: str | None, missing: str) -> tuple[str, str]:
    """(the file's own name, its extension) from a client's file name; ``missing``: what to say without one."""
    name = Path((given or "").replace("\\", "/")).name
    if not name:
        raise UploadRefused(400, missing)
    ext = Path(name).suffix.lower()
    if ext not in ALLOWED_EXTENSIONS:
        raise UploadRefused(
            400, f"{name!r} is not a supported video: use one of {' '.join(ALLOWED_EXTENSIONS)}."
        )
    return name, ext


def _job_options(app: Flask, folder: ModelFolder, fields) -> dict:
    setting = app.config["DEFAULT_THRESHOLD"]
    try:
        per_class = bool(model_thresholds(folder, setting)["classes"])
        options = parse_options(
            fields,
            default_threshold(folder, setting),
            app.config["DEFAULT_SLOWMO"],
            per_class,
            model_outputs(folder),
        )
        check_options(options)
    except ValueError as e:
        raise UploadRefused(
            400, str(e) if "must" in str(e) else "The options are not valid numbers."
        ) from None
    return options


def _check_size(app: Flask, size: int | None) -> None:
    limit = upload_limit(app)
    if size is not None and limit is not None and size > limit:
        raise UploadRefused(413, too_large_message(limit))


def _check_disk(app: Flask, size: int) -> None:
    """Refuse (507) an upload of ``size`` bytes that would not leave UPLOAD_DISK_MARGIN free in the jobs folder,
    counting the bytes the resumable uploads under way have yet to send."""
    jobs = Path(app.config["JOBS_DIR"])
    margin = int(app.config.get("UPLOAD_DISK_MARGIN", DISK_MARGIN_BYTES))
    pending = _pending_bytes(staging_dir(app))
    free = shutil.disk_usage(jobs).free
    needed = size + margin + pending
    if needed > free:
        held = f", and {human_size(pending)} still to come for uploads under way" if pending else ""
        raise UploadRefused(
            507,
            f"Not enough free disk for this upload: it needs {human_size(needed)} (the video, "
            f"{human_size(margin)} for its results{held}) and the server's jobs folder has {human_size(free)} "
            "free. Free some space there (or delete old jobs), then send it again.",
        )


def _declared_length() -> int | None:
    """The request's Content-Length; None for a chunked body (no length told)."""
    if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        return None
    raw = request.environ.get("CONTENT_LENGTH") or ""
    return int(raw) if raw.isdigit() else None


def _check_length(app: Flask) -> int | None:
    """The body's declared length, checked against the limit; a body without one must be chunked."""
    length = _declared_length()
    _check_size(app, length)
    if length is None and not request.environ.get("wsgi.input_terminated"):
        raise UploadRefused(411, "Send the video with its Content-Length (or as a chunked body).")
    return length


def _receive(
    source: IO[bytes], out: IO[bytes], expected: int | None, room: int | None, too_large: str
) -> int:
    """Copy a request body from ``source`` to ``out`` a MiB at a time; the bytes copied. UploadRefused: past
    ``room`` bytes (413, ``too_large``), a body that ends before ``expected`` or a connection that fails (400),
    a full disk (507)."""
    received = 0
    while True:
        try:
            chunk = source.read(READ_BYTES)
        except RequestEntityTooLarge:
            raise UploadRefused(413, too_large) from None
        except (ClientDisconnected, OSError) as e:
            raise _interrupted(received, expected) from e
        if not chunk:
            break
        received += len(chunk)
        if room is not None and received > room:
            raise UploadRefused(413, too_large)
        try:
            out.write(chunk)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise UploadRefused(507, "The server's disk is full: the upload was not kept.") from e
            raise
    if expected is not None and received < expected:
        raise _interrupted(received, expected)
    return received


def _interrupted(received: int, expected: int | None) -> UploadRefused:
    of = f" of {human_size(expected)}" if expected is not None else ""
    return UploadRefused(
        400, f"The upload was interrupted after {human_size(received)}{of}: nothing was kept; send it again."
    )


def _place(source: Path, target: Path) -> None:
    """``target`` gets the bytes of ``source`` without copying them (a hard link on the same disk), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _create(runner: JobRunner, save: Callable[[Path], None], ext: str, name: str, options: dict) -> str:
    """Queue a job whose upload ``save(path)`` writes; its folder goes if that fails (``JobRunner.create``)."""
    try:
        return runner.create(save, ext, name, options)
    except RuntimeError as e:  # the server is stopping
        raise UploadRefused(503, f"Not accepted: {e}; send it again once the server is back.") from None


# ---- a form post, or the video as the body
def accept_upload(app: Flask, runner: JobRunner) -> tuple[str | None, Any]:
    """Check an upload (a form with its ``video`` field, or the video as the body) and queue it: (job id, None) or
    (None, the refusal)."""
    try:
        if request.mimetype in RAW_TYPES or request.mimetype.startswith("video/"):
            return _accept_body(app, runner), None
        return _accept_form(app, runner), None
    except UploadRefused as e:
        return None, e.response()


def _accept_body(app: Flask, runner: JobRunner) -> str:
    folder = _ready_model(app)
    name, ext = _video_name(
        request.args.get("name"),
        "Name the video in the address: /api/jobs?name=match.mp4 (any of its options too).",
    )
    options = _job_options(app, folder, request.args)
    length = _check_length(app)
    limit = upload_limit(app)
    _check_disk(app, length if length is not None else (limit or 0))
    message = too_large_message(limit) if limit is not None else ""

    def save(path: Path) -> None:
        with open(path, "xb") as out:
            _receive(request.stream, out, length, limit, message)

    return _create(runner, save, ext, name, options)


def _accept_form(app: Flask, runner: JobRunner) -> str:
    folder = _ready_model(app)
    length = _declared_length()  # the form's, checked before a byte of it is parsed
    _check_size(app, length)
    expected = length if length is not None else upload_limit(app)
    if expected:
        _check_disk(app, expected)
    try:
        file = request.files.get("video")
        labels_file = request.files.get("labels")
    except (ClientDisconnected, OSError) as e:
        if getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT):
            raise UploadRefused(507, "The server's disk is full: the upload was not kept.") from e
        raise _interrupted(0, length) from e
    if file is None or not file.filename:
        raise UploadRefused(400, "Choose a video file to upload (form field 'video').")
    name, ext = _video_name(file.filename, "Choose a video file to upload (form field 'video').")
    options = _job_options(app, folder, request.form)
    labels = _uploaded_labels(labels_file)
    if labels is not None:
        options["labels"] = True

    def save(path: Path) -> None:
        stream = file.stream
        staged = getattr(stream, "name", None)
        if isinstance(staged, str) and Path(staged).parent == staging_dir(app):
            stream.flush()
            _place(Path(staged), path)
        else:
            file.save(path)
        if labels is not None:
            (path.parent / LABELS_UPLOAD).write_bytes(labels)

    return _create(runner, save, ext, name, options)


def _uploaded_labels(file) -> bytes | None:
    """The optional ``labels`` field (the video's Labels-ball.json): its bytes once checked (UploadRefused if not)."""
    from util.soccernet import load_labels

    if file is None or not file.filename:
        return None
    data = file.read(MAX_LABELS_BYTES + 1)
    name = Path(file.filename).name
    if len(data) > MAX_LABELS_BYTES:
        raise UploadRefused(
            400, f"{name!r} is over {human_size(MAX_LABELS_BYTES)}: is it a Labels-ball.json?"
        )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / LABELS_UPLOAD
        path.write_bytes(data)
        try:
            load_labels(path)
        except DataError as e:
            reason = str(e).replace(str(path), name)
            raise UploadRefused(
                400, f"The labels file is not a SoccerNet Labels-ball.json: {reason}"
            ) from None
    return data


# ---- resumable uploads (the page's): JOBS_DIR/.uploads/<id>/ holds upload.json, the video so far, the labels
_LOCKS: dict[str, threading.Lock] = {}  # one request at a time per upload
_LOCKS_GUARD = threading.Lock()


@contextlib.contextmanager
def _holding(upload_id: str) -> Iterator[None]:
    with _LOCKS_GUARD:
        lock = _LOCKS.setdefault(upload_id, threading.Lock())
    if not lock.acquire(blocking=False):
        raise UploadRefused(409, "Another request is sending this upload now: wait for it to end.")
    try:
        yield
    finally:
        lock.release()


def _forget(upload_id: str) -> None:
    with _LOCKS_GUARD:
        _LOCKS.pop(upload_id, None)


def _busy(upload_id: str) -> bool:
    with _LOCKS_GUARD:
        lock = _LOCKS.get(upload_id)
    return lock is not None and lock.locked()


def _session(app: Flask, upload_id: str) -> tuple[Path, dict]:
    """(the folder, upload.json) of a resumable upload under way; UploadRefused (404) for anything else."""
    folder = staging_dir(app) / upload_id
    try:
        if not is_job_id(upload_id):
            raise DataError(upload_id)
        return folder, load_json(folder / SESSION_FILE)
    except DataError:
        raise UploadRefused(
            404,
            "No such upload: it became a job, was given up, or lay untouched for a day; send the video again.",
        ) from None


def _have(folder: Path) -> int:
    try:
        return (folder / DATA_FILE).stat().st_size
    except FileNotFoundError:
        return 0


def _pending_bytes(staging: Path) -> int:
    """Bytes the resumable uploads under way have yet to send (the disk room they hold)."""
    pending = 0
    if staging.is_dir():
        for folder in staging.iterdir():
            with contextlib.suppress(DataError, OSError, TypeError, ValueError):
                pending += max(0, int(load_json(folder / SESSION_FILE)["size"]) - _have(folder))
    return pending


def sweep_uploads(app: Flask, now: float | None = None) -> None:
    """Remove what uploads left in ``JOBS_DIR/.uploads``: resumable ones untouched for STAGED_TTL_S, and form files
    of a server that died while parsing (as old)."""
    staging = staging_dir(app)
    if not staging.is_dir():
        return
    now = time.time() if now is None else now
    for entry in list(staging.iterdir()):
        with contextlib.suppress(OSError):
            paths = [entry, *entry.iterdir()] if entry.is_dir() else [entry]
            if now - max(p.stat().st_mtime for p in paths) <= STAGED_TTL_S or _busy(entry.name):
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
                _forget(entry.name)
            else:
                entry.unlink()


def _refusing(handler: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return handler(*args, **kwargs)
        except UploadRefused as e:
            return e.response()

    call.__name__ = handler.__name__
    call.__doc__ = handler.__doc__
    return call


def _session_reply(upload_id: str, session: dict, offset: int) -> dict:
    return {
        "id": upload_id,
        "upload_url": url_for("api_upload", upload_id=upload_id),
        "name": session["name"],
        "size": session["size"],
        "offset": offset,
    }


@_refusing
def start_upload(app: Flask):
    """``POST /api/uploads``: check an upload to come (its name, size, options, labels) and hold room for it."""
    folder = _ready_model(app)
    name, ext = _video_name(request.form.get("name"), "Name the video (field 'name', e.g. match.mp4).")
    try:
        size = int(request.form.get("size", ""))
        if size < 0:
            raise ValueError(size)
    except ValueError:
        raise UploadRefused(400, "Give the video's size in bytes (field 'size').") from None
    _check_size(app, size)
    options = _job_options(app, folder, request.form)
    labels = _uploaded_labels(request.files.get("labels"))
    sweep_uploads(app)
    _check_disk(app, size)
    upload_id = str(uuid.uuid4())
    staged = staging_dir(app) / upload_id
    staged.mkdir(parents=True)
    try:
        (staged / DATA_FILE).touch(exist_ok=False)
        if labels is not None:
            (staged / LABELS_UPLOAD).write_bytes(labels)
            options["labels"] = True
        session = {"name": name, "ext": ext, "size": size, "options": options, "created": time.time()}
        store_json(staged / SESSION_FILE, session)  # last: the upload exists once this is written
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    chunk = int(app.config.get("UPLOAD_CHUNK_BYTES", CHUNK_BYTES))
    return jsonify(**_session_reply(upload_id, session, 0), chunk_bytes=chunk), 201


@_refusing
def upload_status(app: Flask, upload_id: str):
    """``GET /api/uploads/<id>``: how many bytes the server has (where to go on from)."""
    folder, session = _session(app, upload_id)
    return jsonify(_session_reply(upload_id, session, _have(folder)))


@_refusing
def drop_upload(app: Flask, upload_id: str):
    """``DELETE /api/uploads/<id>``: give an upload up; nothing of it is left."""
    folder, _ = _session(app, upload_id)
    with _holding(upload_id):
        shutil.rmtree(folder, ignore_errors=True)
    _forget(upload_id)
    return jsonify(deleted=upload_id)


@_refusing
def receive_piece(app: Flask, runner: JobRunner, upload_id: str):
    """``PUT /api/uploads/<id>`` with ``Upload-Offset``: append a piece; the last one queues the job (202)."""
    folder, session = _session(app, upload_id)
    size = int(session["size"])
    with _holding(upload_id):
        have = _have(folder)
        try:
            offset = int(request.headers.get("Upload-Offset", ""))
        except ValueError:
            raise UploadRefused(
                400, "Say where this piece starts (header Upload-Offset).", offset=have, size=size
            ) from None
        if offset != have:
            raise UploadRefused(
                409,
                f"The server has {have} bytes of this upload: send the rest from there (Upload-Offset: {have}).",
                offset=have,
                size=size,
            )
        length = _declared_length()
        room = size - have
        beyond = f"This piece goes past the upload's size of {human_size(size)} (said when it started)."
        if length is not None and length > room:
            raise UploadRefused(413, beyond, offset=have, size=size)
        if length is None and not request.environ.get("wsgi.input_terminated"):
            raise UploadRefused(411, "Send each piece with its Content-Length (or as a chunked body).")
        with open(folder / DATA_FILE, "ab") as out:
            try:
                have += _receive(request.stream, out, length, room, beyond)
            except UploadRefused as e:
                if e.status != 400:  # past the size, or the disk full: this piece is not kept
                    out.flush()
                    out.truncate(have)
                    raise
                out.flush()  # interrupted: what arrived is kept, to go on from
                raise UploadRefused(
                    400,
                    f"The connection dropped: the server has {_have(folder)} bytes of this upload; send the rest "
                    "from there.",
                    offset=_have(folder),
                    size=size,
                ) from None
        if have < size:
            return jsonify(offset=have, size=size)
        job_id = _finish(runner, folder, session)
    _forget(upload_id)
    from app.api import created

    reply, status = created(job_id)
    return reply, status


def _finish(runner: JobRunner, folder: Path, session: dict) -> str:
    """The whole upload is there: it becomes a job (its files linked into the job folder), then goes."""

    def save(path: Path) -> None:
        _place(folder / DATA_FILE, path)
        if (folder / LABELS_UPLOAD).is_file():
            _place(folder / LABELS_UPLOAD, path.parent / LABELS_UPLOAD)

    job_id = _create(runner, save, session["ext"], session["name"], session["options"])
    shutil.rmtree(folder, ignore_errors=True)
    return job_id
