"""The web app's job runner: one folder per uploaded video, processed by a bounded pool of background workers.

A job folder ``JOBS_DIR/<uuid>/`` holds the upload under a generated name (``input.<ext>``), the inference outputs
(``output/``) and ``status.json``, rewritten atomically at every change of state and, throttled, on progress. The
folder alone describes the job, so a restarted server still shows finished results.

States: ``queued`` -> ``running`` -> ``done`` | ``failed`` | ``interrupted``. ``stop()`` (the server's SIGINT /
SIGTERM) interrupts the running jobs within a second or two (inference checks at every batch) and leaves queued ones
queued on disk; after a restart, queued jobs run again, and a job found ``running`` (the server was killed) is
``interrupted``. An interrupted or failed job can be run again (``retry``); its partial outputs are never served.
Only one runner may use a jobs folder at a time (``JOBS_DIR/.lock``). Cleanup never removes a job that is queued,
running, or finished less than ``MIN_KEEP_S`` ago.

Each job runs ``model.inference.run_inference`` (the same function as ``inference_spot.py``) in a process of its own
(spawned: torch is never imported by the server): the server's threads only relay its progress, so pages and status
polls stay fast while a job runs, and a crash in a decoder cannot take the server down. The process is reused from
job to job (torch and the model's code are imported once); interrupting a job kills it (the next job starts anew).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import multiprocessing
import os
import re
import shutil
import threading
import time
import traceback
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
HIGHLIGHT_SPAN_S = 5.0  # a highlight reel keeps each action +- this many seconds
AUTO_HIGHLIGHTS_AFTER_S = 600  # "auto": uploads longer than this get a highlight reel, not the whole match
UPLOAD_STEM = "input"
LABELS_UPLOAD = "Labels-ball.json"  # the upload's ground truth, when one came with it
STAGES = ("decoding", "detecting", "rendering")
# Share of the whole job each stage stands for, to turn per-stage progress into one percentage, by the kind of
# annotated video; and the time rendering takes against detection (the ETA's guess until rendering starts: it
# decodes the video again at its own resolution, and encodes all of it, a highlight reel, or nothing).
STAGE_WEIGHTS = {
    "full": {"decoding": 0.05, "detecting": 0.5, "rendering": 0.45},
    "highlights": {"decoding": 0.05, "detecting": 0.8, "rendering": 0.15},
    "none": {"decoding": 0.05, "detecting": 0.95, "rendering": 0.0},
}
# Measured by benchmarks/bench_app.py on a 2-core CPU (bf16 model, 224p): a 10-minute match rendered whole took 1.15x
# its detection time, a 60-minute highlight reel 1.42x (ball actions are dense, ~1,700 a game: their +-5 s cover most
# of a match, and the reel's slow motion adds frames). The server learns its own ratios from its finished jobs
# (``JobRunner.render_ratio``, kept in TIMING_FILE).
RENDER_TO_DETECT = {"full": 1.15, "highlights": 1.42, "none": 0.0}
ACTIVE_STATES = ("queued", "running")
RETRY_STATES = ("failed", "interrupted")
MIN_KEEP_S = 3600  # a finished job is kept at least this long, whatever --max_jobs says
ORPHAN_AGE_S = 24 * 3600
LOCK_FILE = ".lock"
TIMING_FILE = "timing.json"  # what the server learned about its jobs' stage times (the ETA's guesses)
INTERRUPTED_MESSAGE = "the server stopped while this video was being processed; run it again"
PROGRESS_WRITE_INTERVAL_S = 0.3
# The files of a finished job the app serves, by name (keys of run_inference's result); nothing else is served.
RESULT_FILES = ("video", "predictions", "events_csv", "results_spotting", "timeline", "scores")
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def is_job_id(text: str) -> bool:
    """True for the canonical form of a random (version 4) UUID, the only job ids the app makes."""
    return bool(_UUID_RE.match(text))


def _now() -> float:
    return time.time()


class JobInterrupted(Exception):
    """Raised inside a running job (from its progress callback) when the server stops or the job is deleted."""


def _lock_jobs_dir(jobs_dir: Path):
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
        self._lock = threading.Lock()
        self._cleanup_lock = threading.Lock()
        self._live: dict[str, dict] = {}  # status of the jobs this process queued, newest state first
        self._queue: list[str] = []  # queued job ids, in order
        self._cancel: set[str] = set()  # running jobs asked to stop (deleted)
        self._deleted: set[str] = set()  # jobs to remove once their worker lets go of them
        self._running: dict[str, threading.Event] = {}  # running job -> set when its worker is done with it
        self._stopping = False
        self._local = threading.local()
        self._processes: list[WorkerProcess] = []
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        self._lock_handle = _lock_jobs_dir(self.jobs_dir)
        # annotated kind -> rendering time / detection time of the last finished job (the ETA's guess), kept in
        # the jobs folder so that a restarted server keeps what it learned
        self.render_ratio: dict[str, float] = _load_timing(self.jobs_dir / TIMING_FILE)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="spot-job")
        # At interpreter exit, before the executor joins its threads: stop, or a running job would be waited for.
        threading._register_atexit(self._at_exit)
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
        return self.status_on_disk(job_id)

    def status_on_disk(self, job_id: str) -> dict | None:
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

    def can_retry(self, job_id: str, status: dict) -> bool:
        folder = self.job_dir(job_id)
        return (
            status.get("state") in RETRY_STATES
            and folder is not None
            and (folder / str(status.get("upload"))).is_file()
        )

    def retry(self, job_id: str) -> dict | None:
        """Queue an interrupted or failed job again (its upload is still there); its new status, or None."""
        with self._lock:
            busy = (
                job_id in self._live
                or job_id in self._queue
                or job_id in self._running
                or job_id in self._deleted
            )
            if busy or self._stopping:
                return None
            status = self.status_on_disk(job_id)
            if status is None or not self.can_retry(job_id, status):
                return None
            self._live[job_id] = {"id": job_id, "state": "queued"}  # claimed: a second retry now sees it busy
        folder = self.jobs_dir / job_id
        shutil.rmtree(folder / OUTPUT_DIR, ignore_errors=True)
        (folder / EVENTS_FILE).unlink(missing_ok=True)
        fresh = {
            k: v for k, v in status.items() if k not in ("started", "finished", "files", "queue_position")
        }
        fresh.update(state="queued", stage=None, percent=0.0, eta_s=None, error=None, retried=_now())
        fresh["stages"] = {s: {"done": 0, "total": 0} for s in STAGES}
        snapshot = self._update(job_id, **fresh)
        self._submit(job_id)
        return snapshot

    def delete(self, job_id: str) -> bool:
        """Remove a job: at once when queued or finished; a running one stops at its next batch, then goes."""
        folder = self.job_dir(job_id)
        if folder is None:
            return False
        with self._lock:
            if job_id in self._queue:
                self._queue.remove(job_id)
            running = job_id in self._running
            if running:
                self._cancel.add(job_id)
                self._deleted.add(job_id)
            if not running:
                self._live.pop(job_id, None)
        if not running:
            shutil.rmtree(folder, ignore_errors=True)
        return True

    # ---- running
    def _run(self, job_id: str) -> None:
        with self._lock:
            if job_id in self._queue:
                self._queue.remove(job_id)
            status = dict(self._live.get(job_id) or {})
            if self._stopping or not status:
                return  # stopping: it stays queued on disk and runs after the next start
            self._running[job_id] = done_event = threading.Event()
        try:
            if (self.jobs_dir / job_id).is_dir():
                self._process(job_id, status)
        except Exception as e:  # noqa: BLE001 - e.g. a status write on a full disk: never leave it "running"
            log.exception("job %s", job_id)
            with contextlib.suppress(Exception):
                self._fail(job_id, f"processing failed unexpectedly ({type(e).__name__}: {e})")
        finally:
            with self._lock:
                self._running.pop(job_id, None)
                self._cancel.discard(job_id)
                deleted = job_id in self._deleted
                self._deleted.discard(job_id)
                if (self._live.get(job_id) or {}).get("state") in ACTIVE_STATES and not self._stopping:
                    self._live.pop(job_id, None)  # its folder went away (cleanup, delete): nothing to report
            if deleted:
                self._live.pop(job_id, None)
                shutil.rmtree(self.jobs_dir / job_id, ignore_errors=True)
            done_event.set()

    def interrupted(self, job_id: str) -> bool:
        """True when a running job must stop (the server stops, or the job was deleted)."""
        return self._stopping or job_id in self._cancel

    def _process(self, job_id: str, status: dict) -> None:
        start = _now()
        self._update(job_id, state="running", started=start)
        folder = self.jobs_dir / job_id
        options = status.get("options") or {}
        options["annotated"] = _annotated_kind(
            options.get("annotated", "auto"), folder / str(status.get("upload"))
        )
        status = {**status, "options": options}
        self._update(job_id, options=options)
        progress = _Progress(self, job_id, start, options["annotated"])
        try:
            result = self._call_inference(folder, status, progress)
            files = _relative_files(result, folder)
            if "video" not in files and (status.get("options") or {}).get("annotated") != "none":
                raise DataError("no annotated video was written")
            self._learn_render_ratio(progress)
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
        except JobInterrupted:
            shutil.rmtree(folder / OUTPUT_DIR, ignore_errors=True)  # partial outputs are never served
            self._update(job_id, state="interrupted", finished=_now(), error=INTERRUPTED_MESSAGE, eta_s=None)
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
        options = status.get("options") or {}
        annotated = options.get("annotated", "full")
        kwargs = dict(
            video=folder / status["upload"],
            video_name=_video_name(status),
            score_threshold=float(options["threshold"]) if "threshold" in options else None,
            labels=folder / LABELS_UPLOAD if options.get("labels") else "none",
            create_video=annotated != "none",
            highlights_s=HIGHLIGHT_SPAN_S if annotated == "highlights" else None,
            highlight_classes=options.get("highlight_classes") if annotated == "highlights" else None,
            highlight_team=options.get("highlight_team") if annotated == "highlights" else None,
            slowmo_factor=int(options.get("slowmo_factor", 1)),
            slowmo_span=SLOWMO_SPAN_S,
        )
        kwargs.update(self.inference_kwargs)
        if not (self.model_dir / "config.json").is_file():
            raise DataError(
                f"no model in {self.model_dir}: run `make demo` or start the app with --model_dir"
            )
        result = self._worker_process().run(self.model_dir, folder / OUTPUT_DIR, kwargs, progress)
        store_json(folder / EVENTS_FILE, _events_document(result))
        return result

    def _learn_render_ratio(self, progress: _Progress) -> None:
        times = progress.detect_render_seconds()
        if times is not None and times[0] > 0 and progress.annotated != "none":
            with self._lock:
                self.render_ratio[progress.annotated] = times[1] / times[0]
                learned = dict(self.render_ratio)
            try:
                store_json(self.jobs_dir / TIMING_FILE, {"render_to_detect": learned})
            except OSError as e:  # a full disk loses a better ETA, not the job
                log.warning("could not record the job's timing (%s)", e)

    def expected_render_ratio(self, annotated: str) -> float:
        """Rendering time / detection time expected for a job making ``annotated``: learned from this server's
        last job of that kind; else :data:`RENDER_TO_DETECT`'s guess for it, scaled by how this server's job of
        another kind compared with that kind's guess (the machine and model make both kinds faster or slower)."""
        if annotated == "none":
            return 0.0
        learned = self.render_ratio
        if annotated in learned:
            return learned[annotated]
        others = [(k, v) for k, v in learned.items() if k != "none" and RENDER_TO_DETECT.get(k)]
        if not others:
            return RENDER_TO_DETECT[annotated]
        kind, value = others[-1]
        return RENDER_TO_DETECT[annotated] * value / RENDER_TO_DETECT[kind]

    def _worker_process(self) -> WorkerProcess:
        """The job process of the calling pool thread (one per --workers slot)."""
        worker = getattr(self._local, "worker", None)
        if worker is None:
            worker = self._local.worker = WorkerProcess()
            with self._lock:
                self._processes.append(worker)
        return worker

    def _fail(self, job_id: str, reason: str) -> None:
        self._update(job_id, state="failed", finished=_now(), error=reason, eta_s=None)

    # ---- restart and cleanup
    def _recover(self) -> None:
        """After a restart: running jobs lost their worker (interrupted, to run again); queued ones queue again."""
        queued = []
        for folder in self.jobs_dir.iterdir():
            if not is_job_id(folder.name) or not (folder / STATUS_FILE).is_file():
                continue
            try:
                status = load_json(folder / STATUS_FILE)
            except DataError:
                continue
            if status.get("state") == "running":
                shutil.rmtree(folder / OUTPUT_DIR, ignore_errors=True)
                status.update(state="interrupted", finished=_now(), eta_s=None, error=INTERRUPTED_MESSAGE)
                self._write(folder.name, status)
            elif status.get("state") == "queued":
                queued.append(status)
        for status in sorted(queued, key=lambda s: s.get("created", 0)):
            with self._lock:
                self._live[status["id"]] = status
            self._submit(status["id"])

    def cleanup(self) -> list[str]:
        """Remove finished jobs older than max_age_s, then the oldest finished beyond max_jobs; returns their ids.

        Never a queued or running job, nor one finished less than MIN_KEEP_S ago; folders that vanish meanwhile
        (a delete, another thread's cleanup) are skipped."""
        with self._cleanup_lock:
            finished = []
            now = _now()
            for folder in list(self.jobs_dir.iterdir()):
                if not is_job_id(folder.name):
                    continue
                status = self.status(folder.name)
                if status is None and not (folder / STATUS_FILE).exists():
                    # An upload that never became a job (the server died while saving it).
                    with contextlib.suppress(FileNotFoundError):
                        if now - folder.stat().st_mtime > ORPHAN_AGE_S:
                            shutil.rmtree(folder, ignore_errors=True)
                    continue
                if status is None or status.get("state") in ACTIVE_STATES or folder.name in self._running:
                    continue
                finished.append((status.get("finished") or status.get("created") or 0, folder))
            finished.sort(key=lambda item: item[0], reverse=True)
            removed = []
            for rank, (when, folder) in enumerate(finished):
                if now - when < MIN_KEEP_S:
                    continue
                if rank >= self.max_jobs or now - when > self.max_age_s:
                    shutil.rmtree(folder, ignore_errors=True)
                    removed.append(folder.name)
            if removed:
                log.info("removed %d old job(s)", len(removed))
            return removed

    def stop(self, timeout_s: float = 4.0) -> bool:
        """Stop for a server shutdown: queued jobs stay queued on disk, running ones are interrupted (they stop at
        their next batch); waits up to ``timeout_s`` for them. True when every worker let go in time."""
        with self._lock:
            self._stopping = True
            waiting = dict(self._running)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._end_processes()  # the running jobs' processes go at once; their threads mark them interrupted
        deadline = time.monotonic() + timeout_s
        clean = all(event.wait(max(0.0, deadline - time.monotonic())) for event in waiting.values())
        for job_id in waiting:  # a worker stuck in a long call: its job is interrupted all the same
            status = self.status(job_id)
            if status is not None and status.get("state") == "running":
                self._update(job_id, state="interrupted", finished=_now(), error=INTERRUPTED_MESSAGE)
        self._end_processes()
        self._release_lock()
        return clean

    def _at_exit(self) -> None:
        if not self._stopping:
            self.stop(timeout_s=2.0)

    def _end_processes(self) -> None:
        with self._lock:
            processes, self._processes = self._processes, []
        for worker in processes:
            worker.kill()

    def _release_lock(self) -> None:
        handle, self._lock_handle = getattr(self, "_lock_handle", None), None
        if handle is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    def shutdown(self, wait: bool = True) -> None:
        """Stop taking jobs; with ``wait`` let queued and running ones finish first (tests)."""
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
        self._end_processes()
        self._release_lock()


