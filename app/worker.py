"""The job process: ``model.inference.run_inference`` (an upload) or ``model.live.run_live`` (a live feed) in a
process of its own, and the pipe to it.

The server never imports torch: each ``--workers`` slot owns one :class:`WorkerProcess` (kept by a
:class:`WorkerPool`), spawned on first use and reused from job to job (torch and the model's code are imported once,
by the first job). The pipe carries, server to process, one job at a time as ``(kind, model_dir, output_dir,
kwargs)`` with ``kind`` a key of :data:`JOB_KINDS` (None ends the process); process to server, ``("progress", stage,
done, total)`` reports, throttled, then one of ``("done", result)``, ``("data_error", message)`` or ``("error",
message, traceback)``. Interrupting a job kills its process (the next job starts a fresh one); a crash in a decoder
ends the process, never the server. A live job runs until its feed ends or the server asks it to stop: an event
shared with the process (``WorkerProcess.stop_live``), which the process hands on to ``run_live``'s own stop, so
that its events are final and its summary written; one that has not finished ``LIVE_STOP_GRACE_S`` later is killed.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from util.io import DataError

log = logging.getLogger(__name__)

PROGRESS_SEND_INTERVAL_S = 0.1
# After a stop, a live job finishes its feed's last scores and waits for its reader (up to 10 s on a silent feed).
LIVE_STOP_GRACE_S = 20.0
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


def _infer(model_dir: str, output_dir: str, kwargs: dict, progress: Callable, stop_asked: Any) -> Any:
    from model.inference import run_inference

    return run_inference(model_dir, output_dir, progress=progress, **kwargs)


def _watch_live(model_dir: str, output_dir: str, kwargs: dict, progress: Callable, stop_asked: Any) -> Any:
    """``run_live`` on ``kwargs`` (``source``, ``settings``: LiveSettings fields, ``device``, ``score_threshold``)
    until the feed ends or the server sets ``stop_asked`` (a multiprocessing event, relayed to run_live's own)."""
    from model.live import LiveSettings, run_live

    stop, ended = threading.Event(), threading.Event()

    def relay() -> None:
        while not ended.is_set():
            if stop_asked.wait(0.2):
                stop.set()
                return

    thread = threading.Thread(target=relay, name="live-stop", daemon=True)
    thread.start()
    try:
        return run_live(model_dir, kwargs["source"], output_dir, LiveSettings(**kwargs.get("settings", {})),
                        device=kwargs.get("device"), score_threshold=kwargs.get("score_threshold"),
                        stop=stop)  # fmt: skip
    finally:
        ended.set()
        thread.join()


JOB_KINDS: dict[str, Callable[..., Any]] = {"inference": _infer, "live": _watch_live}


def _worker_main(conn, stop_live) -> None:
    """A job process: runs the jobs it is sent (``(kind, model_dir, output_dir, kwargs)``; None ends it), sending
    back each one's progress and its result (or error). torch and the model's code are imported once, by the first.
    ``stop_live``: the server's request that a live job stop cleanly.
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
        kind, model_dir, output_dir, kwargs = job
        last = [0.0, None]

        def progress(stage: str, done: int, total: int, last=last) -> None:
            now = time.monotonic()
            if stage != last[1] or done >= total or now - last[0] >= PROGRESS_SEND_INTERVAL_S:
                last[:] = [now, stage]
                conn.send(("progress", stage, done, total))

        try:
            result = JOB_KINDS[kind](model_dir, output_dir, kwargs, progress, stop_live)
            conn.send(("done", _plain(result)))
        except DataError as e:
            conn.send(("data_error", str(e)))
        except Exception as e:  # noqa: BLE001 - reported to the server, which fails the job
            conn.send(("error", f"{type(e).__name__}: {e}", traceback.format_exc()[-3000:]))


class LiveStopOverdue(Exception):
    """A live job asked to stop had not finished ``LIVE_STOP_GRACE_S`` later: its process was killed."""


class WorkerProcess:
    """One job process, started on first use and reused for the next jobs; terminated when a job is interrupted
    (the next job starts a fresh one) and when the runner stops."""

    def __init__(self) -> None:
        self.process = None
        self.conn = None
        self.stop_live = None  # set by the server: the live job running stops cleanly

    def _start(self) -> None:
        parent, child = _MP.Pipe()
        self.stop_live = _MP.Event()
        self.process = _MP.Process(
            target=_worker_main, args=(child, self.stop_live), daemon=True, name="spot-inference"
        )
        self.process.start()
        child.close()
        self.conn = parent

    def run(self, model_dir: Path, output_dir: Path, kwargs: dict, progress: Callable) -> dict:
        """run_inference in the process; ``progress`` is called here with its reports (it may raise
        JobInterrupted: the process is terminated). Errors come back as DataError / RuntimeError."""
        return self._exchange(
            ("inference", str(model_dir), str(output_dir), kwargs), progress, progress.check
        )

    def run_live(
        self,
        model_dir: Path,
        output_dir: Path,
        kwargs: dict,
        stop: threading.Event,
        check: Callable[[], None],
    ) -> dict:
        """run_live in the process (``kwargs``: see :func:`_watch_live`) until its feed ends, or ``stop`` is set:
        the process is told, and the run finishes cleanly (LiveStopOverdue when it has not within
        LIVE_STOP_GRACE_S: the process is killed). ``check()`` raises JobInterrupted when the server stops. Returns
        run_live's summary; errors come back as DataError / RuntimeError."""
        if self.process is None or not self.process.is_alive():
            self._start()
        self.stop_live.clear()  # a stop asked of an earlier live job (after it ended) is not this one's
        asked: list[float] = []

        def tick() -> None:
            check()
            if stop.is_set() and not asked:
                self.stop_live.set()
                asked.append(time.monotonic())
            if asked and time.monotonic() - asked[0] > LIVE_STOP_GRACE_S:
                raise LiveStopOverdue(f"it had not stopped {LIVE_STOP_GRACE_S:g} s after it was asked to")

        return self._exchange(("live", str(model_dir), str(output_dir), kwargs), None, tick)

    def _exchange(self, job: tuple, progress: Callable | None, tick: Callable[[], None]) -> dict:
        """Send ``job``, relay its progress reports, return its result; ``tick()`` runs at least every 0.2 s while
        it computes (it may raise to end the job: the process is terminated)."""
        if self.process is None or not self.process.is_alive():
            self._start()
        self.conn.send(job)
        finished = False
        try:
            while True:
                try:
                    ready = self.conn.poll(0.2)
                    message = self.conn.recv() if ready else None
                except (EOFError, OSError):  # the process is gone (killed by stop(), or crashed)
                    self._died(tick)
                if message is None:
                    tick()  # interrupted while the process computes between two reports
                    if not self.process.is_alive():
                        self._died(tick)
                    continue
                kind, *rest = message
                if kind == "progress":
                    if progress is not None:
                        progress(*rest)
                    continue
                finished = True
                if kind == "done":
                    return rest[0]
                if kind == "data_error":
                    raise DataError(rest[0])
                log.error("job process failed:\n%s", rest[1])
                raise RuntimeError(rest[0])
        finally:
            if not finished:
                self.terminate()

    def _died(self, check: Callable[[], None]) -> None:
        check()  # the server is stopping (and took the process down): an interruption, not a failure
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


class WorkerPool:
    """A runner's job processes: one per thread of its pool (one per ``--workers`` slot), made on first use."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()  # guards the list only (the runner's jobs have their own lock)
        self._processes: list[WorkerProcess] = []

    def current(self) -> WorkerProcess:
        """The job process of the calling thread."""
        worker = getattr(self._local, "worker", None)
        if worker is None:
            worker = self._local.worker = WorkerProcess()
            with self._lock:
                self._processes.append(worker)
        return worker

    def kill_all(self) -> None:
        """Kill every process made so far (stop, shutdown); the threads running jobs see theirs die."""
        with self._lock:
            processes, self._processes = self._processes, []
        for worker in processes:
            worker.kill()
