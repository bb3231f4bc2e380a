"""Post-processing: per-frame scores -> events. One implementation for training, evaluation, inference and the app.

``scores_to_events(scores, classes, fps, threshold, nms_window, ...)`` turns a (T, C + 1) array of per-frame
class probabilities (column 0 = background) into events ``{"frame", "label", "score"[, "team", "team_score"]}``:

1. optional Gaussian smoothing along time (``sigma`` frames; the 2023 SoccerNet-Ball winner's post-processing);
2. per class, candidates: the local maxima (``peaks=True``; a plateau gives its middle frame) or every frame
   (``peaks=False``) with score >= ``threshold``;
3. per class, non-maximum suppression: hard (greedy by score, ties to the earlier frame; removes the candidates
   within +-``nms_window`` frames of a kept one) or soft (``soft=True``: a kept event multiplies the scores of the
   candidates within +-``nms_window`` frames by (distance / nms_window) ** 2; candidates that fall below
   ``threshold`` are dropped); ``nms_window=0`` switches NMS off.

With ``team_scores``, each event also gets ``team`` ("left" / "right") and ``team_score`` (the probability of
that team for its class at the frame the model saw it). They are a team head's P(right) per frame (T,), or, for a
model that spots the team as classes, the joint p(class, right) (T, C) (p(class, left) being ``scores - team``).
NMS runs per class on the class scores, or with ``per_team`` per (class, team) on p(class, team): the two teams'
events then neither suppress each other, and each is scored p(class, team).

``scores_to_events`` counts in frames; everything above it holds windows in seconds (:class:`PostProcess`), so a
setting means the same at 10 fps as at 25 fps. ``POSTPROCESS_GRID`` is the small grid training searches on val
(``model.select``: the entry with the best val mAP@1, or Team mAP@1), recorded in the model directory.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from util.io import DataError, atomic_open
from util.soccernet import TEAMS

DEFAULT_THRESHOLD = 0.01  # events for mAP: every peak worth ranking
DEFAULT_NMS_WINDOW_S = 1.0  # +-1 s: for a model directory that recorded no choice (older ones)
DEFAULT_DISPLAY_THRESHOLD = (
    0.3  # events shown to a person (inference, the app), where no class threshold is recorded
)
# Training records, per class, the display threshold that holds this val precision at delta = 1 s (selection.json).
DEFAULT_TARGET_PRECISION = 0.8
# The grid training searches on val: hard and soft NMS at four windows, with and without Gaussian smoothing.
GRID_WINDOWS_S = (0.25, 0.5, 1.0, 2.0)
GRID_SIGMAS_S = (0.0, 0.1)
# NMS per (class, team) or per class (``--team_nms``); a model without the key: per (class, team) for team as
# classes, per class otherwise (every older model).
TEAM_NMS_MODES = ("class_team", "class")


def team_nms_mode(config: Mapping[str, Any]) -> str:
    """How a model config's events are suppressed: "class_team" or "class" (module docstring)."""
    mode = config.get("team_nms")
    if mode is None:
        classes = bool(config.get("team")) and config.get("team_encoding") == "classes"
        return "class_team" if classes else "class"
    if mode not in TEAM_NMS_MODES:
        raise ValueError(f"team_nms must be one of {', '.join(TEAM_NMS_MODES)}, not {mode!r}")
    return str(mode)


