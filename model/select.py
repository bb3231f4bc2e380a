"""Choosing how a model is used, on val, by the task's metric: the epoch and the post-processing.

Each validation epoch, training predicts the val videos once through the one predict path and scores the events of
every post-processing in ``util.postprocess.postprocess_grid()`` with SoccerNet's mAP@1 (and Team mAP@1 for a team head)
on the parsed val labels (``util.metrics``, equal to the official evaluator); the epoch's ``val_mAP`` /
``val_team_mAP`` are the best over the grid, ``val_frame_mAP`` is E2E-Spot's frame-tolerance mAP of the score
peaks. ``--criterion`` picks the best epoch from those numbers (``best_epoch``); the chosen epoch, its
post-processing and the grid's numbers go to ``selection.json`` (``model.common.save_selection``), which eval,
inference and the app then read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from model.predict import scores_to_predictions
from util.metrics.frame import frame_map
from util.metrics.results import labels_by_game, predictions_by_game
from util.metrics.spotting import soccernet_map, team_map
from util.postprocess import PostProcess, postprocess_grid, team_nms_mode

# criterion -> (loss.json key, larger is better, what it is, for logs and selection.json)
CRITERIA: dict[str, tuple[str, bool, str]] = {
    "map": ("val_mAP", True, "val mAP@1"),
    "team_map": ("val_team_mAP", True, "val Team mAP@1"),
    "frame_map": ("val_frame_mAP", True, "val frame mAP (E2E-Spot)"),
    "loss": ("val", False, "val loss"),
}
Results = dict[str, tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]


def default_criterion(team: bool) -> str:
    """The task's metric: Team mAP@1 for a model with a team head (SoccerNet-Ball 2025), else mAP@1."""
    return "team_map" if team else "map"


def grid_scores(
    results: Results, videos: Sequence[dict], config: dict, grid: Sequence[PostProcess] | None = None
) -> list[dict[str, Any]]:
    """``[{postprocess, mAP, team_mAP, per_class, team_per_class}]``: mAP@1 (and Team mAP@1 with a team head,
    else None) of each grid entry, with the APs of each class behind them."""
    classes = list(config["classes"])
    truth = labels_by_game(videos)
    team = bool(config.get("team"))
    rows = []
    per_team = team_nms_mode(config) == "class_team"
    for post in grid if grid is not None else postprocess_grid(per_team=per_team):
        predicted = predictions_by_game(scores_to_predictions(results, config, post))
        spotting = soccernet_map(truth, predicted, classes)
        row: dict[str, Any] = {
            "postprocess": post,
            "mAP": spotting["mAP"],
            "per_class": spotting["per_class"],
        }
        teams = team_map(truth, predicted, classes) if team else None
        row["team_mAP"] = teams["mAP"] if teams else None
        row["team_per_class"] = teams["per_class"] if teams else None
        rows.append(row)
    return rows


def val_interval(
    results: Results, videos: Sequence[dict], config: dict, post: PostProcess, rounds: int = 500
) -> dict[str, Any] | None:
    """How much of the selected val number could be luck: the report's chunk bootstrap (``bootstrap_intervals``,
    chunks of 60 s of play drawn with replacement) of val mAP@1 under the chosen post-processing:
    ``{metric, value, low, high, level, rounds, chunks, chunk_s, games}``, Team mAP@1's beside it as ``team``; None
    when val has no event."""
    from util.metrics.analysis import bootstrap_intervals

    classes = list(config["classes"])
    if not any(v.get("events") for v in videos):
        return None
    truth = labels_by_game(videos)
    predicted = predictions_by_game(scores_to_predictions(results, config, post))
    intervals = bootstrap_intervals(truth, predicted, classes, rounds=rounds)
    if "at1" not in intervals:
        return None

    def summary(name: str, value: float) -> dict[str, Any]:
        found = intervals[name]
        keys = ("low", "high", "level", "rounds", "chunks", "chunk_s")
        return {"value": float(value), **{k: found[k] for k in keys}}

    record = {
        "metric": "mAP@1",
        "games": len(truth),
        **summary("at1", soccernet_map(truth, predicted, classes)["mAP"]),
    }
    if "team_at1" in intervals and config.get("team"):
        record["team"] = summary("team_at1", team_map(truth, predicted, classes)["mAP"])
    return record


