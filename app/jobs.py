"""The web app's job runner: one folder per uploaded video, processed by a bounded pool of background workers.

A job folder ``JOBS_DIR/<uuid>/`` holds the upload under a generated name (``input.<ext>``), the inference outputs
(``output/``) and ``status.json``, rewritten atomically at every change of state and, throttled, on progress. The
folder alone describes the job, so a restarted server still shows finished results; a job that was running when
the server stopped is marked failed (its worker is gone), and queued jobs are queued again.

Workers call ``model.inference.run_inference``, the same function as ``inference_spot.py``.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from util.io import DataError, load_json, store_json

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"
OUTPUT_DIR = "output"
EVENTS_FILE = "events.json"  # the events with their time in the annotated video, for the result page
SLOWMO_SPAN_S = 0.4  # seconds of slow motion each side of an action (when the user asks for slow motion)
UPLOAD_STEM = "input"
STAGES = ("decoding", "detecting", "rendering")
# Share of the whole job each stage stands for, to turn per-stage progress into one percentage and an ETA.
STAGE_WEIGHTS = {"decoding": 0.05, "detecting": 0.5, "rendering": 0.45}
ACTIVE_STATES = ("queued", "running")
ORPHAN_AGE_S = 24 * 3600
PROGRESS_WRITE_INTERVAL_S = 0.3
# The files of a finished job the app serves, by name (keys of run_inference's result); nothing else is served.
RESULT_FILES = ("video", "predictions", "results_spotting", "timeline", "scores")
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def is_job_id(text: str) -> bool:
    """True for the canonical form of a random (version 4) UUID, the only job ids the app makes."""
    return bool(_UUID_RE.match(text))


def _now() -> float:
    return time.time()


class JobRunner:
    """Creates job folders, runs them on at most ``workers`` threads, reports their state, cleans up old ones."""

    def __init__(
        self,
        jobs_dir: str | Path,
        model_dir: str | Path,
        *,
        workers: int = 1,
        max_jobs: int = 50,
        max_age_s: float = 7 * 24 * 3600,
        inference_kwargs: dict | None = None,
    ) -> None:
        self.jobs_dir = Path(jobs_dir)
        self.model_dir = Path(model_dir)
        self.max_jobs = max_jobs
        self.max_age_s = max_age_s
        self.inference_kwargs = dict(inference_kwargs or {})
        self._lock = threading.Lock()
        self._live: dict[str, dict] = {}  # status of the jobs this process queued, newest state first
        self._queue: list[str] = []  # queued job ids, in order
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="spot-job")
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self._recover()
        self.cleanup()

    # ---- folders and status
    def job_dir(self, job_id: str) -> Path | None:
        """The folder of an existing job, or None for anything that is not one (never a path outside)."""
        if not is_job_id(job_id):
            return None
        folder = self.jobs_dir / job_id
        return folder if (folder / STATUS_FILE).is_file() else None

    def status(self, job_id: str) -> dict | None:
        """The job's current status (live if this process runs it, else from status.json), or None."""
        with self._lock:
            live = self._live.get(job_id)
            if live is not None:
                status = dict(live)
                if status["state"] == "queued" and job_id in self._queue:
                    status["queue_position"] = self._queue.index(job_id) + 1
                return status
        folder = self.job_dir(job_id)
        if folder is None:
            return None
        try:
            return load_json(folder / STATUS_FILE)
        except DataError:
            log.warning("unreadable status in job %s", job_id)
            return None

    def result_file(self, job_id: str, name: str) -> Path | None:
        """Path of a finished job's result file ``name`` (one of RESULT_FILES), only if it lies in the job folder."""
        status = self.status(job_id)
        folder = self.job_dir(job_id)
        if status is None or folder is None or status.get("state") != "done" or name not in RESULT_FILES:
            return None
        rel = (status.get("files") or {}).get(name)
        if not rel:
            return None
        root = folder.resolve()
        path = (root / rel).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            return None
        return path

    def _write(self, job_id: str, status: dict) -> None:
        store_json(self.jobs_dir / job_id / STATUS_FILE, status)

    def _update(self, job_id: str, persist: bool = True, **changes: Any) -> dict:
        with self._lock:
            status = self._live.setdefault(job_id, {})
            status.update(changes)
            snapshot = dict(status)
            if status.get("state") not in ACTIVE_STATES:
                self._live.pop(job_id, None)
        if persist:
            self._write(job_id, snapshot)
        return snapshot

    # ---- submitting
    def create(self, save_upload: Callable[[Path], None], ext: str, original_name: str, options: dict) -> str:
        """Make a job folder, let ``save_upload(path)`` write the upload there, queue the job; returns its id."""
        job_id = str(uuid.uuid4())
        folder = self.jobs_dir / job_id
        folder.mkdir(parents=True)
        upload = f"{UPLOAD_STEM}{ext}"
        try:
            save_upload(folder / upload)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        status = {
            "id": job_id,
            "state": "queued",
            "original_name": original_name,
            "upload": upload,
            "upload_bytes": (folder / upload).stat().st_size,
            "options": options,
            "created": _now(),
            "stage": None,
            "stages": {s: {"done": 0, "total": 0} for s in STAGES},
            "percent": 0.0,
            "eta_s": None,
            "error": None,
        }
        self._update(job_id, **status)
        self._submit(job_id)
        self.cleanup()
        return job_id

    def _submit(self, job_id: str) -> None:
        with self._lock:
            self._queue.append(job_id)
        self._pool.submit(self._run, job_id)

    # ---- running
    def _run(self, job_id: str) -> None:
        with self._lock:
            if job_id in self._queue:
                self._queue.remove(job_id)
            status = dict(self._live.get(job_id) or {})
        if not status or not (self.jobs_dir / job_id).is_dir():
            return  # removed while queued
        start = _now()
        self._update(job_id, state="running", started=start)
        progress = _Progress(self, job_id, start)
        folder = self.jobs_dir / job_id
        try:
            result = self._call_inference(folder, status, progress)
            files = _relative_files(result, folder)
            if "video" not in files:
                raise DataError("no annotated video was written")
            self._update(
                job_id,
                state="done",
                finished=_now(),
                percent=100.0,
                eta_s=0,
                stage=None,
                files=files,
                fps=result.get("fps"),
                num_frames=result.get("num_frames"),
                num_events=len(result.get("events") or []),
            )
        except DataError as e:
            self._fail(job_id, _user_message(str(e), folder, status))
        except Exception as e:  # a bug or an unexpected failure: the job fails, the server keeps serving
            log.exception("job %s failed", job_id)
            reason = f"processing failed unexpectedly ({type(e).__name__}: {e})"
            self._fail(job_id, _user_message(reason, folder, status))
        finally:
            self.cleanup()

    def _call_inference(self, folder: Path, status: dict, progress: _Progress) -> dict:
        from model.inference import run_inference  # torch is imported only when a job runs

        options = status.get("options") or {}
        kwargs = dict(
            video=folder / status["upload"],
            video_name=_video_name(status),
            score_threshold=float(options["threshold"]) if "threshold" in options else None,
            create_video=True,
            slowmo_factor=int(options.get("slowmo_factor", 1)),
            slowmo_span=SLOWMO_SPAN_S,
            progress=progress,
        )
        kwargs.update(self.inference_kwargs)
        if not (self.model_dir / "config.json").is_file():
            raise DataError(
                f"no model in {self.model_dir}: run `make demo` or start the app with --model_dir"
            )
        result = run_inference(self.model_dir, folder / OUTPUT_DIR, **kwargs)
        store_json(folder / EVENTS_FILE, _events_document(result))
        return result

    def _fail(self, job_id: str, reason: str) -> None:
        self._update(job_id, state="failed", finished=_now(), error=reason, eta_s=None)

    # ---- restart and cleanup
    def _recover(self) -> None:
        """After a restart: running jobs lost their worker (failed); queued ones are queued again."""
        queued = []
        for folder in self.jobs_dir.iterdir():
            if not is_job_id(folder.name) or not (folder / STATUS_FILE).is_file():
                continue
            try:
                status = load_json(folder / STATUS_FILE)
            except DataError:
                continue
            if status.get("state") == "running":
                status.update(
                    state="failed",
                    finished=_now(),
                    eta_s=None,
                    error="the server stopped while this video was being processed; please upload it again",
                )
                self._write(folder.name, status)
            elif status.get("state") == "queued":
                queued.append(status)
        for status in sorted(queued, key=lambda s: s.get("created", 0)):
            with self._lock:
                self._live[status["id"]] = status
            self._submit(status["id"])

    def cleanup(self) -> list[str]:
        """Remove finished jobs older than max_age_s, then the oldest finished beyond max_jobs; returns their ids."""
        finished = []
        now = _now()
        for folder in self.jobs_dir.iterdir():
            if not is_job_id(folder.name):
                continue
            status = self.status(folder.name)
            if status is None and not (folder / STATUS_FILE).exists():
                # An upload that never became a job (the server died while saving it).
                if now - folder.stat().st_mtime > ORPHAN_AGE_S:
                    shutil.rmtree(folder, ignore_errors=True)
                continue
            if status is None or status.get("state") in ACTIVE_STATES:
                continue
            finished.append((status.get("finished") or status.get("created") or 0, folder))
        finished.sort(key=lambda item: item[0], reverse=True)
        keep = max(0, self.max_jobs - self._active_count())
        removed = []
        for rank, (when, folder) in enumerate(finished):
            if rank >= keep or now - when > self.max_age_s:
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder.name)
        if removed:
            log.info("removed %d old job(s)", len(removed))
        return removed

    def _active_count(self) -> int:
        with self._lock:
            return sum(1 for s in self._live.values() if s.get("state") in ACTIVE_STATES)

    def shutdown(self, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait, cancel_futures=not wait)