@dataclass(frozen=True)
class PostProcess:
    """How per-frame scores become events, every window in seconds (it means the same at any frame rate).

    ``nms_window_s``: +- seconds around a kept event (0 = no NMS); ``soft``: soft instead of hard NMS;
    ``sigma_s``: Gaussian smoothing of the scores (0 = none); ``threshold``: the lowest score kept;
    ``class_windows_s``: ``((class, seconds), ...)``, the classes whose NMS window differs from ``nms_window_s``
    (chosen per class on val with ``--per_class_nms``); ``nms_per_team``: NMS per (class, team) on p(class, team)
    rather than per class (``--team_nms``; for models that spot teams).
    """

    nms_window_s: float = DEFAULT_NMS_WINDOW_S
    soft: bool = False
    sigma_s: float = 0.0
    threshold: float = DEFAULT_THRESHOLD
    class_windows_s: tuple[tuple[str, float], ...] = ()
    nms_per_team: bool = False

    def __post_init__(self) -> None:
        for name in ("nms_window_s", "sigma_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a number >= 0, not {value!r}")
        for name in ("soft", "nms_per_team"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, not {getattr(self, name)!r}")
        if not (isinstance(self.threshold, int | float) and 0.0 <= self.threshold <= 1.0):
            raise ValueError(f"threshold must be in [0, 1], not {self.threshold!r}")
        windows = tuple((str(c), float(w)) for c, w in dict(self.class_windows_s).items())
        if any(not (math.isfinite(w) and w >= 0) for _, w in windows):
            raise ValueError(f"class_windows_s must be seconds >= 0, not {self.class_windows_s!r}")
        object.__setattr__(self, "class_windows_s", windows)

    def event_options(self, fps: float) -> dict[str, Any]:
        """The keyword arguments of ``scores_to_events`` at ``fps``: windows in frames."""
        options: dict[str, Any] = {
            "threshold": float(self.threshold),
            "nms_window": window_frames(self.nms_window_s, fps),
            "soft": bool(self.soft),
            "sigma": float(self.sigma_s) * fps,
        }
        if self.class_windows_s:
            options["class_windows"] = {c: window_frames(w, fps) for c, w in self.class_windows_s}
        if self.nms_per_team:
            options["per_team"] = True
        return options

    def describe(self, fps: float | None = None) -> str:
        """'hard NMS +-0.5 s (5 frames at 10 fps), threshold 0.01' and the like, for logs and titles."""
        if self.nms_window_s > 0:
            nms = f"{'soft' if self.soft else 'hard'} NMS +-{self.nms_window_s:g} s"
            if fps:
                nms += f" ({window_frames(self.nms_window_s, fps)} frames at {fps:g} fps)"
        else:
            nms = "no NMS"
        if self.class_windows_s:
            nms += " (" + ", ".join(f"{c} +-{w:g} s" for c, w in self.class_windows_s) + ")"
        if self.nms_per_team:
            nms += " per class and team"
        smooth = f", Gaussian smoothing sigma {self.sigma_s:g} s" if self.sigma_s > 0 else ""
        return f"{nms}{smooth}, threshold {self.threshold:g}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["class_windows_s"] = dict(self.class_windows_s)  # {class: seconds} in selection.json
        if not data["class_windows_s"]:
            del data["class_windows_s"]  # files stay as they were without per-class windows
        if not data["nms_per_team"]:
            del data["nms_per_team"]  # and NMS per class, as before
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PostProcess:
        names = ("nms_window_s", "soft", "sigma_s", "threshold", "nms_per_team")
        known = {k: data[k] for k in names if k in data}
        windows = data.get("class_windows_s") or {}
        if not isinstance(windows, Mapping):
            raise ValueError(f"class_windows_s must be {{class: seconds}}, not {windows!r}")
        return cls(**known, class_windows_s=tuple(windows.items()))

    def with_overrides(
        self,
        nms_window: int | None = None,
        nms_window_s: float | None = None,
        fps: float | None = None,
        **changes: Any,
    ) -> PostProcess:
        """A copy with the user's flags applied: ``nms_window`` (frames, read at ``fps``) or ``nms_window_s``;
        other fields by name (None = keep)."""
        if nms_window is not None and nms_window_s is not None:
            raise ValueError("give the NMS window in frames or in seconds, not both")
        if nms_window is not None:
            if not fps:
                raise ValueError("an NMS window in frames needs the frame rate")
            changes["nms_window_s"] = nms_window / fps
        elif nms_window_s is not None:
            changes["nms_window_s"] = nms_window_s
        if "nms_window_s" in changes:  # one window given by hand holds for every class
            changes["class_windows_s"] = ()
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


def window_frames(seconds: float, fps: float) -> int:
    """+- ``seconds`` as a whole number of frames at ``fps`` (rounded; a positive window is at least 1 frame)."""
    if seconds <= 0:
        return 0
    return max(1, int(math.floor(seconds * fps + 0.5)))


def postprocess_grid(threshold: float = DEFAULT_THRESHOLD, per_team: bool = False) -> list[PostProcess]:
    """The post-processing candidates training compares on val (``GRID_*``), NMS per (class, team) with
    ``per_team``."""
    return [
        PostProcess(nms_window_s=w, soft=soft, sigma_s=sigma, threshold=threshold, nms_per_team=per_team)
        for sigma in GRID_SIGMAS_S
        for soft in (False, True)
        for w in GRID_WINDOWS_S
    ]


def smooth_scores(scores: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing along axis 0 (time), ``sigma`` in frames; edges repeat the first/last frame."""
    scores = np.asarray(scores, np.float64)
    if sigma <= 0 or len(scores) == 0:
        return scores
    radius = max(1, math.ceil(4 * sigma))
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()
    pad = [(radius, radius)] + [(0, 0)] * (scores.ndim - 1)
    padded = np.pad(scores, pad, mode="edge")
    out = np.zeros_like(scores)
    for k, w in enumerate(weights):
        out += w * padded[k : k + len(scores)]
    return out


def find_peaks(values: np.ndarray, threshold: float) -> np.ndarray:
    """Frames of the local maxima of a 1-D series with value >= threshold (a flat top gives its middle frame)."""
    values = np.asarray(values, np.float64)
    if len(values) == 0:
        return np.zeros(0, np.int64)
    starts = np.concatenate([[0], np.flatnonzero(np.diff(values) != 0) + 1])
    ends = np.concatenate([starts[1:], [len(values)]])
    level = values[starts]
    left = np.concatenate([[-np.inf], level[:-1]])
    right = np.concatenate([level[1:], [-np.inf]])
    peak = (level > left) & (level > right) & (level >= threshold)
    return ((starts + ends - 1) // 2)[peak].astype(np.int64)


def _priority(frames: np.ndarray, scores: np.ndarray) -> np.ndarray:
    return np.lexsort((frames, -scores))  # highest score first, ties to the earlier frame


def hard_nms(frames: np.ndarray, scores: np.ndarray, window: int) -> np.ndarray:
    """Indices (into ``frames``) kept by greedy NMS: each kept candidate removes the others within +-window."""
    frames = np.asarray(frames, np.int64)
    scores = np.asarray(scores, np.float64)
    if window <= 0 or len(frames) < 2:
        return np.arange(len(frames))
    by_frame = np.argsort(frames, kind="stable")
    sorted_frames = frames[by_frame]
    rank_of = np.empty(len(frames), np.int64)
    rank_of[by_frame] = np.arange(len(frames))
    lo = np.searchsorted(sorted_frames, sorted_frames - window, "left").tolist()
    hi = np.searchsorted(sorted_frames, sorted_frames + window, "right").tolist()
    removed = bytearray(len(frames))
    removed_np = np.frombuffer(removed, np.uint8)
    keep = []
    for i in _priority(frames, scores).tolist():
        r = int(rank_of[i])
        if removed[r]:
            continue
        keep.append(i)
        removed_np[lo[r] : hi[r]] = 1
    return np.sort(np.asarray(keep, np.int64))


def soft_nms(
    frames: np.ndarray, scores: np.ndarray, window: int, threshold: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Soft NMS: (kept indices into ``frames``, their decayed scores), in frame order.

    Repeatedly keeps the candidate with the highest current score (ties: the earlier frame) and multiplies the
    current scores of the candidates within +-window frames by (distance / window) ** 2; stops when the best
    remaining score is below ``threshold``.
    """
    frames = np.asarray(frames, np.int64)
    current = np.asarray(scores, np.float64).copy()
    if window <= 0:
        keep = np.flatnonzero(current >= threshold)
        return keep, current[keep]
    by_frame = np.argsort(frames, kind="stable")
    sorted_frames = frames[by_frame]
    heap = [(-current[i], int(frames[i]), int(i)) for i in range(len(frames))]
    heapq.heapify(heap)
    done = np.zeros(len(frames), bool)
    kept: list[int] = []
    while heap:
        neg, _, i = heapq.heappop(heap)
        if done[i] or -neg != current[i]:
            continue  # stale entry: its score was decayed since it was pushed
        if current[i] < threshold:
            break
        done[i] = True
        kept.append(i)
        lo = np.searchsorted(sorted_frames, frames[i] - window, "left")
        hi = np.searchsorted(sorted_frames, frames[i] + window, "right")
        near = by_frame[lo:hi]
        near = near[~done[near]]
        current[near] *= (np.abs(frames[near] - frames[i]) / window) ** 2
        for j in near.tolist():
            heapq.heappush(heap, (-current[j], int(frames[j]), j))
    keep = np.asarray(sorted(kept, key=lambda k: (frames[k], k)), np.int64)
    return keep, current[keep]


def _suppress(
    frames: np.ndarray, scores: np.ndarray, window: int, soft: bool, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    if soft:
        return soft_nms(frames, scores, window, threshold)
    keep = hard_nms(frames, scores, window)
    return keep, np.asarray(scores, np.float64)[keep]


def _with_team(event: dict, p_right: float, team: str | None = None) -> dict:
    """``event`` with its ``team`` (the likelier one, or ``team`` when given) and ``team_score``."""
    if team is None:
        team = TEAMS[1] if p_right >= 0.5 else TEAMS[0]
    event["team"] = team
    event["team_score"] = float(p_right if team == TEAMS[1] else 1.0 - p_right)
    return event


def team_columns(scores: np.ndarray, team_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(p(class, left), p(class, right)), (T, C) each, of class scores (T, C + 1) and a team head's P(right) (T,)
    or team-as-classes' joint p(class, right) (T, C)."""
    values = np.asarray(scores, np.float64)[:, 1:]
    team = np.asarray(team_scores, np.float64)
    right = values * team[:, None] if team.ndim == 1 else team
    return np.clip(values - right, 0.0, None), right


def _p_right(scores: np.ndarray, team_scores: np.ndarray, frame: int, c: int) -> float:
    """P(right | class ``c``) at ``frame``: a team head's P(right), or the joint p(c, right) / p(c)."""
    if team_scores.ndim == 1:
        return float(team_scores[frame])
    total = float(scores[frame, c + 1])
    return min(1.0, float(team_scores[frame, c]) / total) if total > 0 else 0.5


def _check_team_scores(team_scores: np.ndarray, num_frames: int, num_classes: int) -> None:
    if team_scores.ndim == 1 and len(team_scores) == num_frames:
        return
    if team_scores.shape != (num_frames, num_classes):
        raise ValueError(
            f"team scores of shape {team_scores.shape} for {num_frames} frames: expected ({num_frames},) P(right) "
            f"or ({num_frames}, {num_classes}) p(class, right)"
        )


def _score_columns(
    scores: np.ndarray, team_scores: np.ndarray | None, sigma: float, per_team: bool
) -> list[tuple[str | None, np.ndarray]]:
    """The series NMS runs on, smoothed: ``[(None, class scores (T, C))]``, or with ``per_team`` (and teams)
    ``[("left", p(class, left)), ("right", p(class, right))]``."""
    if not per_team or team_scores is None:
        return [(None, smooth_scores(scores[:, 1:], sigma))]
    return [
        (t, smooth_scores(v, sigma)) for t, v in zip(TEAMS, team_columns(scores, team_scores), strict=True)
    ]


def scores_to_events(
    scores: np.ndarray,
    classes: Sequence[str],
    fps: float | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    nms_window: int = 0,
    *,
    soft: bool = False,
    sigma: float = 0.0,
    peaks: bool = True,
    team_scores: np.ndarray | None = None,
    displacement: np.ndarray | None = None,
    class_windows: Mapping[str, int] | None = None,
    per_team: bool = False,
) -> list[dict[str, Any]]:
    """Per-frame scores (T, C + 1), column 0 background -> events sorted by frame (module docstring).

    ``fps`` is the frame rate of ``scores``; every window here is in frames (``PostProcess.event_options(fps)``
    gives them from seconds), so ``fps`` only has to be positive when given. ``nms_window=0`` (the default) is no
    NMS; ``class_windows`` gives some classes a window of their own. With ``displacement`` (T,), T-DEED's
    predicted frames to the nearest event, each candidate moves to ``frame + round(displacement[frame])`` (kept in
    the video; candidates that land on one frame keep the highest score) before NMS. ``per_team``: NMS per (class,
    team) (needs ``team_scores``; without them, per class).
    """
    scores = np.asarray(scores)
    if scores.ndim != 2 or scores.shape[1] != len(classes) + 1:
        raise ValueError(f"scores of shape {scores.shape}: expected (frames, {len(classes) + 1})")
    if fps is not None and not fps > 0:
        raise ValueError(f"fps {fps} is not positive")
    if displacement is not None and len(displacement) != len(scores):
        raise ValueError(f"displacement of length {len(displacement)} for {len(scores)} frames")
    if team_scores is not None:
        team_scores = np.asarray(team_scores)
        _check_team_scores(team_scores, len(scores), len(classes))
    events = []
    for side, (team, values) in enumerate(_score_columns(scores, team_scores, sigma, per_team)):
        for c, label in enumerate(classes):
            frames, origins, values_c = _candidates(values[:, c], threshold, peaks, displacement, len(scores))
            window = nms_window if class_windows is None else class_windows.get(label, nms_window)
            keep, kept_scores = _suppress(frames, values_c, window, soft, threshold)
            for frame, origin, score in zip(
                frames[keep].tolist(), origins[keep].tolist(), kept_scores.tolist(), strict=True
            ):
                event = {"frame": frame, "label": label, "score": score}
                if team_scores is not None:  # the team seen where the model saw the event
                    _with_team(event, _p_right(scores, team_scores, origin, c), team)
                events.append((frame, c, side, event))
    events.sort(key=lambda e: e[:3])
    return [e for *_, e in events]


def _candidates(
    column: np.ndarray, threshold: float, peaks: bool, displacement: np.ndarray | None, num_frames: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One class's candidates before NMS: (frames, the frames they came from, scores)."""
    frames = find_peaks(column, threshold) if peaks else np.flatnonzero(column >= threshold)
    origins, values = frames, column[frames]
    if displacement is not None:
        frames, origins, values = displace(frames, values, displacement, num_frames)
    return frames, origins, values


def final_events_end(
    scores: np.ndarray,
    classes: Sequence[str],
    fps: float | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    nms_window: int = 0,
    *,
    soft: bool = False,
    sigma: float = 0.0,
    peaks: bool = True,
    displacement: np.ndarray | None = None,
    displacement_radius: int = 0,
    class_windows: Mapping[str, int] | None = None,
    min_scores: Mapping[str, float] | None = None,
    team_scores: np.ndarray | None = None,
    per_team: bool = False,
    **_: Any,
) -> int:
    """For scores that will go on (more frames after the last row, none before it changing): the frame before
    which ``scores_to_events`` of these scores gives the events of every longer series. Live spotting writes those.

    The frames whose smoothed score, peak or displaced frame the next frames can change (the smoothing radius, the
    last run of equal values, ``displacement_radius``) give unknown candidates; an unknown candidate can suppress
    (or, by suppressing a candidate that would have suppressed it, bring back) the known ones within the NMS window
    of it. Hard NMS: a candidate is settled once a settled higher one within the window is kept, or every higher one
    within the window is settled and none is kept; chains of suppression are followed. Soft NMS: a candidate is
    settled when no chain of candidates within the window of each other reaches the unknown ones.

    ``min_scores``: per class, the lowest score of the events wanted (live spotting's display thresholds). Lower
    candidates cannot change them: both NMS go from the highest candidate down, so they are left out. With
    ``per_team`` and ``team_scores``, each team's series p(class, team) is looked at, as ``scores_to_events``
    suppresses them.
    """
    scores = np.asarray(scores)
    n = len(scores)
    team = None if team_scores is None else np.asarray(team_scores)
    columns = [
        values[:, c]
        for _, values in _score_columns(scores, team, sigma, per_team)
        for c in range(len(classes))
    ]
    radius = max(1, math.ceil(4 * sigma)) if sigma > 0 else 0
    end = n
    for i, column in enumerate(columns):
        label = classes[i % len(classes)]
        exact = max(0, n - radius)  # smoothed values final before this frame
        if peaks:  # a peak is a run of equal values higher than both neighbours: the last run is open
            changes = np.flatnonzero(np.diff(column[:exact]) != 0)
            known = int(changes[-1]) + 1 if len(changes) else 0
        else:
            known = exact
        known = max(0, known - int(displacement_radius))  # unknown candidates land at known or after
        frames, _, values_c = _candidates(column, threshold, peaks, displacement, n)
        inside = frames < known
        if min_scores is not None:
            inside &= values_c >= min_scores.get(label, threshold)
        frames, values_c = frames[inside], values_c[inside]
        window = nms_window if class_windows is None else class_windows.get(label, nms_window)
        end = min(end, known, _nms_settled_end(frames, values_c, window, soft, known))
    return end


def _nms_settled_end(frames: np.ndarray, scores: np.ndarray, window: int, soft: bool, known: int) -> int:
    """The first of ``frames`` (sorted, all before ``known``) whose NMS outcome candidates at ``known`` or later
    could change; ``known`` when none."""
    if window <= 0 or len(frames) == 0:
        return known
    open_from = known - window  # within the window of an unknown candidate
    if soft:
        gaps = np.flatnonzero(
            np.diff(frames) > window
        )  # clusters of candidates within the window of each other
        first = int(frames[gaps[-1] + 1]) if len(gaps) else int(frames[0])
        return first if frames[-1] >= open_from else known
    order = _priority(frames, scores).tolist()
    state = np.zeros(len(frames), np.int8)  # 1 kept, 2 removed, 3 open (may change)
    lo = np.searchsorted(frames, frames - window, "left")
    hi = np.searchsorted(frames, frames + window, "right")
    for i in order:  # higher ones first: their state is known when a lower one is looked at
        near = state[lo[i] : hi[i]]
        if (near == 1).any():
            state[i] = 2
        elif (near == 3).any() or frames[i] >= open_from:
            state[i] = 3
        else:
            state[i] = 1
    open_ = np.flatnonzero(state == 3)
    return int(frames[open_[0]]) if len(open_) else known


def displace(
    frames: np.ndarray, scores: np.ndarray, displacement: np.ndarray, num_frames: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Move candidate ``frames`` by the rounded ``displacement`` at each (clipped to the video). Returns the new
    frames (sorted, unique: of candidates that land together the highest score stays, ties to the earlier
    origin), the frame each came from, and their scores."""
    if len(frames) == 0:
        return frames, frames, scores
    moved = np.clip(frames + np.rint(displacement[frames]).astype(np.int64), 0, num_frames - 1)
    # Sort by target frame, then score descending, then origin: the first of each target frame wins.
    order = np.lexsort((frames, -scores, moved))
    moved, origins, scores = moved[order], frames[order], scores[order]
    first = np.ones(len(moved), bool)
    first[1:] = moved[1:] != moved[:-1]
    return moved[first], origins[first], scores[first]


def nms_events(
    events: Sequence[Mapping[str, Any]],
    window: int,
    *,
    soft: bool = False,
    threshold: float = 0.0,
    per_team: bool = False,
) -> list[dict[str, Any]]:
    """The same NMS on an event list (``{frame, label, score, ...}``), per label (``per_team``: per label and
    team); other fields are kept.

    ``window=0`` returns the events unchanged (sorted by frame).
    """
    by_label: dict[tuple[str, Any], list[Mapping[str, Any]]] = {}
    for event in events:
        by_label.setdefault((event["label"], event.get("team") if per_team else None), []).append(event)
    out = []
    for label_events in by_label.values():
        frames = np.array([int(e["frame"]) for e in label_events], np.int64)
        scores = np.array([float(e["score"]) for e in label_events], np.float64)
        if window <= 0:
            keep, kept_scores = np.arange(len(frames)), scores
        else:
            keep, kept_scores = _suppress(frames, scores, window, soft, threshold)
        for i, score in zip(keep.tolist(), kept_scores.tolist(), strict=True):
            out.append(dict(label_events[i], score=score))
    out.sort(key=lambda e: int(e["frame"]))
    return out


def average_scores(score_sets: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Ensemble: the mean of several models' per-frame arrays (same keys, same shapes)."""
    if not score_sets:
        raise ValueError("no score arrays to average")
    keys = set(score_sets[0])
    for i, other in enumerate(score_sets[1:], 1):
        if set(other) != keys:
            missing = sorted(keys ^ set(other))[:3]
            raise ValueError(f"score set {i} has different videos than set 0 (e.g. {missing})")
    out = {}
    for key in score_sets[0]:
        arrays = [np.asarray(s[key], np.float64) for s in score_sets]
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise ValueError(f"{key}: score arrays of different shapes {sorted(shapes)}")
        out[key] = np.mean(arrays, axis=0)
    return out


# ---- per-frame scores on disk (.score.npz): an array per video id, plus "<video>::team" for a team model (a team
# head's P(right) (T,), or team-as-classes' p(class, right) (T, C))
TEAM_KEY = "::team"
DISPLACEMENT_KEY = "::displacement"  # "<video>::displacement": T-DEED's frames to the nearest event
AUX_KEYS = (TEAM_KEY, DISPLACEMENT_KEY)


def is_aux_key(key: str) -> bool:
    """Whether a .score.npz key holds a video's team or displacement array rather than its scores."""
    return key.endswith(AUX_KEYS)


def store_scores(path: str | Path, results: Mapping[str, Sequence[np.ndarray | None]]) -> None:
    """Per-frame scores as one .npz: an array per video id, plus ``<video>::team`` for a team head and
    ``<video>::displacement`` for a displacement head (``results``: video -> (scores, team, displacement))."""
    arrays = {}
    for video, (scores, *extras) in results.items():
        arrays[video] = scores
        for key, values in zip(AUX_KEYS, extras, strict=False):
            if values is not None:
                arrays[video + key] = values
    with atomic_open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def load_score_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of a ``.score.npz`` by its key (``<video>``, ``<video>::team``, ``<video>::displacement``); an
    unreadable file is a DataError naming it."""
    try:
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read the per-frame scores ({e})") from None


def load_scores(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]:
    """Read a ``.score.npz`` written by ``store_scores``: video id -> (scores, team or None, displacement or
    None)."""
    arrays = load_score_arrays(path)
    return {
        key: (value, arrays.get(key + TEAM_KEY), arrays.get(key + DISPLACEMENT_KEY))
        for key, value in arrays.items()
        if not is_aux_key(key)
    }
