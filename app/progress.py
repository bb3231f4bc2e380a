"""A running job's progress and ETA: per-stage counts turned into one percentage and a time left.

:class:`_Progress` is the ``progress(stage, done, total)`` callback a job's reports reach (relayed from its process
by ``app.worker``); it hands the runner the fields it shows (``stage``, ``stages``, ``percent``, ``eta_s``) and
raises :class:`JobInterrupted` when the job must stop. :class:`RenderTiming` is what the ETA learns: rendering time
against detection time, by the kind of annotated video, from the server's finished jobs (kept in ``TIMING_FILE``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from util.io import store_json

if TYPE_CHECKING:
    from app.jobs import JobRunner

log = logging.getLogger(__name__)

STAGES = ("decoding", "detecting", "rendering")
# Share of the whole job each stage stands for, to turn per-stage progress into one percentage, by the kind of
# annotated video; and the time rendering takes against detection (the ETA's guess until rendering starts: it
# decodes the video again at its own resolution, and encodes all of it, a highlight reel, or nothing).
STAGE_WEIGHTS = {
    "full": {"decoding": 0.05, "detecting": 0.5, "rendering": 0.45},
    "highlights": {"decoding": 0.05, "detecting": 0.9, "rendering": 0.05},
    "none": {"decoding": 0.05, "detecting": 0.95, "rendering": 0.0},
}
# Measured on a 2-core CPU (224p): a 10-minute match rendered whole took 1.15x its detection time
# (benchmarks/bench_app.py, bf16 model); the bounded reel of a dense 60-minute match (5 minutes, decoding only its
# own frames, no slow motion) 14-28 s against ~140 s of detection, about 0.15x. The server learns its own ratios
# from its finished jobs (``RenderTiming``, kept in TIMING_FILE).
RENDER_TO_DETECT = {"full": 1.15, "highlights": 0.15, "none": 0.0}
TIMING_FILE = "timing.json"  # what the server learned about its jobs' stage times (the ETA's guesses)
PROGRESS_WRITE_INTERVAL_S = 0.3


class JobInterrupted(Exception):
    """Raised inside a running job (from its progress callback) when the server stops or the job is deleted."""


def _load_timing(path: Path) -> dict[str, float]:
    """The render/detect ratios a server recorded (``TIMING_FILE``); nothing when missing or unreadable."""
    try:
        learned = json.loads(path.read_text()).get("render_to_detect") or {}
        return {k: float(v) for k, v in learned.items() if k in RENDER_TO_DETECT and float(v) >= 0}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


class RenderTiming:
    """Rendering time / detection time by annotated kind, as this server's last finished job of each kind took
    (the ETA's guess while detecting); kept in ``TIMING_FILE`` so that a restarted server keeps what it learned."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.ratios: dict[str, float] = _load_timing(path)  # in the order the kinds were first learned
        self._lock = threading.Lock()

    def learn(self, progress: _Progress) -> None:
        """Record a finished job's ratio (from its stages' first reports) and write the record."""
        times = progress.detect_render_seconds()
        if times is None or times[0] <= 0 or progress.annotated == "none":
            return
        with self._lock:
            self.ratios[progress.annotated] = times[1] / times[0]
            learned = dict(self.ratios)
        try:
            store_json(self.path, {"render_to_detect": learned})
        except OSError as e:  # a full disk loses a better ETA, not the job
            log.warning("could not record the job's timing (%s)", e)

    def expected(self, annotated: str) -> float:
        """Rendering time / detection time expected for a job making ``annotated``: learned from this server's
        last job of that kind; else :data:`RENDER_TO_DETECT`'s guess for it, scaled by how this server's job of
        another kind compared with that kind's guess (the machine and model make both kinds faster or slower)."""
        if annotated == "none":
            return 0.0
        learned = self.ratios
        if annotated in learned:
            return learned[annotated]
        others = [(k, v) for k, v in learned.items() if k != "none" and RENDER_TO_DETECT.get(k)]
        if not others:
            return RENDER_TO_DETECT[annotated]
        kind, value = others[-1]
        return RENDER_TO_DETECT[annotated] * value / RENDER_TO_DETECT[kind]


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
        now = time.time()
        self.stage_started.setdefault(stage, (now, int(done)))
        eta = self.eta(stage, now)
        changed = stage != self.stage or done >= total
        self.stage = stage
        persist = changed or now - self.last_write >= PROGRESS_WRITE_INTERVAL_S
        if persist:
            self.last_write = now
        self.runner.progressed(
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
        return render_start - detect_start, time.time() - render_start

    def fraction(self) -> float:
        total_weight = sum(self.weights.values())
        value = 0.0
        for stage, weight in self.weights.items():
            entry = self.stages.get(stage, {})
            if entry.get("total"):
                value += weight * min(1.0, entry["done"] / entry["total"])
        return min(1.0, value / total_weight)
