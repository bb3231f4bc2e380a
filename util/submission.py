"""SoccerNet's files out of this toolkit's predictions: ``results_spotting.json`` per game (what the evaluator
and the evaluation server take), the zip of a split's submission, and ``Labels-ball.json`` back from parsed
videos (the synthetic library and tests write ground truth with it), and ``events.csv`` (step 5's events for a
spreadsheet).

A prediction's frame becomes a position in ms at its video's frame rate (``frame_to_position_ms``), the halves of
a game go into one file, and each file is written atomically.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import zipfile
from collections.abc import Iterable
from pathlib import Path

from util.io import DataError, atomic_open, store_json
from util.soccernet import (
    EVAL_FPS,
    LABEL_FILE,
    PREDICTION_FILE,
    frame_to_position_ms,
    game_time,
    is_soccernet_game,
    split_video_id,
)

log = logging.getLogger(__name__)


def _group_by_game(videos: Iterable[dict]) -> dict[str, list[tuple[int, dict]]]:
    """Per-video dicts -> ``{game: [(half, video dict), ...]}``; halves of a game go together."""
    games: dict[str, list[tuple[int, dict]]] = {}
    layouts: dict[str, str] = {}
    seen: set[str] = set()
    for video in videos:
        video_id = video.get("video") if isinstance(video, dict) else None
        if not isinstance(video_id, str) or not video_id:
            raise DataError(f"a video entry has no 'video' id: {str(video)[:80]}")
        if video_id in seen:
            raise DataError(f"video {video_id!r} appears twice")
        seen.add(video_id)
        game, half = split_video_id(video_id)
        layout = "one video" if half is None else "halves"
        if layouts.setdefault(game, layout) != layout:
            raise DataError(f"game {game!r} has both a one-video id and half ids ({video_id!r})")
        games.setdefault(game, []).append((half or 1, video))
    return games


def _video_fps(video: dict) -> float:
    try:
        fps = float(video["fps"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"video {video['video']!r}: no valid 'fps'") from None
    if not math.isfinite(fps) or fps <= 0:
        raise DataError(f"video {video['video']!r}: fps {fps} is not positive")
    return fps


def _position(event: dict, fps: float, eval_fps: float, video_id: str) -> int:
    try:
        return frame_to_position_ms(int(event["frame"]), fps, eval_fps)
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"video {video_id!r}: event {event} has no valid 'frame' ({e})") from None


def write_results_spotting(
    predictions: list[dict], out_dir: str | os.PathLike, eval_fps: float = EVAL_FPS
) -> list[Path]:
    """Per-video predictions ``{video, fps, events: [{frame, label, score[, team]}]}`` -> one
    ``<out_dir>/<game>/results_spotting.json`` per game (halves merged); returns the paths written.

    Positions come from ``frame_to_position_ms`` so the evaluator maps each back to its ``eval_fps`` frame. Rows
    are sorted by half and position, stably: rows of one ``eval_fps`` frame share one position, so they keep the
    order of ``events``, and the evaluator's rule (the last row of a frame and class wins) picks the same row as
    in the prediction file.
    """
    paths = []
    for game, halves in sorted(_group_by_game(predictions).items()):
        rows = []
        for half, video in halves:
            fps = _video_fps(video)
            for event in video.get("events", []):
                if "label" not in event or "score" not in event:
                    raise DataError(f"video {video['video']!r}: event {event} needs 'label' and 'score'")
                position_ms = _position(event, fps, eval_fps, video["video"])
                row = {"gameTime": game_time(half, position_ms), "label": event["label"]}
                row.update(position=str(position_ms), half=str(half), confidence=str(float(event["score"])))
                if event.get("team") is not None:
                    row["team"] = event["team"]
                rows.append(row)
        rows.sort(key=lambda r: (int(r["half"]), int(r["position"])))
        path = Path(out_dir) / game / PREDICTION_FILE
        store_json(path, {"UrlLocal": game, "predictions": rows})
        paths.append(path)
    return paths


def write_labels(videos: list[dict], out_dir: str | os.PathLike, eval_fps: float = EVAL_FPS) -> list[Path]:
    """Parsed entries (``{video, fps, events: [{frame, label, team?, visibility}]}``) -> one
    ``<out_dir>/<game>/Labels-ball.json`` per game, for SoccerNet's evaluator; returns the paths written."""
    paths = []
    for game, halves in sorted(_group_by_game(videos).items()):
        rows = []
        for half, video in halves:
            fps = _video_fps(video)
            for event in video.get("events", []):
                position_ms = _position(event, fps, eval_fps, video["video"])
                row = {"gameTime": game_time(half, position_ms), "label": event["label"]}
                row["position"] = str(position_ms)
                if event.get("team") is not None:
                    row["team"] = event["team"]
                row["visibility"] = event.get("visibility", "visible")
                rows.append((half, position_ms, row))
        rows.sort(key=lambda r: r[:2])
        path = Path(out_dir) / game / LABEL_FILE
        store_json(path, {"UrlLocal": game, "annotations": [row for _, _, row in rows]})
        paths.append(path)
    return paths


