"""The toolkit's formats into the metrics and back out as tables: per-video predictions and parsed labels ->
``{game: events}`` (``predictions_by_game``, ``labels_by_game``), every metric of a prediction set at once
(``spotting_results``), and the printed table (``format_results``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from util.io import DataError
from util.metrics.spotting import (
    METRICS,
    SOCCERNET_FPS,
    TEAM_METRICS,
    EventsByGame,
    soccernet_maps,
    team_maps,
)
from util.soccernet import CLASSES, TEAMS, frame_to_position_ms, split_video_id

log = logging.getLogger(__name__)


def has_team(events_by_game: EventsByGame) -> bool:
    """True when some event carries a team ("left" / "right")."""
    return any(e.get("team") in TEAMS for events in events_by_game.values() for e in events)


def spotting_results(
    ground_truth: EventsByGame,
    predictions: EventsByGame,
    classes: Sequence[str] = CLASSES,
    metrics: Sequence[str] = METRICS,
    team_metrics: Sequence[str] = TEAM_METRICS,
) -> dict[str, dict[str, Any]]:
    """Every metric in the ``--results_json`` shape: ``{metric: {"mAP", "per_class", ...}}``, with the
    ``team_*`` metrics added when both the ground truth and the predictions carry teams."""
    results = soccernet_maps(ground_truth, predictions, classes, metrics)
    if team_metrics and has_team(ground_truth) and has_team(predictions):
        results.update(team_maps(ground_truth, predictions, classes, team_metrics))
    return results


def format_results(results: Mapping[str, Mapping[str, Any]], classes: Sequence[str]) -> str:
    """Text tables of ``spotting_results`` (percent): rows = classes, columns = metrics; Team mAP separately."""
    from tabulate import tabulate

    def table(metrics: list[str], title: str, extra_rows: bool) -> str:
        rows = [[c, *(100 * results[m]["per_class"][c] for m in metrics)] for c in classes]
        rows.append([title, *(100 * results[m]["mAP"] for m in metrics)])
        if extra_rows:
            rows.append(["visible", *(100 * results[m]["mAP_visible"] for m in metrics)])
            rows.append(["not shown", *(100 * results[m]["mAP_unshown"] for m in metrics)])
        return tabulate(rows, headers=["AP (%)", *metrics], floatfmt=".2f", tablefmt="simple")

    plain = [m for m in results if not m.startswith("team_")]
    team = [m for m in results if m.startswith("team_")]
    parts = [table(plain, "mAP", True)] if plain else []
    if team:
        parts.append(table(team, "Team mAP", False))
    return "\n\n".join(parts)


# ---- per-video formats -> per-game events


def predictions_by_game(predictions: Sequence[Mapping[str, Any]]) -> dict[str, list[dict]]:
    """Per-video predictions ``{video, fps, events: [{frame, label, score[, team]}]}`` -> ``{game: [row, ...]}``
    with the rows ``util.submission.write_results_spotting`` writes (same positions, same order), so the scores
    equal the official evaluator's on the submission files, duplicated rows included."""
    games: dict[str, list[tuple]] = {}
    for video in predictions:
        game, half = split_video_id(video["video"])
        rows = games.setdefault(game, [])
        for event in video.get("events", []):
            try:
                position_ms = frame_to_position_ms(int(event["frame"]), float(video["fps"]))
                confidence = float(event["score"])
            except (KeyError, TypeError, ValueError) as e:
                raise DataError(f"predictions of {video['video']!r}: event {event}: {e}") from None
            row = {
                "half": half or 1,
                "position_ms": position_ms,
                "label": event["label"],
                "confidence": confidence,
            }
            if event.get("team") is not None:
                row["team"] = event["team"]
            rows.append((half or 1, position_ms, row))
    out = {}
    for game, rows in games.items():
        # The writer's order (stable by half and position): of the rows of one frame and class, the last in the
        # prediction file is the one the evaluator keeps.
        rows.sort(key=lambda r: r[:2])
        out[game] = [r[2] for r in rows]
    return out


def labels_by_game(
    videos: Sequence[Mapping[str, Any]], framerate: int = SOCCERNET_FPS
) -> dict[str, list[dict]]:
    """Parsed label entries ``{video, fps, events: [{frame, label, team?, visibility}]}`` -> ``{game: [event]}``.

    Events that keep their ``position_ms`` (step 2 writes it) are exact at any frame rate; otherwise, at 25 fps a
    parsed frame is exactly the official frame, and at another frame rate the event is placed at the middle of
    its 25 fps frame (``frame_to_position_ms``), an approximation.
    """
    out: dict[str, list[dict]] = {}
    for video in videos:
        game, half = split_video_id(video["video"])
        fps = float(video["fps"])
        rows = out.setdefault(game, [])
        for event in video.get("events", []):
            row = {k: v for k, v in event.items() if k in ("label", "team", "visibility")}
            row["half"] = half or 1
            if event.get("position_ms") is not None:
                row["position_ms"] = int(event["position_ms"])
            elif fps == framerate:
                row["frame"] = int(event["frame"])
            else:
                row["position_ms"] = frame_to_position_ms(int(event["frame"]), fps, framerate)
            rows.append(row)
    return out
