"""SoccerNet-Ball facts: classes, teams, splits, video names and ids, game times, Labels-ball.json, library layouts;
and SoccerNet-v2 action spotting's (Labels-v2.json, its 17 classes and splits), the pretraining source.

Step 2's parsing is ``util.parse``, the submission files ``util.submission``.

See ../shared/SOCCERNET.md (kept in sync with the SoccerNet package's own code).
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from util.io import DataError, load_json

log = logging.getLogger(__name__)

# The 12 classes of SoccerNet-Ball 2024/2025, in SoccerNet's order (its EVENT_DICTIONARY for the 2024 task).
CLASSES = [
    "PASS",
    "DRIVE",
    "HEADER",
    "HIGH PASS",
    "OUT",
    "CROSS",
    "THROW IN",
    "SHOT",
    "BALL PLAYER BLOCK",
    "PLAYER SUCCESSFUL TACKLE",
    "FREE KICK",
    "GOAL",
]
# The 2023 edition's two classes.
CLASSES_2023 = ["PASS", "DRIVE"]

TEAMS = ("left", "right")
VISIBILITIES = ("visible", "not shown")

LABEL_FILE = "Labels-ball.json"

# SoccerNet-v2 action spotting (the pretraining source of the top Ball systems): its 17 classes in SoccerNet's order
# (SoccerNet.Evaluation.utils.EVENT_DICTIONARY_V2), one Labels-v2.json per game, games in halves.
CLASSES_V2 = [
    "Penalty",
    "Kick-off",
    "Goal",
    "Substitution",
    "Offside",
    "Shots on target",
    "Shots off target",
    "Clearance",
    "Ball out of play",
    "Throw-in",
    "Foul",
    "Indirect free-kick",
    "Direct free-kick",
    "Corner",
    "Yellow card",
    "Red card",
    "Yellow->red card",
]
LABEL_FILE_V2 = "Labels-v2.json"
# v2's "team" is the club (home / away), not the side of the pitch the Ball task's team head predicts, so a v2 event
# keeps it as "home_away", never as "team"; "not applicable" (no team) is dropped.
TEAMS_V2 = ("home", "away")
TEAM_V2_NONE = "not applicable"
HOME_AWAY = "home_away"
# Label formats step 2 reads: the label file of each game, the classes in SoccerNet's order, the dataset's name.
LABEL_FORMATS = ("ball", "v2")
LABEL_FILES = {"ball": LABEL_FILE, "v2": LABEL_FILE_V2}
FORMAT_CLASSES = {"ball": CLASSES, "v2": CLASSES_V2}
FORMAT_NAMES = {"ball": "SoccerNet-Ball", "v2": "SoccerNet-v2"}
PREDICTION_FILE = "results_spotting.json"
RESOLUTIONS = ("224p", "720p")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".avi", ".mov", ".webm")


def game_time(half: int, position_ms: int) -> str:
    """SoccerNet's ``gameTime`` string, ``"1 - 03:12"`` (minutes are not wrapped at 60)."""
    total_s = int(position_ms) // 1000
    return f"{half} - {total_s // 60:02d}:{total_s % 60:02d}"


def one_video_name(resolution: str = "224p") -> str:
    """File name of a game's single video in the 2024/2025 layout (``224p.mp4``)."""
    return f"{resolution}.mp4"


def half_video_name(half: int, resolution: str = "224p", ext: str = ".mkv") -> str:
    """File name of one half in the 2023 / SoccerNet-v2 layout (``1_224p.mkv``)."""
    return f"{half}_{resolution}{ext}"


SPLITS = ("train", "val", "test", "challenge")
# SoccerNet's package calls our "val" split "valid".
SOCCERNET_SPLIT_NAMES = {"train": "train", "val": "valid", "test": "test", "challenge": "challenge"}
EVAL_FPS = 25  # the frame rate SoccerNet's evaluator and server score at
HALVES = (1, 2)
FPS_FILE = "fps.txt"
SPLITS_FILE = "splits.json"

_GAME_TIME = re.compile(r"^\s*(\d+)\s*-\s*(\d+):(\d{1,2})\s*$")