def zip_results(out_dir: str | os.PathLike, zip_path: str | os.PathLike) -> Path:
    """Zip every ``<game>/results_spotting.json`` under ``out_dir`` as the evaluation server expects: entries
    ``<league>/<season>/<game>/results_spotting.json`` at the zip's root. Written atomically."""
    out_dir, zip_path = Path(out_dir), Path(zip_path)
    files = sorted(out_dir.rglob(PREDICTION_FILE))
    if not files:
        raise DataError(f"{out_dir}: no {PREDICTION_FILE} to zip")
    with (
        atomic_open(zip_path, "wb") as f,
        zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as archive,
    ):
        for path in files:
            archive.write(path, arcname=path.relative_to(out_dir).as_posix())
    return zip_path


SUBMISSION_FIELDS = ("gameTime", "label", "position", "half", "confidence")


def _row_problem(row: object, classes: set[str], team: bool) -> str | None:
    """What is wrong with one results_spotting.json row, for the evaluation server; None when nothing."""
    if not isinstance(row, dict):
        return f"a row is not an object: {str(row)[:60]}"
    missing = [k for k in (*SUBMISSION_FIELDS, *(("team",) if team else ())) if k not in row]
    if missing:
        return f"a row lacks {', '.join(missing)}: {row}"
    if row["label"] not in classes:
        return f"label {row['label']!r} is not one of the classes"
    if str(row["half"]) not in ("1", "2") or not str(row["gameTime"]).startswith(f"{row['half']} - "):
        return f"half {row['half']!r} and gameTime {row['gameTime']!r} disagree"
    if not str(row["position"]).isdigit():
        return f"position {row['position']!r} is not milliseconds"
    try:
        confidence = float(row["confidence"])
    except (TypeError, ValueError):
        return f"confidence {row['confidence']!r} is not a number"
    if not math.isfinite(confidence):
        return f"confidence {row['confidence']!r} is not finite"
    if team and row["team"] not in ("left", "right"):
        return f"team {row['team']!r} is not left or right"
    return None


def check_submission(
    zip_path: str | os.PathLike, games: Iterable[str], classes: Iterable[str], team: bool
) -> dict:
    """Check a submission zip as the evaluation server reads it: one ``<game>/results_spotting.json`` per game
    of the split, JSON with a ``predictions`` list, every row with SoccerNet's fields (and ``team``, left or
    right, for the team task), a label of ``classes``, its half in gameTime. ``{"games", "rows"}``, or DataError
    listing the problems."""
    games, classes = list(games), set(classes)
    problems, rows = [], 0
    with zipfile.ZipFile(zip_path) as archive:
        names = set(archive.namelist())
        for game in games:
            entry = f"{game}/{PREDICTION_FILE}"
            if entry not in names:
                problems.append(f"{entry}: missing")
                continue
            try:
                predictions = json.loads(archive.read(entry))["predictions"]
            except (ValueError, KeyError, TypeError) as e:
                problems.append(f"{entry}: not SoccerNet's format ({e})")
                continue
            rows += len(predictions)
            found = [p for p in (_row_problem(r, classes, team) for r in predictions) if p]
            problems += [f"{entry}: {p}" for p in found[:3]]
        extra = sorted(n for n in names if n.rsplit("/", 1)[0] not in set(games))
        problems += [f"{n}: not a game of the split" for n in extra[:3]]
    if problems:
        raise DataError(f"{zip_path}: not a valid submission: " + "; ".join(problems[:8]))
    return {"games": len(games), "rows": rows}


def write_video_results(prediction: dict, output_dir: Path) -> Path:
    """SoccerNet's results_spotting.json of the video, placed directly in ``output_dir``; a video that is not a
    SoccerNet game (an upload) is written as one game of one half."""
    staging = output_dir / ".results_spotting.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    if not is_soccernet_game(prediction["video"]):
        game = str(prediction["video"] or "video")
        prediction = dict(prediction, video="video" if set(game) <= {".", "/"} else game.replace("/", "_"))
    try:
        (written,) = write_results_spotting([prediction], staging)
        target = output_dir / PREDICTION_FILE
        written.replace(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


EVENTS_CSV_COLUMNS = ("time_s", "time", "label", "team", "score", "team_score", "frame")


def write_events_csv(path: Path, events: Iterable[dict]) -> Path:
    """Events (``predictions.json``'s, with ``time_s`` and ``time``) as CSV for spreadsheets and video tools:
    one row per event in time order, the columns of :data:`EVENTS_CSV_COLUMNS` (team and team_score empty
    without a team head); written atomically."""
    import csv

    rows = sorted(events, key=lambda e: (e["frame"], -e["score"]))
    with atomic_open(path, "w") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(EVENTS_CSV_COLUMNS)
        for e in rows:
            writer.writerow(["" if e.get(k) is None else (f"{e[k]:.4f}" if k in ("score", "team_score") else e[k])
                             for k in EVENTS_CSV_COLUMNS])  # fmt: skip
    return path
