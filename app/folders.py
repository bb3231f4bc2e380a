"""The jobs folder on disk: which names are jobs, a job's status.json, the lock one server holds on the folder, and
the cleanup policy (which finished jobs go, and uploads that never became jobs).

Plain functions of the folder; the runner (``app.jobs``) decides when they run, and tells the cleanup which jobs it
may touch (never one the runner holds, nor one queued or running).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

from util.io import DataError, load_json

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"
LOCK_FILE = ".lock"
MIN_KEEP_S = 3600  # a finished job is kept at least this long, whatever --max_jobs says
ORPHAN_AGE_S = 24 * 3600
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def is_job_id(text: str) -> bool:
    """True for the canonical form of a random (version 4) UUID, the only job ids the app makes."""
    return bool(_UUID_RE.match(text))


def job_dir(jobs_dir: Path, job_id: str) -> Path | None:
    """The folder of an existing job, or None for anything that is not one (never a path outside)."""
    if not is_job_id(job_id):
        return None
    folder = jobs_dir / job_id
    return folder if (folder / STATUS_FILE).is_file() else None


def read_status(jobs_dir: Path, job_id: str) -> dict | None:
    """A job's status.json, or None (no such job, or an unreadable status)."""
    folder = job_dir(jobs_dir, job_id)
    if folder is None:
        return None
    try:
        return load_json(folder / STATUS_FILE)
    except DataError:
        log.warning("unreadable status in job %s", job_id)
        return None


def saved_statuses(jobs_dir: Path) -> list[tuple[str, dict]]:
    """(job id, status) of every job folder whose status.json reads (a restarted runner's view of its jobs)."""
    found = []
    for folder in jobs_dir.iterdir():
        if not is_job_id(folder.name) or not (folder / STATUS_FILE).is_file():
            continue
        try:
            found.append((folder.name, load_json(folder / STATUS_FILE)))
        except DataError:
            continue
    return found


def lock_jobs_dir(jobs_dir: Path) -> IO:
    """Hold ``JOBS_DIR/.lock`` for this runner's life; DataError when another server holds it."""
    path = jobs_dir / LOCK_FILE
    handle = open(path, "a+")  # noqa: SIM115 - kept open (and locked) until stop()
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        owner = handle.read().strip() or "another process"
        handle.close()
        raise DataError(
            f"{jobs_dir}: another server is using this jobs folder ({owner}); stop it, or give this one its own "
            f"--jobs_dir"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
    handle.flush()
    return handle


def unlock_jobs_dir(handle: IO | None) -> None:
    """Let go of the lock :func:`lock_jobs_dir` took (None: nothing held)."""
    if handle is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def remove_old_jobs(
    jobs_dir: Path, finished_status: Callable[[str], dict | None], max_jobs: int, max_age_s: float
) -> list[str]:
    """Remove finished jobs older than ``max_age_s``, then the oldest finished beyond ``max_jobs``; their ids.

    ``finished_status(job_id)`` is a finished job's status, None for any job that must stay. Never a job finished
    less than MIN_KEEP_S ago; folders that vanish meanwhile (a delete, another cleanup) are skipped. An upload
    that never became a job (the server died while saving it) goes after ORPHAN_AGE_S."""
    finished = []
    now = time.time()
    for folder in list(jobs_dir.iterdir()):
        if not is_job_id(folder.name):
            continue
        status = finished_status(folder.name)
        if status is None and not (folder / STATUS_FILE).exists():
            with contextlib.suppress(FileNotFoundError):
                if now - folder.stat().st_mtime > ORPHAN_AGE_S:
                    shutil.rmtree(folder, ignore_errors=True)
            continue
        if status is not None:
            finished.append((status.get("finished") or status.get("created") or 0, folder))
    finished.sort(key=lambda item: item[0], reverse=True)
    removed = []
    for rank, (when, folder) in enumerate(finished):
        if now - when < MIN_KEEP_S:
            continue
        if rank >= max_jobs or now - when > max_age_s:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder.name)
    if removed:
        log.info("removed %d old job(s)", len(removed))
    return removed
