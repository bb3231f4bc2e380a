"""The web app's job runner: one folder per uploaded video, processed by a bounded pool of background workers.

A job folder ``JOBS_DIR/<uuid>/`` holds the upload under a generated name (``input.<ext>``), the inference outputs
(``output/``) and ``status.json``, rewritten atomically at every change of state and, throttled, on progress. The
folder alone describes the job, so a restarted server still shows finished results.

States (status.json's ``state``): ``queued`` -> ``running`` -> ``done`` | ``failed`` | ``interrupted``. ``stop()``
(the server's SIGINT / SIGTERM) interrupts the running jobs within a second or two (inference checks at every batch)
and leaves queued ones queued on disk; after a restart, queued jobs run again, and a job found ``running`` (the
server was killed) is ``interrupted``. An interrupted or failed job can be run again (``retry``); its partial outputs
are never served. Only one runner may use a jobs folder at a time (``JOBS_DIR/.lock``). Cleanup never removes a job
that is queued, running, or finished less than ``MIN_KEEP_S`` ago.

This module is the runner's state machine: each job the runner holds (queued here, or taken by a worker) is one
record (:class:`_Job`, with its :class:`State`) in one map under one lock, and every change of a job's state goes
through ``JobRunner._move``, which checks it against the table :data:`_MOVES` and does what it entails (status.json
written, a deleted job's folder removed, a worker's hold let go).

Each job runs ``model.inference.run_inference`` (the same function as ``inference_spot.py``) in a process of its own
(``app.worker``: spawned, so torch is never imported by the server): the server's threads only relay its progress
(``app.progress``: percentages and the ETA), so pages and status polls stay fast while a job runs, and a crash in a
decoder cannot take the server down. ``app.options`` turns a job's options into the ``InferenceOptions`` it runs,
and ``app.results`` its results into what the app shows.

Live jobs (``app.live``) run in the same slots (:meth:`JobRunner.start_live`): with ``workers`` N above 1 they hold
at most N - 1 of them, so that uploads always have one; with one worker a live job takes it when no upload is queued
or running, and uploads sent meanwhile wait until it is stopped. A live job never queues: it starts now or is
refused, with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from app.folders import (
    STATUS_FILE,
    is_job_id,
    job_dir,
    lock_jobs_dir,
    read_status,
    remove_old_jobs,
    saved_statuses,
    unlock_jobs_dir,
)
from app.options import resolved_slowmo
from app.progress import RENDER_TO_DETECT, STAGES, TIMING_FILE, JobInterrupted, RenderTiming, _Progress
from app.results import (
    RESULT_FILES,
    _annotated_kind,
    _events_document,
    _relative_files,
    _user_message,
    _video_name,
    served_file,
)
from app.worker import WorkerPool, WorkerProcess
from util.io import DataError, store_json

__all__ = [  # what the app and the tests import from here (some of it lives in the rooms above)
    "EVENTS_FILE",
    "LABELS_UPLOAD",
    "RENDER_TO_DETECT",
    "RESULT_FILES",
    "RETRY_STATES",
    "STATUS_FILE",
    "TIMING_FILE",
    "JobInterrupted",
    "JobRunner",
    "State",
    "WorkerProcess",
    "_Progress",
    "is_job_id",
]

log = logging.getLogger(__name__)

OUTPUT_DIR = "output"
EVENTS_FILE = "events.json"  # the events with their time in the annotated video, for the result page
UPLOAD_STEM = "input"
LABELS_UPLOAD = "Labels-ball.json"  # the upload's ground truth, when one came with it
INTERRUPTED_MESSAGE = "the server stopped while this video was being processed; run it again"


class State(Enum):
    """Where a job stands. The value is what status.json records as ``state``; DELETING is never written."""

    QUEUED = "queued"  # waiting for a worker (after a stop, on disk: it runs after the next start)
    RUNNING = "running"  # a worker runs it
    DONE = "done"  # finished: its results are served
    FAILED = "failed"  # finished with an error the user reads; it can run again
    INTERRUPTED = "interrupted"  # stopped before its end (the server stopped); it can run again
    DELETING = "deleting"  # deleted while a worker holds it: it stops; its folder goes when let go


ACTIVE_STATES = (State.QUEUED.value, State.RUNNING.value)
RETRY_STATES = (State.FAILED.value, State.INTERRUPTED.value)


@dataclass(eq=False)
class _Job:
    """A job this runner holds: queued here, or taken by a worker (until the worker lets go of it)."""

    state: State
    status: dict  # what status.json holds (a DELETING job's last one: nothing more is written)
    worker: threading.Event | None = None  # while a worker holds the job; set when the worker lets go


# Every legal move: (where the job stands, what happens) -> where it goes. None as the origin: a job this runner
# does not hold (its folder alone describes it); None as the goal: the runner lets go of it, and a "delete" (or the
# release of a DELETING job) removes its folder. A move not listed is refused: a report from a job deleted meanwhile,
# a retry of a job already queued, a second delete. Once the runner stops, no job is queued or started.
_HELD_BY_A_WORKER = (State.RUNNING, State.DONE, State.FAILED, State.INTERRUPTED)
_MOVES: dict[tuple[State | None, str], State | None] = {
    (None, "create"): State.QUEUED,  # a new upload
    (None, "recover"): State.QUEUED,  # found queued on disk when the runner starts
    (None, "lost"): State.INTERRUPTED,  # found running on disk when the runner starts (written, not held)
    (None, "retry"): State.QUEUED,  # failed or interrupted, its upload still there: it runs again
    (None, "delete"): None,  # finished (or gone): its folder goes now
    (State.QUEUED, "delete"): None,  # its folder goes now
    (State.QUEUED, "start"): State.RUNNING,  # a worker takes it
    (State.RUNNING, "progress"): State.RUNNING,  # its stage, percentage and ETA change
    (State.RUNNING, "done"): State.DONE,
    (State.RUNNING, "fail"): State.FAILED,
    (State.RUNNING, "interrupt"): State.INTERRUPTED,  # the server stops (stop(): a stuck worker's job too)
    **{(held, "delete"): State.DELETING for held in _HELD_BY_A_WORKER},  # it stops, then goes when let go
    **{(held, "release"): None for held in (*_HELD_BY_A_WORKER, State.DELETING)},  # its worker lets go
}
_EVENTS = frozenset(event for _, event in _MOVES)
_NOT_WHILE_STOPPING = frozenset({"create", "recover", "retry", "start"})


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
        if workers < 1 or max_jobs < 1:
            raise ValueError(f"workers and max_jobs must be at least 1 (got {workers} and {max_jobs})")
        self.jobs_dir = Path(jobs_dir)
        self.model_dir = Path(model_dir)
        self.max_jobs = max_jobs
        self.max_age_s = max_age_s
        self.inference_kwargs = dict(inference_kwargs or {})
        self._lock = threading.RLock()  # the one lock over the jobs (retry re-enters it: its check and claim)
        self._cleanup_lock = threading.Lock()  # one cleanup at a time (it never holds the jobs' lock long)
        self._jobs: dict[str, _Job] = {}  # the jobs this runner holds, in the order they were queued
        self._stopping = False
        self.workers = workers
        self._live = 0  # live jobs holding a slot (app.live)
        self._stop_hooks: list[Callable[[], None]] = []  # told first when the runner stops (app.live)
        self._workers = WorkerPool()  # one job process per thread of the pool
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self._lock_handle = lock_jobs_dir(self.jobs_dir)
        # what the ETA learned from this server's finished jobs, kept in the jobs folder across restarts
        self.timing = RenderTiming(self.jobs_dir / TIMING_FILE)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="spot-job")
        # At interpreter exit, before the executor joins its threads: stop, or a running job would be waited for.
        threading._register_atexit(self._at_exit)
        self._recover()
        self.cleanup()

    @property
    def render_ratio(self) -> dict[str, float]:
        """Annotated kind -> rendering time / detection time of this server's last finished job of that kind."""
        return self.timing.ratios

    # ---- folders and status
    def job_dir(self, job_id: str) -> Path | None:
        """The folder of an existing job, or None for anything that is not one (never a path outside)."""
        return job_dir(self.jobs_dir, job_id)

    def status(self, job_id: str) -> dict | None:
        """The job's current status (from memory while this runner holds it, else from status.json), or None."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                status = dict(job.status)
                if job.state is State.QUEUED:
                    queued = [other for other in self._jobs.values() if other.state is State.QUEUED]
                    status["queue_position"] = queued.index(job) + 1  # (_Job compares by identity)
                    if self._live:  # the page says why it waits: a live job runs until it is stopped
                        status["live_jobs"] = self._live
                return status
        return self.status_on_disk(job_id)

    def status_on_disk(self, job_id: str) -> dict | None:
        return read_status(self.jobs_dir, job_id)

    def result_file(self, job_id: str, name: str) -> Path | None:
        """Path of a finished job's result file ``name`` (one of RESULT_FILES), only if it lies in the job folder."""
        status = self.status(job_id)
        folder = self.job_dir(job_id)
        return None if status is None or folder is None else served_file(folder, status, name)

    def _write(self, job_id: str, status: dict) -> None:
        store_json(self.jobs_dir / job_id / STATUS_FILE, status)

    def _move(
        self, job_id: str, event: str, *, status: dict | None = None, persist: bool = True, **changes: Any
    ) -> dict | None:
        """The one place a job changes state: ``event`` (a key of :data:`_MOVES`) happens to it.

        ``changes`` go into its status (``status``: the whole status of a job this runner does not hold yet),
        status.json is written when ``persist`` (never for DELETING, nor for a job let go), a job that leaves deleted
        takes its folder along, and a worker that lets go is signalled (stop() waits for it). Returns the job's new
        status, or None when the move is refused (not in the table, or a start while the runner stops)."""
        if event not in _EVENTS:
            raise ValueError(f"no job event {event!r}")
        with self._lock:
            job = self._jobs.get(job_id)
            origin = None if job is None else job.state
            if (origin, event) not in _MOVES or (self._stopping and event in _NOT_WHILE_STOPPING):
                return None
            goal = _MOVES[origin, event]
            if job is None:  # a new record, kept only when its goal is held
                job = _Job(State.QUEUED, dict(status or {}))
            job.status.update(changes)
            if goal is not None and goal is not State.DELETING:
                job.status["state"] = goal.value
            snapshot = dict(job.status)
            released = None
            if event == "release":
                released, job.worker = job.worker, None
            elif event == "start":
                job.worker = threading.Event()
            if goal is not None and (goal is State.QUEUED or job.worker is not None):
                job.state = goal
                self._jobs[job_id] = job
            else:
                self._jobs.pop(job_id, None)
            remove_folder = goal is None and (event == "delete" or origin is State.DELETING)
        if persist and goal is not None and goal is not State.DELETING:
            self._write(job_id, snapshot)
        if remove_folder:
            shutil.rmtree(self.jobs_dir / job_id, ignore_errors=True)
        if released is not None:
            released.set()
        return snapshot

    def progressed(self, job_id: str, persist: bool = True, **fields: Any) -> None:
        """A running job's report from its :class:`_Progress` (stage, stages, percent, eta_s): shown at once,
        written to status.json when ``persist``; dropped when the job is no longer running."""
        self._move(job_id, "progress", persist=persist, **fields)

    def _holds(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._jobs

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
        if self._move(job_id, "create", status=status) is None:
            shutil.rmtree(folder, ignore_errors=True)
            raise RuntimeError("the server is stopping: it takes no new job")
        self._submit(job_id)
        self.cleanup()
        return job_id

    def _submit(self, job_id: str) -> None:
        self._pool.submit(self._run, job_id)

    def can_retry(self, job_id: str, status: dict) -> bool:
        folder = self.job_dir(job_id)
        return (
            status.get("state") in RETRY_STATES
            and folder is not None
            and (folder / str(status.get("upload"))).is_file()
        )

    def retry(self, job_id: str) -> dict | None:
        """Queue an interrupted or failed job again (its upload is still there); its new status, or None."""
        with self._lock:  # the read, the check and the claim as one step: a second retry sees the job held
            status = self.status_on_disk(job_id)
            if status is None or not self.can_retry(job_id, status):
                return None
            fresh = {
                k: v for k, v in status.items() if k not in ("started", "finished", "files", "queue_position")
            }
            fresh.update(stage=None, percent=0.0, eta_s=None, error=None, retried=_now())
            fresh["stages"] = {s: {"done": 0, "total": 0} for s in STAGES}
            snapshot = self._move(job_id, "retry", status=fresh, persist=False)  # None: held, or stopping
        if snapshot is None:
            return None
        folder = self.jobs_dir / job_id
        shutil.rmtree(folder / OUTPUT_DIR, ignore_errors=True)
        (folder / EVENTS_FILE).unlink(missing_ok=True)
        if self._holds(job_id):  # not deleted meanwhile
            self._write(job_id, snapshot)
        self._submit(job_id)
        return snapshot

    def delete(self, job_id: str) -> bool:
        """Remove a job: at once when queued or finished; a running one stops at its next batch, then goes."""
        if self.job_dir(job_id) is None:
            return False
        self._move(job_id, "delete")  # refused only for a job already going
        return True

    # ---- running
    def _run(self, job_id: str) -> None:
        try:
            if not (self.jobs_dir / job_id).is_dir():
                self._move(job_id, "delete")  # its folder went away: nothing to run, nothing to report
                return
            status = self._move(job_id, "start", started=_now())
            if status is not None:  # None: deleted before its turn, or stopping (it stays queued on disk)
                self._process(job_id, status)
        except Exception as e:  # noqa: BLE001 - e.g. a status write on a full disk: never leave it "running"
            log.exception("job %s", job_id)
            with contextlib.suppress(Exception):
                self._fail(job_id, f"processing failed unexpectedly ({type(e).__name__}: {e})")
        finally:
            self._move(job_id, "release")  # refused when this worker never took it

    @property
    def stopping(self) -> bool:
        """True once the server stops (stop()): running jobs are interrupted, none is started."""
        return self._stopping

    def interrupted(self, job_id: str) -> bool:
        """True when a running job must stop (the server stops, or the job was deleted)."""
        with self._lock:
            job = self._jobs.get(job_id)
            return self._stopping or (job is not None and job.state is State.DELETING)

    def _process(self, job_id: str, status: dict) -> None:
        folder = self.jobs_dir / job_id
        options = dict(status.get("options") or {})
        options["annotated"] = _annotated_kind(
            options.get("annotated", "auto"), folder / str(status.get("upload"))
        )
        if "slowmo_factor" in options:  # "auto": off in a highlight reel, 3x in the whole video
            options["slowmo_factor"] = resolved_slowmo(options["slowmo_factor"], options["annotated"])
        status = {**status, "options": options}
        self._move(job_id, "progress", options=options)
        progress = _Progress(self, job_id, status["started"], options["annotated"])
        try:
            result = self._call_inference(folder, status, progress)
            files = _relative_files(result, folder)
            if "video" not in files and (status.get("options") or {}).get("annotated") != "none":
                raise DataError("no annotated video was written")
            self._learn_render_ratio(progress)
            self._move(
                job_id,
                "done",
                finished=_now(),
                percent=100.0,
                eta_s=0,
                stage=None,
                files=files,
                fps=result.get("fps"),
                num_frames=result.get("num_frames"),
                num_events=len(result.get("events") or []),
            )
        except JobInterrupted:
            shutil.rmtree(folder / OUTPUT_DIR, ignore_errors=True)  # partial outputs are never served
            self._move(job_id, "interrupt", finished=_now(), error=INTERRUPTED_MESSAGE, eta_s=None)
        except DataError as e:
            self._fail(job_id, _user_message(str(e), folder, status))
        except Exception as e:  # a bug or an unexpected failure: the job fails, the server keeps serving
            log.exception("job %s failed", job_id)
            reason = f"processing failed unexpectedly ({type(e).__name__}: {e})"
            self._fail(job_id, _user_message(reason, folder, status))
        finally:
            if not self._stopping:
                self.cleanup()

    def _call_inference(self, folder: Path, status: dict, progress: _Progress) -> dict:
        from app.options import inference_options  # the job's options -> step 5's one options type

        if not (self.model_dir / "config.json").is_file():
            raise DataError(
                f"no model in {self.model_dir}: run `make demo` or start the app with --model_dir"
            )
        options = status.get("options") or {}
        labels = folder / LABELS_UPLOAD if options.get("labels") else None
        chosen = inference_options(
            options, folder / status["upload"], _video_name(status), labels, **self.inference_kwargs
        )
        kwargs = {"options": chosen}  # the worker calls run_inference(model_dir, output_dir, **kwargs)
        result = self._worker_process().run(self.model_dir, folder / OUTPUT_DIR, kwargs, progress)
        document = _events_document(result)
        # What step 5 said about the input (another aspect ratio, ...), with the upload's name for the server's path.
        document["notes"] = [_user_message(str(n), folder, status) for n in result.get("notes") or []]
        store_json(folder / EVENTS_FILE, document)
        return result

    def _learn_render_ratio(self, progress: _Progress) -> None:
        self.timing.learn(progress)

    def expected_render_ratio(self, annotated: str) -> float:
        """Rendering time / detection time expected for a job making ``annotated`` (``RenderTiming.expected``)."""
        return self.timing.expected(annotated)

    def _worker_process(self) -> WorkerProcess:
        """The job process of the calling pool thread (one per --workers slot)."""
        return self._workers.current()

    def _fail(self, job_id: str, reason: str) -> None:
        self._move(job_id, "fail", finished=_now(), error=reason, eta_s=None)

    # ---- live jobs: they take slots of the same pool (app.live)
    def live_slots(self) -> int:
        """The slots live jobs may hold together: all but one, so that uploads never starve; the only one."""
        return max(1, self.workers - 1)

    def start_live(self, run: Callable[[WorkerProcess], None]) -> str | None:
        """Start ``run(job_process)`` on a slot now when the rule allows a live job one; else say why not (a live
        job never queues)."""
        with self._lock:
            if self._stopping:
                return "the server is stopping: it takes no new job"
            why = self._no_live_slot()
            if why is not None:
                return why
            self._live += 1
            self._pool.submit(self._run_live, run)
        return None

    def _no_live_slot(self) -> str | None:
        """Why the slot rule gives a new live job no slot now, or None (under the lock)."""
        more = "start the server with " + ("--workers 2" if self.workers == 1 else "more --workers")
        if self._live >= self.live_slots():
            if self.workers == 1:
                return f"a live feed is watched in the only worker slot: stop it first, or {more}"
            return (f"live feeds may hold {self.live_slots()} of the {self.workers} worker slots at once (one stays "
                    f"for uploads), and {self._live} are watched: stop one, or {more}")  # fmt: skip
        if len(self._jobs) + self._live >= self.workers:
            if self.workers == 1:
                return f"the only worker slot is busy with an upload: start it again once that is done, or {more}"
            return (f"all {self.workers} worker slots are busy (uploads and live feeds): start it again once one is "
                    f"free, or {more}")  # fmt: skip
        return None

    def _run_live(self, run: Callable[[WorkerProcess], None]) -> None:
        try:
            run(self._worker_process())
        except Exception:  # noqa: BLE001 - the live runner reports its own failures; never lose the slot
            log.exception("live job")
        finally:
            with self._lock:
                self._live -= 1

    def on_stop(self, hook: Callable[[], None]) -> None:
        """Call ``hook()`` first when the runner stops or shuts down (the live jobs are asked to stop)."""
        self._stop_hooks.append(hook)

    def _tell_stop_hooks(self) -> None:
        for hook in self._stop_hooks:
            try:
                hook()
            except Exception:  # noqa: BLE001 - a stop goes on whatever a hook does
                log.exception("stop hook")

    # ---- restart and cleanup
    def _recover(self) -> None:
        """After a restart: running jobs lost their worker (interrupted, to run again); queued ones queue again."""
        queued = []
        for job_id, status in saved_statuses(self.jobs_dir):
            if status.get("state") == State.RUNNING.value:
                shutil.rmtree(self.jobs_dir / job_id / OUTPUT_DIR, ignore_errors=True)
                changes = {"finished": _now(), "eta_s": None, "error": INTERRUPTED_MESSAGE}
                self._move(job_id, "lost", status=status, **changes)
            elif status.get("state") == State.QUEUED.value:
                queued.append(status)
        for status in sorted(queued, key=lambda s: s.get("created", 0)):
            if self._move(status["id"], "recover", status=status, persist=False) is not None:
                self._submit(status["id"])

    def cleanup(self) -> list[str]:
        """Remove finished jobs older than max_age_s, then the oldest finished beyond max_jobs; returns their ids.

        Never a queued or running job, nor one finished less than MIN_KEEP_S ago (``app.folders``)."""
        with self._cleanup_lock:
            return remove_old_jobs(self.jobs_dir, self._finished_status, self.max_jobs, self.max_age_s)

    def _finished_status(self, job_id: str) -> dict | None:
        """A finished job's status, for the cleanup; None for a job this runner holds, or one queued or running."""
        status = None if self._holds(job_id) else self.status(job_id)
        return None if status is None or status.get("state") in ACTIVE_STATES else status

    def stop(self, timeout_s: float = 4.0) -> bool:
        """Stop for a server shutdown: queued jobs stay queued on disk, running ones are interrupted (they stop at
        their next batch); waits up to ``timeout_s`` for them. True when every worker let go in time. Live jobs
        are interrupted too (their events written so far are kept)."""
        with self._lock:
            self._stopping = True
            waiting = {job_id: job.worker for job_id, job in self._jobs.items() if job.worker is not None}
        self._tell_stop_hooks()
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._workers.kill_all()  # the running jobs' processes go at once; their threads mark them interrupted
        deadline = time.monotonic() + timeout_s
        clean = all(event.wait(max(0.0, deadline - time.monotonic())) for event in waiting.values())
        for job_id in waiting:  # a worker stuck in a long call: its job is interrupted all the same
            self._move(job_id, "interrupt", finished=_now(), error=INTERRUPTED_MESSAGE)
        self._workers.kill_all()
        self._release_lock()
        return clean

    def _at_exit(self) -> None:
        if not self._stopping:
            self.stop(timeout_s=2.0)

    def _release_lock(self) -> None:
        handle, self._lock_handle = getattr(self, "_lock_handle", None), None
        unlock_jobs_dir(handle)

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking jobs; with ``wait`` let queued and running ones finish first (tests; live jobs are asked to
        stop)."""
        self._tell_stop_hooks()
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
        self._workers.kill_all()
        self._release_lock()
