"""The job process: ``model.inference.run_inference`` in a process of its own, and the pipe to it.

The server never imports torch: each ``--workers`` slot owns one :class:`WorkerProcess` (kept by a
:class:`WorkerPool`), spawned on first use and reused from job to job (torch and the model's code are imported once,
by the first job). The pipe carries, server to process, one job at a time as ``(model_dir, output_dir, kwargs)``
(None ends the process); process to server, ``("progress", stage, done, total)`` reports, throttled, then one of
``("done", result)``, ``("data_error", message)`` or ``("error", message, traceback)``. Interrupting a job kills
its process (the next job starts a fresh one); a crash in a decoder ends the process, never the server.
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