def position_to_frame(position_ms: float, fps: float) -> int:
    """Frame of a position: the official evaluator's own expression, float rounding included."""
    return int(fps * (position_ms / 1000))


def frame_to_position_ms(frame: int, fps: float, eval_fps: float = EVAL_FPS) -> int:
    """Milliseconds of ``frame`` (at ``fps``), chosen so ``position_to_frame(ms, eval_fps)`` gives back its frame.

    The frame's time falls in ``eval_fps`` frame ``g``; the middle of ``g`` (``40 g + 20`` ms at 25 fps) is clear of
    the float rounding at frame edges (``int(25 * (2280 / 1000))`` is 56, not 57).
    """
    if frame < 0:
        raise ValueError(f"negative frame {frame}")
    target = math.floor(frame * eval_fps / fps + 1e-9)
    position_ms = round((target + 0.5) * 1000 / eval_fps)
    while position_ms > 0 and position_to_frame(position_ms, eval_fps) > target:
        position_ms -= 1
    while position_to_frame(position_ms, eval_fps) < target:
        position_ms += 1
    return position_ms


def parse_game_time(text: str) -> tuple[int, int]:
    """``"1 - 03:12"`` -> ``(1, 192000)``: the half and the position in ms (second precision)."""
    match = _GAME_TIME.match(str(text))
    if not match:
        raise ValueError(f"gameTime {text!r} is not 'HALF - MM:SS'")
    half, minutes, seconds = (int(g) for g in match.groups())
    return half, (minutes * 60 + seconds) * 1000


def _parse_annotation(annotation: object, label_format: str = "ball") -> dict:
    """One Labels-ball.json (or, for ``"v2"``, Labels-v2.json) annotation -> event dict; ValueError says what is
    wrong."""
    if not isinstance(annotation, dict):
        raise ValueError("is not an object")
    label = annotation.get("label")
    if not isinstance(label, str) or not label.strip():
        raise ValueError("has no label")
    if "gameTime" not in annotation:
        raise ValueError("has no gameTime")
    half, coarse_ms = parse_game_time(annotation["gameTime"])
    if half not in HALVES:
        raise ValueError(f"unknown half {half} (SoccerNet games have halves 1 and 2)")
    position = annotation.get("position", coarse_ms)
    try:
        position_ms = int(position)
    except (TypeError, ValueError):
        raise ValueError(f"position {position!r} is not a whole number of milliseconds") from None
    if position_ms < 0:
        raise ValueError(f"negative position {position_ms}")
    visibility = annotation.get("visibility", "visible")
    if visibility not in VISIBILITIES:
        raise ValueError(f"visibility {visibility!r} is not one of {list(VISIBILITIES)}")
    event = {"half": half, "position_ms": position_ms, "game_time": annotation["gameTime"], "label": label}
    if label_format == "v2":
        team = annotation.get("team")
        if team is not None and team not in (*TEAMS_V2, TEAM_V2_NONE):
            raise ValueError(f"team {team!r} is not one of {[*TEAMS_V2, TEAM_V2_NONE]}")
        if team in TEAMS_V2:
            event[HOME_AWAY] = team
    elif annotation.get("team") is not None:
        if annotation["team"] not in TEAMS:
            raise ValueError(f"team {annotation['team']!r} is not one of {list(TEAMS)}")
        event["team"] = annotation["team"]
    event["visibility"] = visibility
    return event


def load_labels(label_file: str | os.PathLike, label_format: str = "ball") -> list[dict]:
    """Read a Labels-ball.json: a list of ``{half, position_ms, game_time, label, team?, visibility}``.

    ``team`` is absent when the annotation has none; a missing ``visibility`` is ``"visible"`` (as the official
    evaluator reads it). A malformed file or annotation raises DataError naming the file and the annotation.
    ``label_format="v2"`` reads a SoccerNet-v2 Labels-v2.json: its ``team`` (home / away, the club, not the side of
    the pitch) becomes ``home_away`` and "not applicable" none, so no v2 event has a ``team``.
    """
    if label_format not in LABEL_FORMATS:
        raise ValueError(f"label format {label_format!r} is not one of {list(LABEL_FORMATS)}")
    data = load_json(label_file)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise DataError(
            f"{label_file}: no 'annotations' list; is this a SoccerNet {LABEL_FILES[label_format]}?"
        )
    events = []
    for i, annotation in enumerate(data["annotations"]):
        try:
            events.append(_parse_annotation(annotation, label_format))
        except ValueError as e:
            where = annotation.get("gameTime") if isinstance(annotation, dict) else None
            raise DataError(f"{label_file}: annotation {i} ({where}): {e}") from None
    return events