def describe_interval(record: dict[str, Any]) -> str:
    """'val mAP@1 0.612, 95 % bootstrap interval 0.480-0.705 (23 chunks of 60 s in 1 game)' for the log."""
    text = (
        f"val {record['metric']} {record['value']:.3f}, {100 * record['level']:g} % bootstrap interval "
        f"{record['low']:.3f}-{record['high']:.3f} ({record['chunks']} chunks of {record['chunk_s']:g} s in "
        f"{record['games']} game(s))"
    )
    if record.get("team"):
        team = record["team"]
        text += f"; Team mAP@1 {team['value']:.3f}, {team['low']:.3f}-{team['high']:.3f}"
    return text


def best_entry(rows: list[dict], key: str) -> dict:
    """The row of ``grid_scores`` with the highest ``key`` ("mAP" or "team_mAP")."""
    # max keeps the first of equal values: ties go to the earlier grid entry (no smoothing, hard NMS, narrower).
    return max(rows, key=lambda r: r[key] if r[key] is not None else -1.0)


def validation_metrics(results: Results, videos: Sequence[dict], config: dict) -> dict[str, Any]:
    """The epoch's val numbers (module docstring): ``val_mAP``, ``val_team_mAP`` (None without a team head),
    ``val_frame_mAP``, and ``val_postprocess`` / ``val_team_postprocess``: the grid entries they came from."""
    rows = grid_scores(results, videos, config)
    best = best_entry(rows, "mAP")
    peaks = scores_to_predictions(results, config, PostProcess(nms_window_s=0.0))
    stats: dict[str, Any] = {
        "val_mAP": float(best["mAP"]),
        "val_postprocess": best["postprocess"].to_dict(),
        "val_team_mAP": None,
        "val_frame_mAP": float(frame_map(videos, peaks, config["classes"])["mAP"]),
    }
    if config.get("team"):
        best_team = best_entry(rows, "team_mAP")
        stats["val_team_mAP"] = float(best_team["team_mAP"])
        stats["val_team_postprocess"] = best_team["postprocess"].to_dict()
    return stats


def criterion_used(history: list[dict], criterion: str) -> str:
    """``criterion``, or "loss" when no epoch of the history has its value yet (before ``--start_val_epoch``)."""
    key = CRITERIA[criterion][0]
    return criterion if any(h.get(key) is not None for h in history) else "loss"


def best_epoch(history: list[dict], criterion: str) -> int | None:
    """The best epoch of a history by ``criterion`` among the epochs that have its value (ties: the later epoch);
    when none has it (no validation epoch yet), the lowest val loss (``criterion_used``)."""
    key, larger, _ = CRITERIA[criterion_used(history, criterion)]
    scored = [h for h in history if h.get(key) is not None]
    if not scored:
        return None
    sign = 1.0 if larger else -1.0
    return max(scored, key=lambda h: (sign * h[key], h["epoch"]))["epoch"]