def _relative_files(result: dict, folder: Path) -> dict[str, str]:
    """run_inference's output paths, as paths relative to the job folder (the only ones ever served)."""
    root = folder.resolve()
    files = {}
    for name in RESULT_FILES:
        value = result.get(name)
        if not value:
            continue
        path = Path(value).resolve()
        if path.is_relative_to(root) and path.is_file():
            files[name] = path.relative_to(root).as_posix()
    return files


def _user_message(message: str, folder: Path, status: dict) -> str:
    """An error as the user should read it: the uploaded file by its own name, no server paths."""
    name = str(status.get("original_name") or "the video")
    for root in {folder, folder.resolve()}:
        message = message.replace(str(root / status["upload"]), name).replace(str(root) + "/", "")
    return message


def _video_name(status: dict) -> str:
    """The id recorded in predictions.json: the client's file name without extension (never used as a path)."""
    stem = Path(str(status.get("original_name") or "")).stem.strip()
    return stem.replace("/", "_").replace("\\", "_") or "video"


def _events_document(result: dict) -> dict:
    """Events with ``video_time_s``, their time in the annotated video (slow motion stretches its clock; the video
    may run at the source's frame rate), as ``run_inference`` rendered it; the match time without a video."""
    fps, num_frames = float(result["fps"]), int(result["num_frames"])
    events = [dict(e) for e in result.get("events") or []]
    times = result.get("video_times_s") or [int(e["frame"]) / fps for e in events]
    for event, seconds in zip(events, times, strict=True):
        event["video_time_s"] = round(float(seconds), 4)
    return {
        "fps": fps,
        "num_frames": num_frames,
        "video_frames": result.get("video_frames"),
        "events": events,
    }


