"""The web app's live jobs: a stream watched by ``model.live.run_live`` in a job process, its events read back from
the job's folder as they are written.

A live job's folder ``JOBS_DIR/live/<uuid>/`` holds ``status.json`` (written atomically at each change of state)
and what run_live writes there: ``events.jsonl`` and ``events.csv`` (a line per event, flushed as it is written) and,
once it ended, ``live_summary.json``. States: ``running`` -> ``stopping`` (asked to stop) -> ``stopped``; or
``running`` -> ``done`` (the feed ended by itself) | ``failed`` (no frame came, or an error) | ``interrupted`` (the
server stopped). The events written are final and kept in every case; a job that ended is removed by a DELETE, or
by the cleanup as uploads are (``--max_jobs``, ``--max_job_age_h``, never within the hour).

The job runs in a slot's job process (``app.worker``: the server never imports torch), in the slots the uploads use,
by the rule of ``JobRunner.start_live``: a live job starts now or is refused, it never queues.
"""

from __future__ import annotations

import logging
import math
import shutil
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from app.folders import STATUS_FILE, is_job_id, remove_old_jobs, saved_statuses
from app.jobs import JobRunner, WorkerProcess
from app.progress import JobInterrupted
from app.worker import LiveStopOverdue
from model.folder import ModelFolder
from model.live import DEFAULT_LATENCY_S, event_margin
from util.io import DataError, load_json, store_json

log = logging.getLogger(__name__)

LIVE_DIR = "live"  # under the jobs folder
EVENTS_JSONL = "events.jsonl"
SUMMARY_FILE = "live_summary.json"
LIVE_FILES = {"events.csv": "text/csv", "events.jsonl": "application/x-ndjson"}  # what is served, by name
# What FFmpeg reads as a live feed: HLS comes over http(s). Files and pipes are refused (uploads are for files).
STREAM_SCHEMES = ("udp", "srt", "rtsp", "rtsps", "rtmp", "rtmps", "http", "https")
MAX_URL_CHARS = 2000
MAX_LATENCY_S = 60.0
ACTIVE_STATES = ("running", "stopping")
INTERRUPTED_MESSAGE = "the server stopped while this feed was watched; the events written until then are kept"


class LiveRequestError(ValueError):
    """A live job's request refused: ``field`` names the form field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def check_stream_url(text: str) -> str:
    """The stream address, stripped, when it is one the app watches; LiveRequestError (field ``url``) if not."""
    url = (text or "").strip()
    schemes = "udp://, srt://, rtsp://, rtmp://, or an HLS playlist over http(s)://"
    if not url:
        raise LiveRequestError("url", f"give the stream's address ({schemes})")
    if len(url) > MAX_URL_CHARS or any(c.isspace() or ord(c) < 32 for c in url):
        raise LiveRequestError("url", "the address is too long or holds spaces or control characters")
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if not scheme:
        raise LiveRequestError(
            "url", f"{url!r} is not a stream address ({schemes}); to analyse a file, upload it"
        )
    if scheme not in STREAM_SCHEMES:
        raise LiveRequestError("url", f"{scheme}:// is not a stream the app watches ({schemes})")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise LiveRequestError("url", f"{url!r} is not a valid address ({e})") from None
    if not parts.hostname and port is None:
        raise LiveRequestError("url", f"{url!r} names no host or port")
    return url


def shown_url(url: str) -> str:
    """The address as pages and the API show it: a password in it replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.netloc.rsplit('@', 1)[1]}"
    return parts._replace(netloc=netloc).geturl()


def min_latency_s(folder: ModelFolder) -> float:
    """The shortest latency the model's post-processing allows (its NMS window and smoothing, in seconds)."""
    config = folder.config_json
    fps = float(config["fps"])
    margin = event_margin(folder.selection["postprocess"], fps, int(config.get("displacement") or 0))
    return margin / fps