def default_splits(label_format: str = "ball") -> dict[str, list[str]]:
    """SoccerNet's own game lists (offline data in the SoccerNet package), keyed by our split names: ball spotting's
    (``getListGames(split, task="spotting", dataset="Ball")``) or, for ``"v2"``, SoccerNet-v2 action spotting's
    (``getListGames(split, task="spotting")``: 300 train, 100 valid, 100 test, 50 challenge games)."""
    from SoccerNet.utils import getListGames

    if label_format not in LABEL_FORMATS:
        raise ValueError(f"label format {label_format!r} is not one of {list(LABEL_FORMATS)}")
    dataset = {"ball": "Ball", "v2": "SoccerNet"}[label_format]
    return {
        split: [Path(g).as_posix() for g in getListGames(sn_split, task="spotting", dataset=dataset)]
        for split, sn_split in SOCCERNET_SPLIT_NAMES.items()
    }


def load_splits(path: str | os.PathLike) -> dict[str, list[str]]:
    """Read a ``splits.json`` (``{"train": [game, ...], "val": ..., "test": ..., "challenge": ...}``).

    ``valid`` is accepted for ``val``; a missing split is empty; a game in two splits is an error.
    """
    data = load_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected an object {{split: [game, ...]}}")
    splits: dict[str, list[str]] = {split: [] for split in SPLITS}
    seen: dict[str, str] = {}
    for key, games in data.items():
        split = "val" if key == "valid" else key
        if split not in splits:
            raise DataError(f"{path}: unknown split {key!r}; use {list(SPLITS)}")
        if not isinstance(games, list) or not all(isinstance(g, str) and g.strip() for g in games):
            raise DataError(f"{path}: split {key!r} must be a list of game paths (relative to LABEL_DIR)")
        for game in games:
            game = Path(game).as_posix()
            if game in seen:
                raise DataError(f"{path}: game {game!r} is in both {seen[game]!r} and {split!r}")
            seen[game] = split
            splits[split].append(game)
    return splits


def split_video_id(video: str) -> tuple[str, int | None]:
    """``"league/season/game/1"`` -> ``("league/season/game", 1)``; a one-video id -> ``(video, None)``."""
    head, _, tail = video.rpartition("/")
    if head and tail in {str(h) for h in HALVES}:
        return head, int(tail)
    return video, None


# ---- library layout (step 1)

# A SoccerNet video's stem: "224p" (one video per game) or "1_224p" (halves); the resolution may also be "HQ".
_SOCCERNET_VIDEO = re.compile(r"^(?:(?P<half>[12])_)?(?P<resolution>\d+p|HQ)$", re.IGNORECASE)


@dataclass(frozen=True)
class VideoEntry:
    """One video of a library. Its frames go to ``FRAME_DIR/<video_id>/``; ``half`` is 1 or 2 in the halves layout."""

    video_id: str
    path: Path
    half: int | None = None


def _rank(path: Path, resolution: str, preferred: str) -> tuple:
    order = [preferred.lower(), *RESOLUTIONS]
    res = resolution.lower()
    ext = path.suffix.lower()
    return (order.index(res) if res in order else len(order), res, VIDEO_EXTENSIONS.index(ext), path.name)


def _folder_videos(folder: Path, video_id: str, files: list[Path], resolution: str) -> list[VideoEntry]:
    """The videos of one folder: a game's one video or two halves (best resolution each), or loose files."""
    candidates: dict[int | None, list[tuple[tuple, Path]]] = {}
    entries = []
    for path in files:
        match = _SOCCERNET_VIDEO.match(path.stem)
        if match is None:
            entries.append(VideoEntry(f"{video_id}/{path.stem}" if video_id else path.stem, path))
            continue
        half = int(match["half"]) if match["half"] else None
        candidates.setdefault(half, []).append((_rank(path, match["resolution"], resolution), path))
    game_id = video_id or folder.resolve().name
    for half, ranked in candidates.items():
        path = min(ranked)[1]
        entries.append(VideoEntry(game_id if half is None else f"{game_id}/{half}", path, half))
    return entries