class _Progress:
    """The ``progress(stage, done, total)`` callback: per-stage counts, one percentage, an ETA."""

    def __init__(self, runner: JobRunner, job_id: str, start: float) -> None:
        self.runner, self.job_id, self.start = runner, job_id, start
        self.stages = {s: {"done": 0, "total": 0} for s in STAGES}
        self.last_write = 0.0
        self.stage: str | None = None
        self.best = 0.0  # the percentage never goes back (a stream's length is only estimated at first)

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.stages.setdefault(stage, {"done": 0, "total": 0})
        self.stages[stage] = {"done": int(done), "total": int(total)}
        for earlier in STAGES[: STAGES.index(stage)] if stage in STAGES else ():
            entry = self.stages[earlier]  # a later stage started: earlier ones are complete
            entry["done"] = entry["total"] = max(entry["total"], entry["done"], 1)
        fraction = self.best = max(self.best, self.fraction())
        now = _now()
        elapsed = now - self.start
        eta = elapsed * (1 - fraction) / fraction if fraction > 0.02 else None
        changed = stage != self.stage or done >= total
        self.stage = stage
        persist = changed or now - self.last_write >= PROGRESS_WRITE_INTERVAL_S
        if persist:
            self.last_write = now
        self.runner._update(
            self.job_id,
            persist=persist,
            stage=stage,
            stages={k: dict(v) for k, v in self.stages.items()},
            percent=round(100 * fraction, 1),
            eta_s=None if eta is None else round(eta, 1),
        )

    def fraction(self) -> float:
        total_weight = sum(STAGE_WEIGHTS.values())
        value = 0.0
        for stage, weight in STAGE_WEIGHTS.items():
            entry = self.stages.get(stage, {})
            if entry.get("total"):
                value += weight * min(1.0, entry["done"] / entry["total"])
        return min(1.0, value / total_weight)
