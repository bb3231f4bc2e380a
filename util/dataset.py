"""Parsed-label datasets: ``data/<name>/`` (or any folder) with ``class.txt`` and ``{train,val,test,challenge}.json``.

Each split file is a list of ``{"video", "num_frames", "fps", "width", "height", "events": [{"frame", "label",
"team"?, "visibility"?}]}`` (written by parse_soccernet_ball.py; DESIGN.md "Formats").
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from util.io import DataError, load_json, load_text_lines
from util.soccernet import SPLITS

DATA_DIR = Path(__file__).resolve().parents[1] / "data"
CLASS_FILE = "class.txt"
SPLIT_ALIASES = {"valid": "val", "validation": "val"}


def split_name(split: str) -> str:
    """Our name of a split (SoccerNet's ``valid`` is ``val``); an unknown split raises DataError."""
    name = SPLIT_ALIASES.get(split, split)
    if name not in SPLITS:
        raise DataError(f"unknown split {split!r}; use one of {list(SPLITS)}")
    return name


def resolve_dataset(name_or_path: str | os.PathLike) -> Path:
    """A dataset folder: the path itself when it is a folder, else ``data/<name>`` (under the working directory,
    then under the repository)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    candidates = [Path.cwd() / "data" / path, DATA_DIR / path]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise DataError(
        f"dataset {str(name_or_path)!r}: no such folder (looked in {', '.join(str(c) for c in candidates)}); "
        "parse the labels first (parse_soccernet_ball.py LABEL_DIR FRAME_DIR -o data/<name>) or pass the folder"
    )


def load_classes(dataset_dir: str | os.PathLike) -> list[str]:
    """The class names of a dataset (``class.txt``, one a line, in order)."""
    path = Path(dataset_dir) / CLASS_FILE
    classes = load_text_lines(path)
    if not classes:
        raise DataError(f"{path}: no class names")
    if len(set(classes)) != len(classes):
        raise DataError(f"{path}: a class is listed twice")
    return classes


def _check_video(path: Path, i: int, video: Any, classes: set[str] | None) -> None:
    if not isinstance(video, dict) or not isinstance(video.get("video"), str):
        raise DataError(f"{path}: entry {i} is not a {{video, fps, events}} object")
    where = f"{path}: video {video['video']!r}"
    try:
        fps = float(video["fps"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{where}: no valid 'fps'") from None
    if not math.isfinite(fps) or fps <= 0:
        raise DataError(f"{where}: fps {fps} is not positive")
    events = video.get("events", [])
    if not isinstance(events, list):
        raise DataError(f"{where}: 'events' is not a list")
    for event in events:
        if not isinstance(event, dict) or not isinstance(event.get("frame"), int) or "label" not in event:
            raise DataError(f"{where}: event {event} needs an integer 'frame' and a 'label'")
        if classes is not None and event["label"] not in classes:
            raise DataError(f"{where}: label {event['label']!r} is not in {CLASS_FILE}; re-parse the labels")


def load_split(dataset_dir: str | os.PathLike, split: str) -> list[dict]:
    """The videos of one split (``valid`` reads ``val.json``), checked: ids, fps and events (labels in class.txt)."""
    dataset_dir = Path(dataset_dir)
    path = dataset_dir / f"{split_name(split)}.json"
    videos = load_json(path)
    if not isinstance(videos, list):
        raise DataError(f"{path}: expected a list of videos")
    classes = set(load_classes(dataset_dir)) if (dataset_dir / CLASS_FILE).is_file() else None
    for i, video in enumerate(videos):
        _check_video(path, i, video, classes)
    return videos
