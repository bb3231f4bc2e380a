"""SoccerNet-Ball facts and formats: classes, library layouts, Labels-ball.json and submissions.

See ../shared/SOCCERNET.md (kept in sync with the SoccerNet package's own code).
"""

from __future__ import annotations

# imports of the labels-and-submissions section (step 2)
import logging
import math
import os
import re
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from util.io import DataError, atomic_open, atomic_write_text, load_json, store_json

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


# ---- labels and submissions (step 2)
# Labels-ball.json -> events; a library (labels + frame folders) -> parsed splits; predictions ->
# results_spotting.json per game and the zip the evaluation server takes. Public API:
#   position_to_frame, frame_to_position_ms, parse_game_time, load_labels, read_frame_folder, game_video_ids,
#   default_splits, load_splits, infer_classes, parse_library, write_parsed, summary_table,
#   split_video_id, write_results_spotting, write_labels, zip_results.

log = logging.getLogger(__name__)

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


def _parse_annotation(annotation: object) -> dict:
    """One Labels-ball.json annotation -> event dict; ValueError says what is wrong."""
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
    if annotation.get("team") is not None:
        if annotation["team"] not in TEAMS:
            raise ValueError(f"team {annotation['team']!r} is not one of {list(TEAMS)}")
        event["team"] = annotation["team"]
    event["visibility"] = visibility
    return event


def load_labels(label_file: str | os.PathLike) -> list[dict]:
    """Read a Labels-ball.json: a list of ``{half, position_ms, game_time, label, team?, visibility}``.

    ``team`` is absent when the annotation has none; a missing ``visibility`` is ``"visible"`` (as the official
    evaluator reads it). A malformed file or annotation raises DataError naming the file and the annotation.
    """
    data = load_json(label_file)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise DataError(f"{label_file}: no 'annotations' list; is this a SoccerNet {LABEL_FILE}?")
    events = []
    for i, annotation in enumerate(data["annotations"]):
        try:
            events.append(_parse_annotation(annotation))
        except ValueError as e:
            where = annotation.get("gameTime") if isinstance(annotation, dict) else None
            raise DataError(f"{label_file}: annotation {i} ({where}): {e}") from None
    return events


def read_frame_folder(folder: str | os.PathLike) -> dict:
    """``{fps, num_frames, width, height}`` of one video's frame folder (``000000.jpg``... and ``fps.txt``)."""
    from PIL import Image  # Pillow comes with torchvision; only the JPEG header is read

    folder = Path(folder)
    hint = "extract the frames first (frames_as_jpg_soccernet_ball.py)"
    if not folder.is_dir():
        raise DataError(f"{folder}: frame folder not found; {hint}")
    fps_file = folder / FPS_FILE
    if not fps_file.is_file():
        raise DataError(f"{fps_file}: not found (the frame rate of the extracted frames); {hint}")
    try:
        fps = float(fps_file.read_text(encoding="utf-8").strip())
    except ValueError:
        raise DataError(f"{fps_file}: not a frame rate (expected one number such as 25.0)") from None
    if not math.isfinite(fps) or fps <= 0:
        raise DataError(f"{fps_file}: frame rate {fps} is not positive")
    names = {entry.name for entry in os.scandir(folder) if entry.name.endswith(".jpg")}
    num_frames = len(names)
    if num_frames == 0:
        raise DataError(f"{folder}: no JPEG frames; {hint}")
    if any(f"{i:06d}.jpg" not in names for i in range(num_frames)):  # a gap would shift every later frame
        raise DataError(f"{folder}: frames are not numbered 000000.jpg to {num_frames - 1:06d}.jpg; {hint}")
    try:
        with Image.open(folder / f"{0:06d}.jpg") as image:
            width, height = image.size
    except OSError as e:
        raise DataError(f"{folder / '000000.jpg'}: cannot read the image ({e})") from None
    return {"fps": fps, "num_frames": num_frames, "width": width, "height": height}


def _has_half_videos(game_dir: Path) -> bool:
    if not game_dir.is_dir():
        return False
    return any(
        p.name[:2] in ("1_", "2_") and p.suffix.lower() in VIDEO_EXTENSIONS for p in game_dir.iterdir()
    )


def game_video_ids(game: str, label_dir: str | os.PathLike, frame_dir: str | os.PathLike) -> dict[int, str]:
    """``{half: video id}`` of a game: ``{1: game}`` in the one-video layout, ``{1: game/1, 2: game/2}`` in halves.

    A game is in the halves layout when its frame folder has a ``1/`` or ``2/`` subfolder or its library folder
    holds ``1_*.mkv``-style half videos.
    """
    frames = Path(frame_dir) / game
    if any((frames / str(h)).is_dir() for h in HALVES) or _has_half_videos(Path(label_dir) / game):
        return {h: f"{game}/{h}" for h in HALVES}
    return {1: game}