def _number(fields: Mapping, name: str) -> float | None:
    text = str(fields.get(name) if fields.get(name) is not None else "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise LiveRequestError(name, f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise LiveRequestError(name, f"{text!r} is not a number")
    return value


def live_options(fields: Mapping, folder: ModelFolder) -> dict[str, Any]:
    """A live request's fields (``url``, ``latency`` in seconds, ``threshold``) checked: ``{url, latency_s,
    threshold}``; LiveRequestError naming the field at fault."""
    url = check_stream_url(str(fields.get("url") or ""))
    latency = _number(fields, "latency")
    latency = DEFAULT_LATENCY_S if latency is None else latency
    shortest = min_latency_s(folder)
    if latency < shortest * (1 - 1e-4):  # (the page shows the minimum to 6 digits)
        raise LiveRequestError(
            "latency", f"{latency:g} s is below the {shortest:g} s the model's post-processing needs (its NMS "
            "window and smoothing)")  # fmt: skip
    if latency > MAX_LATENCY_S:
        raise LiveRequestError("latency", f"{latency:g} s is above the longest, {MAX_LATENCY_S:g} s")
    threshold = _number(fields, "threshold")
    if threshold is not None and not 0 <= threshold <= 1:
        raise LiveRequestError("threshold", f"{threshold:g} is not between 0 and 1")
    return {"url": url, "latency_s": latency, "threshold": threshold}


def read_events(path: Path, after: int = 0) -> tuple[list[dict], int]:
    """The events of an ``events.jsonl`` from the ``after``-th on, and how many it holds: complete lines only (the
    writer may be halfway through the last one)."""
    import json

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    lines = [line for line in data.split(b"\n")[:-1] if line.strip()]
    return [json.loads(line) for line in lines[after:]], len(lines)


@dataclass(eq=False)
class _LiveJob:
    """A live job this server runs: its status (as status.json holds it), its stop, and its end."""

    status: dict
    stop: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)


