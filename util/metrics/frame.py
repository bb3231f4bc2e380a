"""E2E-Spot's frame mAP (its validation metric): per class, predictions of every video sorted by score each take
the nearest unmatched ground-truth event of their video (a true positive when within the tolerance in frames), and
AP is the precision averaged over the true positives with its interpolated (non-increasing) envelope.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
FRAME_TOLERANCES = (0, 1, 2, 4)


# ---- E2E-Spot frame-tolerance mAP


def _class_ap(
    truth: dict[int, np.ndarray], preds: list[tuple[float, int, int]], tolerance: int, n_truth: int
) -> float:
    """AP of one class: ``preds`` are (score, video index, frame), ``truth`` video index -> sorted frames."""
    preds = sorted(preds, key=lambda p: -p[0])  # stable: ties keep video then frame order
    unmatched = {v: frames.tolist() for v, frames in truth.items()}
    hits = np.zeros(len(preds), bool)
    for rank, (_, video, frame) in enumerate(preds):
        frames = unmatched.get(video)
        if not frames:
            continue
        j = bisect.bisect_left(frames, frame)
        # The nearest unmatched event (on a tie, the earlier one).
        if j == len(frames) or (j > 0 and frame - frames[j - 1] <= frames[j] - frame):
            j -= 1
        if abs(frames[j] - frame) <= tolerance:
            hits[rank] = True
            frames.pop(j)
    if not hits.any():
        return 0.0
    precision = np.cumsum(hits)[hits] / (np.flatnonzero(hits) + 1)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    return float(envelope.sum() / n_truth)


def frame_map(
    truth: Sequence[Mapping[str, Any]],
    predictions: Sequence[Mapping[str, Any]],
    classes: Sequence[str] | None = None,
    tolerances: Sequence[int] = FRAME_TOLERANCES,
) -> dict[str, Any]:
    """E2E-Spot's frame-tolerance mAP, at each video's own frame rate.

    ``truth``: per-video ``{video, events: [{frame, label}]}`` (parsed labels); ``predictions``: per-video
    ``{video, events: [{frame, label, score}]}``. Classes without ground truth are left out of the mean (their
    per-class value is None). Returns ``{"mAP": mean over tolerances, "by_tolerance": {tolerance: {"mAP",
    "per_class": {class: AP}}}}``.
    """
    if classes is None:
        classes = sorted({e["label"] for v in truth for e in v.get("events", [])})
    video_index = {v["video"]: i for i, v in enumerate(truth)}
    gt: dict[str, dict[int, list[int]]] = {c: {} for c in classes}
    for i, video in enumerate(truth):
        for event in video.get("events", []):
            if event["label"] in gt:
                gt[event["label"]].setdefault(i, []).append(int(event["frame"]))
    pred: dict[str, list[tuple[float, int, int]]] = {c: [] for c in classes}
    for video in predictions:
        i = video_index.get(video["video"])
        if i is None:
            continue
        for event in sorted(video.get("events", []), key=lambda e: int(e["frame"])):
            if event["label"] in pred:
                pred[event["label"]].append((float(event["score"]), i, int(event["frame"])))
    by_tolerance = {}
    for tolerance in tolerances:
        per_class: dict[str, float | None] = {}
        for c in classes:
            truth_c = {v: np.sort(np.asarray(f, np.int64)) for v, f in gt[c].items()}
            n_truth = sum(len(f) for f in truth_c.values())
            per_class[c] = (
                _class_ap(truth_c, sorted(pred[c], key=lambda p: p[1]), tolerance, n_truth)
                if n_truth
                else None
            )
        scored = [ap for ap in per_class.values() if ap is not None]
        by_tolerance[int(tolerance)] = {
            "mAP": float(np.mean(scored)) if scored else 0.0,
            "per_class": per_class,
        }
    maps = [r["mAP"] for r in by_tolerance.values()]
    return {"mAP": float(np.mean(maps)) if maps else 0.0, "by_tolerance": by_tolerance}