def default_splits() -> dict[str, list[str]]:
    """SoccerNet's own ball-spotting game lists (offline data in the SoccerNet package), keyed by our split names."""
    from SoccerNet.utils import getListGames

    return {
        split: [Path(g).as_posix() for g in getListGames(sn_split, task="spotting", dataset="Ball")]
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


def infer_classes(labels: Iterable[str]) -> list[str]:
    """The classes the labels use, in SoccerNet's order when they are SoccerNet classes, else sorted.

    The real 2024/2025 labels use all 12 classes; the 2023 labels use PASS and DRIVE; a library that draws a subset
    (the synthetic one) gets that subset, so no class without any example lowers the mAP (the official evaluator
    scores a class with no ground truth as AP 0).
    """
    used = set(labels)
    if used <= set(CLASSES):
        return [c for c in CLASSES if c in used]
    return sorted(used)


def _parse_game(game: str, label_dir: Path, frame_dir: Path, require_labels: bool) -> list[dict]:
    """Parsed entries (one per video) of one game; labels are checked against the classes later."""
    label_file = label_dir / game / LABEL_FILE
    if label_file.is_file():
        annotations = load_labels(label_file)
    elif require_labels:
        raise DataError(f"{label_file}: not found (only challenge games may come without labels)")
    else:
        annotations = []
    videos = {}
    for half, video in game_video_ids(game, label_dir, frame_dir).items():
        info = read_frame_folder(frame_dir / video)
        videos[half] = {"video": video, "num_frames": info["num_frames"], "fps": info["fps"]}
        videos[half].update(width=info["width"], height=info["height"], events=[])
    for i, annotation in enumerate(annotations):
        where = f"{label_file}: annotation {i} ({annotation['game_time']})"
        half = annotation["half"]
        if half not in videos:
            raise DataError(
                f"{where}: unknown half {half}: the game has one video (2024/2025 layout), so every annotation "
                "must be in half 1"
            )
        video = videos[half]
        frame = position_to_frame(annotation["position_ms"], video["fps"])
        if frame >= video["num_frames"]:
            raise DataError(
                f"{where}: {annotation['position_ms']} ms is frame {frame}, past the end of {video['video']} "
                f"({video['num_frames']} frames at {video['fps']:g} fps); re-extract the frames or fix the label"
            )
        # position_ms keeps the exact time, so metrics on parsed labels at any fps equal those on Labels-ball.json.
        event = {"frame": frame, "label": annotation["label"], "position_ms": annotation["position_ms"]}
        if "team" in annotation:
            event["team"] = annotation["team"]
        event["visibility"] = annotation["visibility"]
        video["events"].append(event)
    for video in videos.values():
        video["events"].sort(key=lambda e: e["frame"])  # stable: ties keep the file's order
    return [videos[h] for h in sorted(videos)]


def _check_games_present(label_dir: Path, frame_dir: Path, splits: dict[str, list[str]]) -> None:
    games = [g for split in SPLITS for g in splits.get(split, [])]
    if not games:
        raise DataError("the split lists are empty: no game to parse")
    if any((label_dir / g).is_dir() or (frame_dir / g).is_dir() for g in games):
        return
    hint = "pass --splits FILE (a splits.json) for a library other than SoccerNet-Ball"
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
) -> tuple[list[str], dict[str, list[dict]], list[str]]:
    """Parse every game of ``splits`` -> ``(classes, {split: [video entry, ...]}, problems)``.

    ``classes=None`` infers them (``infer_classes``). Every bad game is reported at once in one DataError; with
    ``skip_bad`` bad games are dropped whole (a game with some events dropped would teach false background) and
    their problems returned. A challenge game without labels gets empty event lists.
    """
    label_dir, frame_dir = Path(label_dir), Path(frame_dir)
    _check_games_present(label_dir, frame_dir, splits)
    problems: list[str] = []
    games: list[tuple[str, str, list[dict]]] = []
    for split in SPLITS:
        for game in splits.get(split, []):
            try:
                games.append((split, game, _parse_game(game, label_dir, frame_dir, split != "challenge")))
            except DataError as e:
                problems.append(f"game {game}: {e}")
    if classes is None:
        classes = infer_classes(e["label"] for _, _, videos in games for v in videos for e in v["events"])
    parsed: dict[str, list[dict]] = {split: [] for split in SPLITS}
    for split, game, videos in games:
        unknown = sorted({e["label"] for v in videos for e in v["events"]} - set(classes))
        if unknown:
            problems.append(
                f"game {game}: {label_dir / game / LABEL_FILE}: unknown label(s) {unknown}; "
                f"the classes are {classes} (a --classes file sets them)"
            )
            continue
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
    """Write ``class.txt`` and ``{train,val,test,challenge}.json`` (each atomically); returns their paths."""
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "class.txt", "".join(f"{c}\n" for c in classes))
    paths = [out_dir / "class.txt"]
    for split in SPLITS:
        store_json(out_dir / f"{split}.json", parsed.get(split, []))
        paths.append(out_dir / f"{split}.json")
    return paths


def summary_table(classes: list[str], parsed: dict[str, list[dict]]) -> str:
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


def split_video_id(video: str) -> tuple[str, int | None]:
    """``"league/season/game/1"`` -> ``("league/season/game", 1)``; a one-video id -> ``(video, None)``."""
    head, _, tail = video.rpartition("/")
    if head and tail in {str(h) for h in HALVES}:
        return head, int(tail)
    return video, None


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


def find_videos(video_dir: str | os.PathLike, resolution: str = "224p") -> list[VideoEntry]:
    """Every video under ``video_dir``, sorted by video id, in either SoccerNet layout.

    ``<league>/<season>/<game>/224p.mp4`` gives the id ``<league>/<season>/<game>``; ``<game>/1_224p.mkv`` gives
    ``<game>/1``. When a game has several resolutions, ``resolution`` is taken if present, else 224p, else 720p.
    Other video files are taken as they are (id = folder/stem); ``video_dir`` may also be a single video file
    (id = its stem). Hidden files and folders are skipped.
    """
    root = Path(video_dir)
    if root.is_file():
        return [VideoEntry(root.stem, root)]
    if not root.is_dir():
        raise DataError(f"{root}: no such file or folder")
    entries: list[VideoEntry] = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        files = [
            Path(folder, n)
            for n in sorted(names)
            if not n.startswith(".") and Path(n).suffix.lower() in VIDEO_EXTENSIONS
        ]
        rel = Path(folder).relative_to(root).as_posix()
        entries += _folder_videos(Path(folder), "" if rel == "." else rel, files, resolution)
    if not entries:
        raise DataError(
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
