"""Step 2: a library (Labels-ball.json files + step 1's frame folders) -> the parsed splits of ``data/<name>/``.

Each video's events are placed at the frame rate of its frame folder (``fps.txt``); games come from SoccerNet's
split lists (or a ``splits.json``), classes from SoccerNet-Ball's list or the labels found. The formats are in
DESIGN.md; ``labels_table`` is the summary step 2 prints. ``label_format="v2"`` reads SoccerNet-v2 action spotting
instead (Labels-v2.json, its 17 classes, games in halves); ``detect_label_format`` tells the two apart.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from tabulate import tabulate

from util.frame_dir import VIDEO_FILE, FrameDir
from util.io import DataError, atomic_write_text, store_json
from util.soccernet import (
    CLASSES,
    FORMAT_CLASSES,
    FORMAT_NAMES,
    HALVES,
    HOME_AWAY,
    LABEL_FILE,
    LABEL_FILES,
    LABEL_FORMATS,
    SPLITS,
    SPLITS_FILE,
    VIDEO_EXTENSIONS,
    load_labels,
    position_to_frame,
)

log = logging.getLogger(__name__)


def _has_half_videos(game_dir: Path) -> bool:
    if not game_dir.is_dir():
        return False
    return any(
        p.name[:2] in ("1_", "2_") and p.suffix.lower() in VIDEO_EXTENSIONS for p in game_dir.iterdir()
    )


def game_video_ids(
    game: str, label_dir: str | os.PathLike, frame_dir: str | os.PathLike, halves: bool = False
) -> dict[int, str]:
    """``{half: video id}`` of a game: ``{1: game}`` in the one-video layout, ``{1: game/1, 2: game/2}`` in halves.

    A game is in the halves layout when ``halves`` says so (SoccerNet-v2 has no other), its frame folder has a
    ``1/`` or ``2/`` subfolder or its library folder (or FRAME_DIR's, when that is the video library) holds
    ``1_*.mkv``-style half videos.
    """
    frames = Path(frame_dir) / game
    if (
        halves
        or any((frames / str(h)).is_dir() for h in HALVES)
        or _has_half_videos(Path(label_dir) / game)
        or _has_half_videos(frames)
    ):
        return {h: f"{game}/{h}" for h in HALVES}
    return {1: game}


def infer_classes(labels: Iterable[str], known: list[str] = CLASSES) -> list[str]:
    """The classes the labels use, in SoccerNet's order when they are SoccerNet classes, else sorted.

    The real 2024/2025 labels use all 12 classes; the 2023 labels use PASS and DRIVE; a library that draws a subset
    (the synthetic one) gets that subset, so no class without any example lowers the mAP (the official evaluator
    scores a class with no ground truth as AP 0). ``known`` is SoccerNet's list (``CLASSES_V2`` for SoccerNet-v2).
    """
    used = set(labels)
    if used <= set(known):
        return [c for c in known if c in used]
    return sorted(used)


def detect_label_format(label_dir: str | os.PathLike, games: Iterable[str] | None = None) -> str:
    """``"v2"`` when the library holds SoccerNet-v2 labels (Labels-v2.json) and no Labels-ball.json, else ``"ball"``.

    ``games`` (paths relative to ``label_dir``) limits the look to those game folders; without it the whole folder
    is searched (hidden folders skipped). Ball stays the default: a library with both, or with neither, is Ball.
    """
    label_dir = Path(label_dir)
    found_v2 = False
    if games is not None:
        for game in games:
            if (label_dir / game / LABEL_FILE).is_file():
                return "ball"
            found_v2 = found_v2 or (label_dir / game / LABEL_FILES["v2"]).is_file()
        return "v2" if found_v2 else "ball"
    for _, subfolders, names in os.walk(label_dir):
        subfolders[:] = [d for d in subfolders if not d.startswith(".")]
        if LABEL_FILE in names:
            return "ball"
        found_v2 = found_v2 or LABEL_FILES["v2"] in names
    return "v2" if found_v2 else "ball"


@dataclass
class ParseNotes:
    """What step 2 left out without refusing (``parse_library(strict=False)``): single bad annotations (each a
    message naming the game, the label and the reason) and the split lists' games that are not in the library."""

    dropped_events: list[str] = field(default_factory=list)
    missing_games: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> list[str]:
        """Lines for people: how many of each, per split for the missing games."""
        lines = []
        if self.dropped_events:
            lines.append(
                f"{len(self.dropped_events)} annotation(s) dropped (each named above; --strict refuses them)"
            )
        missing = {s: len(g) for s, g in self.missing_games.items() if g}
        if missing:
            per_split = ", ".join(f"{split} {n}" for split, n in missing.items())
            lines.append(f"games of the split lists not in the library, left out: {per_split}")
        return lines


def _bad_annotation(where: str, label: str, reason: str, dropped: list[str] | None) -> None:
    """One bad annotation: dropped with a warning and recorded in ``dropped``; refused when that is None (strict:
    the game is bad)."""
    if dropped is None:
        raise DataError(f"{where}: {reason}")
    message = f"{where}: {label!r} dropped: {reason}"
    log.warning("%s", message)
    dropped.append(message)


def _parse_game(
    game: str,
    label_dir: Path,
    frames: FrameDir,
    require_labels: bool,
    label_format: str = "ball",
    sample_fps: float = 25.0,
    height: int | None = 224,
    dropped: list[str] | None = None,
) -> list[dict]:
    """Parsed entries (one per video) of one game; labels are checked against the classes later. A video without
    a frame folder is counted in the video library (the frames step 1 would write at ``sample_fps`` and
    ``height``). An annotation of an unknown half or past its video's end is dropped and described in
    ``dropped`` (None: a DataError, the game is bad)."""
    label_file = label_dir / game / LABEL_FILES[label_format]
    if label_file.is_file():
        annotations = load_labels(label_file, label_format)
    elif require_labels:
        raise DataError(f"{label_file}: not found (only challenge games may come without labels)")
    else:
        annotations = []
    videos = {}
    for half, video in game_video_ids(game, label_dir, frames.root, halves=label_format == "v2").items():
        info = frames.frame_info(video, sample_fps, height)
        videos[half] = {"video": video, "num_frames": info["num_frames"], "fps": info["fps"]}
        videos[half].update(width=info["width"], height=info["height"])
        if info.get(VIDEO_FILE):
            videos[half][VIDEO_FILE] = info[VIDEO_FILE]
        videos[half]["events"] = []
    for i, annotation in enumerate(annotations):
        where = f"{label_file}: annotation {i} ({annotation['game_time']})"
        half, label = annotation["half"], annotation["label"]
        if half not in videos:
            reason = (
                f"unknown half {half}: the game has one video (2024/2025 layout), so every annotation must be in "
                "half 1"
            )
            _bad_annotation(where, label, reason, dropped)
            continue
        video = videos[half]
        frame = position_to_frame(annotation["position_ms"], video["fps"])
        if frame >= video["num_frames"]:
            reason = (
                f"{annotation['position_ms']} ms is frame {frame}, past the end of {video['video']} "
                f"({video['num_frames']} frames at {video['fps']:g} fps); re-extract the frames or fix the label"
            )
            _bad_annotation(where, label, reason, dropped)
            continue
        # position_ms keeps the exact time, so metrics on parsed labels at any fps equal those on Labels-ball.json.
        event = {"frame": frame, "label": label, "position_ms": annotation["position_ms"]}
        if "team" in annotation:
            event["team"] = annotation["team"]
        if HOME_AWAY in annotation:  # SoccerNet-v2's club, kept apart from the team head's left/right
            event[HOME_AWAY] = annotation[HOME_AWAY]
        event["visibility"] = annotation["visibility"]
        video["events"].append(event)
    for video in videos.values():
        video["events"].sort(key=lambda e: e["frame"])  # stable: ties keep the file's order
    return [videos[h] for h in sorted(videos)]


def _check_games_present(
    label_dir: Path, frame_dir: Path, splits: dict[str, list[str]], label_format: str = "ball"
) -> None:
    games = [g for split in SPLITS for g in splits.get(split, [])]
    if not games:
        raise DataError("the split lists are empty: no game to parse")
    if any((label_dir / g).is_dir() or (frame_dir / g).is_dir() for g in games):
        return
    hint = f"pass --splits FILE (a splits.json) for a library other than {FORMAT_NAMES[label_format]}"
    if (label_dir / SPLITS_FILE).is_file():
        hint = f"pass --splits {label_dir / SPLITS_FILE}"
    raise DataError(
        f"{label_dir}: none of the {len(games)} games of the split lists is here ({games[0]}, ...); {hint}"
    )


def parse_library(
    label_dir: str | os.PathLike,
    frame_dir: str | os.PathLike,
    splits: dict[str, list[str]],
    classes: list[str] | None = None,
    skip_bad: bool = False,
    label_format: str = "ball",
    sample_fps: float = 25.0,
    height: int | None = 224,
    resolution: str = "224p",
    progress=None,
    strict: bool = False,
    notes: ParseNotes | None = None,
) -> tuple[list[str], dict[str, list[dict]], list[str]]:
    """Parse every game of ``splits`` -> ``(classes, {split: [video entry, ...]}, problems)``.

    ``classes=None`` infers them (``infer_classes``). Every bad game is reported at once in one DataError; with
    ``skip_bad`` bad games are dropped whole and their problems returned. A challenge game without labels gets empty
    event lists. With ``strict=False`` one bad annotation (an unknown half, past its video's end, an unknown label)
    costs that event alone, and a game of the split lists that is not in the library (neither its labels nor its
    frames) is left out; both are recorded in ``notes`` (and logged). Only a game that cannot be read is bad then. ``label_format="v2"`` reads
    each game's Labels-v2.json, in halves (``<game>/1``, ``<game>/2``), classes in SoccerNet-v2's order, and keeps
    its home / away as ``home_away`` (no ``team``).

    ``frame_dir`` may be the video library itself (no frames extracted): each video's frames are then counted as
    step 1 would write them at ``sample_fps`` and ``height`` (from file ``resolution`` when a game has several), and
    its entry names the file (``video_file``). ``progress(game)`` is called after each game.
    """
    if label_format not in LABEL_FORMATS:
        raise ValueError(f"label format {label_format!r} is not one of {list(LABEL_FORMATS)}")
    label_dir, frame_dir = Path(label_dir), Path(frame_dir)
    _check_games_present(label_dir, frame_dir, splits, label_format)
    frames = FrameDir(frame_dir, resolution)
    notes = notes if notes is not None else ParseNotes()
    dropped = None if strict else notes.dropped_events
    problems: list[str] = []
    games: list[tuple[str, str, list[dict]]] = []
    for split in SPLITS:
        for game in splits.get(split, []):
            if not strict and not (label_dir / game).exists() and not (frame_dir / game).exists():
                notes.missing_games.setdefault(split, []).append(game)
                continue
            try:
                videos = _parse_game(
                    game, label_dir, frames, split != "challenge", label_format, sample_fps, height, dropped
                )
                games.append((split, game, videos))
            except DataError as e:
                problems.append(f"game {game}: {e}")
            if progress is not None:
                progress(game)
    if classes is None:
        used = (e["label"] for _, _, videos in games for v in videos for e in v["events"])
        classes = infer_classes(used, FORMAT_CLASSES[label_format])
    parsed: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for split, game, videos in games:
        unknown = sorted({e["label"] for v in videos for e in v["events"]} - set(classes))
        label_file = label_dir / game / LABEL_FILES[label_format]
        if unknown and strict:
            problems.append(
                f"game {game}: {label_file}: unknown label(s) {unknown}; the classes are {classes} (a --classes "
                "file sets them)"
            )
            continue
        for video in videos:
            for event in [e for e in video["events"] if e["label"] not in classes]:
                reason = f"unknown label; the classes are {classes} (a --classes file sets them)"
                _bad_annotation(f"{label_file}: frame {event['frame']}", event["label"], reason, dropped)
            video["events"] = [e for e in video["events"] if e["label"] in classes]
        parsed[split].extend(videos)
    if problems and not skip_bad:
        raise DataError(
            f"{len(problems)} bad game(s), nothing written (--skip_bad skips them):\n  "
            + "\n  ".join(problems)
        )
    for problem in problems:
        log.warning("skipped %s", problem)
    return list(classes), parsed, problems


def write_parsed(out_dir: str | os.PathLike, classes: list[str], parsed: dict[str, list[dict]]) -> list[Path]:
    """Write ``class.txt`` and ``{train,val,test,challenge}.json``: all of them into a hidden folder first, then
    renamed into place one after the other, so that a failure while writing leaves the old set whole; returns
    their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".parsing-", dir=out_dir))
    try:
        atomic_write_text(staging / "class.txt", "".join(f"{c}\n" for c in classes))
        names = ["class.txt"]
        for split in SPLITS:
            store_json(staging / f"{split}.json", parsed.get(split, []))
            names.append(f"{split}.json")
        for name in names:
            os.replace(staging / name, out_dir / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [out_dir / name for name in names]


def labels_table(classes: list[str], parsed: dict[str, list[dict]]) -> str:
    """Videos and events per class per split, as a text table."""
    splits = [s for s in SPLITS if s in parsed]
    counts = {s: {c: 0 for c in classes} for s in splits}
    for split in splits:
        for video in parsed[split]:
            for event in video["events"]:
                if event["label"] in counts[split]:
                    counts[split][event["label"]] += 1
    rows = [["videos", *(len(parsed[s]) for s in splits)]]
    rows += [[c, *(counts[s][c] for s in splits)] for c in classes]
    rows.append(["all events", *(sum(counts[s].values()) for s in splits)])
    for row in rows:
        row.append(sum(row[1:]))
    return tabulate(rows, headers=["", *splits, "total"], tablefmt="simple")