class NoVideosError(DataError):
    """``find_videos`` found no video at all (a folder of frames, say), as opposed to a library it cannot use."""


def find_videos(
    video_dir: str | os.PathLike, resolution: str = "224p", skip_folder: str | None = None
) -> list[VideoEntry]:
    """Every video under ``video_dir``, sorted by video id, in either SoccerNet layout.

    ``<league>/<season>/<game>/224p.mp4`` gives the id ``<league>/<season>/<game>``; ``<game>/1_224p.mkv`` gives
    ``<game>/1``. When a game has several resolutions, ``resolution`` is taken if present, else 224p, else 720p.
    Other video files are taken as they are (id = folder/stem); ``video_dir`` may also be a single video file
    (id = its stem). Hidden files and folders are skipped, and folders holding a file named ``skip_folder`` (step 1's
    ``fps.txt``: a frame folder, thousands of JPEGs) are not listed. No video at all raises ``NoVideosError``.
    """
    root = Path(video_dir)
    if root.is_file():
        return [VideoEntry(root.stem, root)]
    if not root.is_dir():
        raise DataError(f"{root}: no such file or folder")
    entries: list[VideoEntry] = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(
            d
            for d in subfolders
            if not d.startswith(".")
            and not (skip_folder and os.path.isfile(os.path.join(folder, d, skip_folder)))
        )
        files = [
            Path(folder, n)
            for n in sorted(names)
            if not n.startswith(".") and Path(n).suffix.lower() in VIDEO_EXTENSIONS
        ]
        rel = Path(folder).relative_to(root).as_posix()
        entries += _folder_videos(Path(folder), "" if rel == "." else rel, files, resolution)
    if not entries:
        raise NoVideosError(
            f"{root}: no videos found (expected <league>/<season>/<game>/224p.mp4, <game>/1_224p.mkv, "
            f"or files ending in {', '.join(VIDEO_EXTENSIONS)})"
        )
    _check_unique(entries)
    return sorted(entries, key=lambda e: e.video_id)


def _check_unique(entries: list[VideoEntry]) -> None:
    by_id: dict[str, list[Path]] = {}
    for entry in entries:
        by_id.setdefault(entry.video_id, []).append(entry.path)
    clashes = {vid: paths for vid, paths in by_id.items() if len(paths) > 1}
    if clashes:
        vid, paths = next(iter(clashes.items()))
        raise DataError(
            f"{len(clashes)} video ids name several files, e.g. {vid!r}: {', '.join(map(str, paths))}; "
            "keep one file per name"
        )


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N) with 0 <= K < N: shard K of N takes every N-th video starting at the K-th."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if match is None or not int(match[1]) < int(match[2]):
        raise ValueError(f"shard must be K/N with 0 <= K < N (e.g. 0/4), got {text!r}")
    return int(match[1]), int(match[2])


def take_shard(entries: list, shard: int, num_shards: int) -> list:
    """Every ``num_shards``-th entry starting at ``shard``: the shards of one list partition it."""
    return entries[shard::num_shards]


def video_id_of_file(path: Path) -> str:
    """The SoccerNet video id of a library file (``<league>/<season>/<game>`` for ``.../<game>/224p.mp4``,
    ``.../<game>/1`` for ``1_224p.mkv``), else the file's stem."""
    match = _SOCCERNET_VIDEO.match(path.stem)
    parents = path.resolve().parent.parts
    if match is None or len(parents) < 4:
        return path.stem
    game = "/".join(parents[-3:])
    return f"{game}/{match['half']}" if match["half"] else game


def is_soccernet_game(video_id: str) -> bool:
    """True for ``<league>/<season>/<game>`` or ``<league>/<season>/<game>/<half>`` ids."""
    game, _ = split_video_id(video_id)
    return len(game.split("/")) == 3