def selection_record(
    history: list[dict], criterion: str, epoch: int, rows: list[dict], config: dict, display_threshold: float
) -> dict[str, Any]:
    """What ``selection.json`` holds: the epoch, why, the post-processing chosen on its val scores and the grid."""
    used = criterion_used(history, criterion)
    key, _, what = CRITERIA[used]
    if used != criterion:
        what += f" (no epoch had {CRITERIA[criterion][2]})"
    entry = next(h for h in history if h["epoch"] == epoch)
    by_team = criterion == "team_map" or (criterion in ("frame_map", "loss") and bool(config.get("team")))
    chosen = best_entry(rows, "team_mAP" if by_team else "mAP")
    value = entry.get(key)
    return {
        "epoch": int(epoch),
        "criterion": criterion,
        "metric": what,
        "value": None if value is None else float(value),
        "postprocess": chosen["postprocess"].to_dict(),
        "postprocess_chosen_by": "val Team mAP@1" if by_team else "val mAP@1",
        "val_mAP": float(chosen["mAP"]),
        "val_team_mAP": None if chosen["team_mAP"] is None else float(chosen["team_mAP"]),
        "display_threshold": float(display_threshold),
        "fps": float(config["fps"]),
        "grid": [
            {
                **r["postprocess"].to_dict(),
                "mAP": float(r["mAP"]),
                "team_mAP": None if r["team_mAP"] is None else float(r["team_mAP"]),
            }
            for r in rows
        ],  # fmt: skip
    }


def per_class_windows(rows: list[dict], chosen: PostProcess, key: str) -> PostProcess:
    """``chosen`` with each class's NMS window replaced by the grid window that gives that class its best val AP
    (``key``: "per_class" or "team_per_class"), among the rows of the same NMS kind, smoothing and threshold.
    mAP is the mean of the class APs and each class's events are post-processed alone, so the result's val mAP is
    the mean of the per-class bests. Ties keep ``chosen``'s window."""
    same = [
        r for r in rows
        if (r["postprocess"].soft, r["postprocess"].sigma_s, r["postprocess"].threshold)
        == (chosen.soft, chosen.sigma_s, chosen.threshold) and r[key] is not None
    ]  # fmt: skip
    base = next((r for r in same if r["postprocess"].nms_window_s == chosen.nms_window_s), None)
    if base is None:
        return chosen
    windows = []
    for label, ap in base[key].items():
        best = max(same, key=lambda r: (r[key][label], r is base))
        if best[key][label] > ap:
            windows.append((label, best["postprocess"].nms_window_s))
    return replace(chosen, class_windows_s=tuple(windows))


def per_class_selection(
    record: dict[str, Any], results: Results, videos: Sequence[dict], config: dict, rows: list[dict]
) -> dict[str, Any]:
    """``record`` (``selection_record``) with per-class NMS windows (``--per_class_nms``): the chosen
    post-processing gets :func:`per_class_windows`, and its val mAP@1 / Team mAP@1 are measured again."""
    by_team = record["postprocess_chosen_by"] == "val Team mAP@1"
    chosen = PostProcess.from_dict(record["postprocess"])
    post = per_class_windows(rows, chosen, "team_per_class" if by_team else "per_class")
    if post == chosen:
        return {**record, "per_class_nms": True}
    (row,) = grid_scores(results, videos, config, [post])
    return {
        **record,
        "postprocess": post.to_dict(),
        "per_class_nms": True,
        "val_mAP": float(row["mAP"]),
        "val_team_mAP": None if row["team_mAP"] is None else float(row["team_mAP"]),
    }


def class_threshold_record(
    results: Results, videos: Sequence[dict], config: dict, post: PostProcess, target_precision: float
) -> dict[str, Any]:
    """The per-class display thresholds of ``selection.json``: on the val ``results`` post-processed by ``post``,
    each class's lowest threshold from which precision at delta = 1 s holds ``target_precision``
    (``util.metrics.analysis.precision_thresholds``; its best-F1 threshold when it never does; a class without
    val events or predictions gets none and is shown from the display threshold)."""
    from util.metrics.analysis import precision_thresholds

    classes = list(config["classes"])
    truth = labels_by_game(videos)
    predicted = predictions_by_game(scores_to_predictions(results, config, post))
    found = precision_thresholds(truth, predicted, classes, target_precision)
    return {
        "target_precision": float(target_precision),
        "class_thresholds": {c: v["threshold"] for c, v in found.items() if v["threshold"] is not None},
        "class_threshold_rules": {
            c: {k: v[k] for k in ("rule", "precision", "recall")} for c, v in found.items()
        },
    }