PROGRESS_SEND_INTERVAL_S = 0.1
_MP = multiprocessing.get_context("spawn")  # never fork a threaded server


def _plain(value: Any) -> Any:
    """run_inference's result as plain picklable data (paths as strings, the post-processing as a dict)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


def _worker_main(conn) -> None:
    """A job process: runs the jobs it is sent (``(model_dir, output_dir, kwargs)``; None ends it), sending back
    each one's progress and its result (or error). torch and the model's code are imported once, by the first.
    Ctrl-C and a service manager's SIGTERM reach the whole process group: the server decides when this process ends
    (and kills it), so it ignores both."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        model_dir, output_dir, kwargs = job
        last = [0.0, None]

        def progress(stage: str, done: int, total: int, last=last) -> None:
            now = time.monotonic()
            if stage != last[1] or done >= total or now - last[0] >= PROGRESS_SEND_INTERVAL_S:
                last[:] = [now, stage]
                conn.send(("progress", stage, done, total))

        try:
            from model.inference import run_inference

            result = run_inference(model_dir, output_dir, progress=progress, **kwargs)
            conn.send(("done", _plain(result)))
        except DataError as e:
            conn.send(("data_error", str(e)))
        except Exception as e:  # noqa: BLE001 - reported to the server, which fails the job
            conn.send(("error", f"{type(e).__name__}: {e}", traceback.format_exc()[-3000:]))