class LiveRunner:
    """Starts live jobs in the job runner's slots, stops them, tells their state and events, cleans up."""

    def __init__(
        self,
        jobs: JobRunner,
        model_dir: str | Path,
        *,
        settings: dict | None = None,
        device: str | None = None,
        max_jobs: int = 50,
        max_age_s: float = 7 * 24 * 3600,
    ) -> None:
        self.jobs = jobs
        self.model_dir = Path(model_dir)
        self.settings = dict(settings or {})  # LiveSettings fields every live job runs with, but the latency
        self.device = device
        self.max_jobs, self.max_age_s = max_jobs, max_age_s
        self.dir = jobs.jobs_dir / LIVE_DIR  # made by the first live job
        self._lock = threading.Lock()  # over the jobs and their status.json writes
        self._jobs: dict[str, _LiveJob] = {}
        self._closing = False
        jobs.on_stop(self._close)
        self._recover()
        self.cleanup()

    # ---- folders and status
    def folder(self, job_id: str) -> Path | None:
        """The folder of an existing live job, or None (never a path outside)."""
        if not is_job_id(job_id):
            return None
        folder = self.dir / job_id
        return folder if (folder / STATUS_FILE).is_file() else None

    def status(self, job_id: str) -> dict | None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                return dict(job.status)
        folder = self.folder(job_id)
        try:
            return None if folder is None else load_json(folder / STATUS_FILE)
        except DataError:
            return None

    def all(self) -> list[dict]:
        """Every live job's status, the newest first."""
        with self._lock:
            held = {job_id: dict(job.status) for job_id, job in self._jobs.items()}
        statuses = [held.get(job_id, status) for job_id, status in self._saved()]
        return sorted(statuses, key=lambda s: s.get("created") or 0, reverse=True)

    def events(self, job_id: str, after: int = 0) -> tuple[list[dict], int]:
        folder = self.folder(job_id)
        return ([], 0) if folder is None else read_events(folder / EVENTS_JSONL, after)

    def file(self, job_id: str, name: str) -> Path | None:
        """One of LIVE_FILES of a live job, when it exists (while it runs: the events so far)."""
        folder = self.folder(job_id)
        path = None if folder is None or name not in LIVE_FILES else folder / name
        return path if path is not None and path.is_file() else None

    def stage(self, job_id: str, status: dict) -> str | None:
        """A running job's stage: ``loading`` (the model) until run_live opens its events file, then ``watching``."""
        if status.get("state") != "running":
            return None
        folder = self.folder(job_id)
        return "watching" if folder is not None and (folder / EVENTS_JSONL).exists() else "loading"

    def _update(self, job_id: str, job: _LiveJob, **changes: Any) -> dict:
        """Change a held job's status and write it (under the lock: two writes never cross)."""
        with self._lock:
            job.status.update(changes)
            store_json(self.dir / job_id / STATUS_FILE, job.status)
            return dict(job.status)

    # ---- start, stop, remove
    def start(self, options: dict) -> tuple[str | None, str | None]:
        """A new live job on ``options`` (``live_options``): (its id, None), or (None, why no slot is free)."""
        job_id = str(uuid.uuid4())
        (self.dir / job_id).mkdir(parents=True)
        job = _LiveJob({
            "id": job_id, "kind": "live", "state": "running", "source": options["url"],
            "latency_s": options["latency_s"], "threshold": options.get("threshold"), "created": time.time(),
            "started": None, "finished": None, "error": None, "note": None, "summary": None,
        })  # fmt: skip
        with self._lock:
            self._jobs[job_id] = job
        self._update(job_id, job)
        refusal = self.jobs.start_live(lambda process: self._run(job_id, job, process))
        if refusal is not None:
            with self._lock:
                self._jobs.pop(job_id, None)
            shutil.rmtree(self.dir / job_id, ignore_errors=True)
            return None, refusal
        self.cleanup()
        return job_id, None

    def stop(self, job_id: str, wait_s: float) -> dict | None:
        """Ask a running job to stop (its events are final, its summary written) and wait up to ``wait_s`` for it;
        its status then (``stopping`` when it has not ended yet). None when it is not running."""
        with self._lock:  # the check and the change as one step: a job that ended meanwhile stays as it ended
            job = self._jobs.get(job_id)
            if job is None:
                return None
            if job.status["state"] == "running":
                job.status["state"] = "stopping"
                store_json(self.dir / job_id / STATUS_FILE, job.status)
                job.stop.set()
        job.ended.wait(wait_s)
        return self.status(job_id)

    def remove(self, job_id: str) -> bool:
        """Remove a job that ended, with its files; False when there is none (or it still runs)."""
        with self._lock:
            if job_id in self._jobs:
                return False
        folder = self.folder(job_id)
        if folder is None:
            return False
        shutil.rmtree(folder, ignore_errors=True)
        return True

    # ---- running
    def _run(self, job_id: str, job: _LiveJob, process: WorkerProcess) -> None:
        """The job, in a slot's thread: run_live in the slot's process until the feed ends or it is stopped."""
        try:
            self._update(job_id, job, started=time.time())
            outcome = self._watch(job_id, job, process)
            self._update(job_id, job, finished=time.time(), **outcome)
        finally:  # whatever happened, the job is let go: a DELETE waiting for it returns
            with self._lock:
                self._jobs.pop(job_id, None)
            job.ended.set()
            if not self._closing:
                self.cleanup()

    def _watch(self, job_id: str, job: _LiveJob, process: WorkerProcess) -> dict[str, Any]:
        """Run the job; how it ended: ``{state, error, note, summary}``."""
        source = job.status["source"]
        settings = {**self.settings, "latency_s": job.status["latency_s"]}
        kwargs = {"source": source, "settings": settings, "device": self.device,
                  "score_threshold": job.status["threshold"]}  # fmt: skip
        folder = self.dir / job_id
        summary, error, note = None, None, None
        try:
            summary = process.run_live(self.model_dir, folder, kwargs, job.stop, self._check)
            state = "stopped" if job.stop.is_set() else "done"
        except LiveStopOverdue as e:
            state, note = "stopped", f"{e}: it was ended, its summary is missing; the events written are kept"
        except JobInterrupted:
            state, error = "interrupted", INTERRUPTED_MESSAGE
        except DataError as e:
            state, error = "failed", str(e)
        except Exception as e:  # noqa: BLE001 - a bug or a crash: the job fails, the server keeps serving
            if self._closing:
                state, error = "interrupted", INTERRUPTED_MESSAGE
            else:
                log.exception("live job %s", job_id)
                state, error = "failed", f"live spotting failed unexpectedly ({type(e).__name__}: {e})"
        if error is not None:  # the address may carry a password: never shown
            error = error.replace(source, shown_url(source))
        summary = summary if summary is not None else _saved_summary(folder)
        return {"state": state, "error": error, "note": note, "summary": summary}

    def _check(self) -> None:
        """Raises JobInterrupted when the server stops (its job processes are killed)."""
        if self.jobs.stopping:
            raise JobInterrupted()

    def _close(self) -> None:
        """The runner stops or shuts down: every live job is asked to stop."""
        with self._lock:
            self._closing = True
            running = list(self._jobs.values())
        for job in running:
            job.stop.set()

    # ---- restart and cleanup
    def _recover(self) -> None:
        """After a restart: a job found running lost its process; it is interrupted (its events are kept)."""
        for job_id, status in self._saved():
            if status.get("state") in ACTIVE_STATES:
                status.update(state="interrupted", finished=time.time(), error=INTERRUPTED_MESSAGE,
                              summary=_saved_summary(self.dir / job_id))  # fmt: skip
                store_json(self.dir / job_id / STATUS_FILE, status)

    def cleanup(self) -> list[str]:
        """Remove ended live jobs by age and count, as uploads are (``app.folders.remove_old_jobs``)."""
        if not self.dir.is_dir():
            return []
        return remove_old_jobs(self.dir, self._ended_status, self.max_jobs, self.max_age_s)

    def _saved(self) -> list[tuple[str, dict]]:
        return saved_statuses(self.dir) if self.dir.is_dir() else []

    def _ended_status(self, job_id: str) -> dict | None:
        with self._lock:
            if job_id in self._jobs:
                return None
        status = self.status(job_id)
        return None if status is None or status.get("state") in ACTIVE_STATES else status


def _saved_summary(folder: Path) -> dict | None:
    try:
        return load_json(folder / SUMMARY_FILE)
    except DataError:
        return None
