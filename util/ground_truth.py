"""Step 4's ground truth: the games of a split and their annotated events, from a dataset's parsed labels or from
the Labels-ball.json files themselves (``eval_soccernet_ball.py -l LABEL_DIR``), and whether the challenge split's
labels are withheld (SoccerNet keeps them secret: it is then a submission, not an evaluation).
"""

from __future__ import annotations

import logging
from pathlib import Path

from util.dataset import load_split, resolve_dataset
from util.io import DataError
from util.metrics.results import labels_by_game
from util.metrics.spotting import SOCCERNET_FPS
from util.soccernet import LABEL_FILE, load_labels, split_video_id

log = logging.getLogger("eval_soccernet_ball")


def dataset_or_none(name: str) -> Path | None:
    try:
        return resolve_dataset(name)
    except DataError:
        return None


def split_games(dataset_dir: Path | None, split: str, predictions: list[dict]) -> list[str]:
    """The games to evaluate: the split's (parsed labels) when there, else those of the predictions."""
    if dataset_dir is not None and (dataset_dir / f"{split}.json").is_file():
        videos = load_split(dataset_dir, split)
    else:
        videos = predictions
        log.info("no parsed %s split: evaluating the %d predicted videos' games", split, len(videos))
    return list(dict.fromkeys(split_video_id(v["video"])[0] for v in videos))


def ground_truth_from_label_dir(label_dir: Path, games: list[str]) -> dict[str, list[dict]]:
    ground_truth = {}
    for game in games:
        path = label_dir / game / LABEL_FILE
        if not path.is_file():
            raise DataError(
                f"{path}: not found; -l takes the folder holding <league>/<season>/<game>/{LABEL_FILE}"
            )
        ground_truth[game] = load_labels(path)
    return ground_truth


def load_ground_truth(
    dataset: str, label_dir: str | None, dataset_dir: Path | None, split: str, predictions: list[dict]
) -> dict[str, list[dict]]:
    """``{game: events}`` of the split: from ``label_dir``'s Labels-ball.json when given, else the parsed labels of
    ``dataset`` (found at ``dataset_dir``)."""
    if label_dir:
        games = split_games(dataset_dir, split, predictions)
        return ground_truth_from_label_dir(Path(label_dir), games)
    if dataset_dir is None:
        resolve_dataset(dataset)  # raises the DataError that says where it looked
    videos = load_split(dataset_dir, split)
    approximate = [v for v in videos if any(e.get("position_ms") is None for e in v.get("events", []))]
    other_fps = sorted({float(v["fps"]) for v in approximate} - {float(SOCCERNET_FPS)})
    if other_fps:
        log.warning(
            "labels parsed at %s fps: their 25 fps frames are approximate; -l LABEL_DIR reads the exact positions",
            ", ".join(f"{f:g}" for f in other_fps),
        )
    return labels_by_game(videos)


def check_coverage(ground_truth: dict[str, list[dict]], predicted: dict[str, list[dict]]) -> None:
    missing = [g for g in ground_truth if g not in predicted]
    extra = [g for g in predicted if g not in ground_truth]
    if missing:
        log.warning(
            "%d game(s) without predictions (scored as such): %s", len(missing), ", ".join(missing[:3])
        )
    if extra:
        log.warning("%d predicted game(s) not in the split, ignored: %s", len(extra), ", ".join(extra[:3]))
    if not ground_truth:
        raise DataError("no game to evaluate")


def labels_withheld(label_dir: str | None, dataset_dir: Path | None, predictions: list[dict]) -> bool:
    """The challenge split's labels are SoccerNet's secret: its parsed videos have no events, and ``label_dir``
    (when given) holds no Labels-ball.json of its games."""
    if label_dir:
        games = split_games(dataset_dir, "challenge", predictions)
        return not any((Path(label_dir) / g / LABEL_FILE).is_file() for g in games)
    if dataset_dir is None or not (dataset_dir / "challenge.json").is_file():
        return True
    return not any(v.get("events") for v in load_split(dataset_dir, "challenge"))