class WorkerProcess:
    """One job process, started on first use and reused for the next jobs; terminated when a job is interrupted
    (the next job starts a fresh one) and when the runner stops."""

    def __init__(self) -> None:
        self.process = None
        self.conn = None

    def _start(self) -> None:
        parent, child = _MP.Pipe()
        self.process = _MP.Process(target=_worker_main, args=(child,), daemon=True, name="spot-inference")
        self.process.start()
        child.close()
        self.conn = parent

    def run(self, model_dir: Path, output_dir: Path, kwargs: dict, progress: Callable) -> dict:
        """run_inference in the process; ``progress`` is called here with its reports (it may raise
        JobInterrupted: the process is terminated). Errors come back as DataError / RuntimeError."""
        if self.process is None or not self.process.is_alive():
            self._start()
        self.conn.send((str(model_dir), str(output_dir), kwargs))
        finished = False
        try:
            while True:
                try:
                    ready = self.conn.poll(0.2)
                    message = self.conn.recv() if ready else None
                except (EOFError, OSError):  # the process is gone (killed by stop(), or crashed)
                    self._died(progress)
                if message is None:
                    progress.check()  # interrupted while the process computes between two reports
                    if not self.process.is_alive():
                        self._died(progress)
                    continue
                kind, *rest = message
                if kind == "progress":
                    progress(*rest)
                    continue
                finished = True
                if kind == "done":
                    return rest[0]
                if kind == "data_error":
                    raise DataError(rest[0])
                log.error("inference failed:\n%s", rest[1])
                raise RuntimeError(rest[0])
        finally:
            if not finished:
                self.terminate()

    def _died(self, progress: Callable) -> None:
        progress.check()  # the server is stopping (and took the process down): an interruption, not a failure
        process = self.process
        if process is not None:
            process.join(1)
        raise RuntimeError(
            f"the inference process died (exit {None if process is None else process.exitcode})"
        )

    def kill(self) -> None:
        """Kill the process from another thread (stop()); the thread running the job sees it die and ends it."""
        process = self.process
        if process is not None and process.is_alive():
            process.kill()

    def terminate(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.is_alive():
            process.kill()  # it ignores SIGTERM; it has nothing to save (the job's partial outputs are removed)
            process.join(2)
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _annotated_kind(kind: str, video: Path) -> str:
    """The upload form's "annotated" choice, with "auto" resolved by the video's length."""
    if kind != "auto":
        return kind
    from util.video import probe_video

    try:
        return "highlights" if probe_video(video).duration_s > AUTO_HIGHLIGHTS_AFTER_S else "full"
    except Exception:  # noqa: BLE001 - an unreadable upload: inference reports what is wrong with it
        return "full"


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
    may run at the source's frame rate), as ``run_inference`` rendered it; the match time without a video. Events
    a highlight reel of chosen classes or team left out have ``in_reel`` false."""
    fps, num_frames = float(result["fps"]), int(result["num_frames"])
    events = [dict(e) for e in result.get("events") or []]
    times = result.get("video_times_s") or [int(e["frame"]) / fps for e in events]
    for event, seconds in zip(events, times, strict=True):
        event["video_time_s"] = round(float(seconds), 4)
    for event, shown in zip(events, result.get("in_reel") or [], strict=False):
        if not shown:
            event["in_reel"] = False
    return {
        "fps": fps,
        "num_frames": num_frames,
        "video_frames": result.get("video_frames"),
        "events": events,
        "ground_truth_summary": result.get("ground_truth_summary"),
    }


def _load_timing(path: Path) -> dict[str, float]:
    """The render/detect ratios a server recorded (``TIMING_FILE``); nothing when missing or unreadable."""
    try:
        learned = json.loads(path.read_text()).get("render_to_detect") or {}
        return {k: float(v) for k, v in learned.items() if k in RENDER_TO_DETECT and float(v) >= 0}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


class _Progress:
    """The ``progress(stage, done, total)`` callback: per-stage counts, one percentage, an ETA.

    The ETA comes from the rates measured so far: while detecting, the detection left at its own rate plus the
    rendering guessed from it (``RENDER_TO_DETECT``); while rendering, the rendering left at its rate."""

    def __init__(self, runner: JobRunner, job_id: str, start: float, annotated: str = "full") -> None:
        self.runner, self.job_id, self.start = runner, job_id, start
        self.annotated = annotated if annotated in STAGE_WEIGHTS else "full"
        self.weights = STAGE_WEIGHTS[self.annotated]
        self.stages = {s: {"done": 0, "total": 0} for s in STAGES}
        self.stage_started: dict[
            str, tuple[float, int]
        ] = {}  # stage -> (time, frames done) at its first report
        self.last_write = 0.0
        self.stage: str | None = None
        self.best = 0.0  # the percentage never goes back (a stream's length is only estimated at first)

    def check(self) -> None:
        if self.runner.interrupted(self.job_id):
            raise JobInterrupted(self.job_id)

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.check()
        self.stages.setdefault(stage, {"done": 0, "total": 0})
        self.stages[stage] = {"done": int(done), "total": int(total)}
        for earlier in STAGES[: STAGES.index(stage)] if stage in STAGES else ():
            entry = self.stages[earlier]  # a later stage started: earlier ones are complete
            entry["done"] = entry["total"] = max(entry["total"], entry["done"], 1)
        fraction = self.best = max(self.best, self.fraction())
        now = _now()
        self.stage_started.setdefault(stage, (now, int(done)))
        eta = self.eta(stage, now)
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

    def eta(self, stage: str, now: float) -> float | None:
        """Seconds left, from the current stage's rate (None until it has one)."""
        entry = self.stages.get(stage) or {}
        done, total = entry.get("done", 0), entry.get("total", 0)
        first_time, first_done = self.stage_started.get(stage, (now, done))
        spent, counted = now - first_time, done - first_done  # timed from the stage's first report
        if stage not in ("detecting", "rendering") or counted <= 0 or total <= 0 or spent < 0.5:
            return None
        per_frame = spent / counted
        left = per_frame * (total - done)
        if stage == "detecting":
            ratio = self.runner.expected_render_ratio(self.annotated)
            left += per_frame * total * ratio
        return max(0.0, left)

    def detect_render_seconds(self) -> tuple[float, float] | None:
        """(detection, rendering) seconds of a finished job, from the stages' first reports."""
        if "detecting" not in self.stage_started or "rendering" not in self.stage_started:
            return None
        detect_start, render_start = self.stage_started["detecting"][0], self.stage_started["rendering"][0]
        return render_start - detect_start, _now() - render_start

    def fraction(self) -> float:
        total_weight = sum(self.weights.values())
        value = 0.0
        for stage, weight in self.weights.items():
            entry = self.stages.get(stage, {})
            if entry.get("total"):
                value += weight * min(1.0, entry["done"] / entry["total"])
        return min(1.0, value / total_weight)
