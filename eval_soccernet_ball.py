#!/usr/bin/env python3
"""Evaluate spotting predictions with SoccerNet's action-spotting mAP (and Team mAP when predictions carry teams).

MODEL_DIR is a model directory (its pred-SPLIT.EPOCH.json / .score.npz), a prediction file (pred-SPLIT.EPOCH.json:
a list of {video, fps, events}), or several model directories (an ensemble: their per-frame scores are averaged,
then post-processed). Ground truth: the parsed labels of DATASET, or with -l the Labels-ball.json files themselves.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from util.cli import run_main, setup_logging
from util.dataset import SPLIT_ALIASES, load_classes, load_split, resolve_dataset, split_name
from util.eval import DEFAULT_NMS_WINDOW, DEFAULT_THRESHOLD, average_scores, nms_events, scores_to_events
from util.io import DataError, load_json, store_json
from util.score import (
    METRICS,
    SOCCERNET_FPS,
    TEAM_METRICS,
    format_results,
    labels_by_game,
    predictions_by_game,
    spotting_results,
)
from util.soccernet import (
    CLASSES,
    LABEL_FILE,
    load_labels,
    split_video_id,
    write_results_spotting,
    zip_results,
)

log = logging.getLogger("eval_soccernet_ball")

_PRED_FILE = re.compile(r"^pred-(?P<split>\w+)\.(?P<epoch>\d+)\.json(\.gz)?$")
TEAM_KEY = "::team"  # "<video>::team" in a .score.npz: per-frame P(right)
SUBMISSION_ZIP = "results_spotting.zip"


def get_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset", help="dataset name (data/<name>/) or a parsed-labels folder")
    parser.add_argument(
        "frame_dir", help="frame folder (read only to run a model that has no predictions yet)"
    )
    parser.add_argument(
        "model_dir", nargs="+", help="model directory, prediction file, or several model dirs"
    )
    parser.add_argument("-s", "--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument(
        "--epoch",
        type=int,
        help="epoch of a model directory's predictions (default: best val mAP, else latest)",
    )
    parser.add_argument(
        "--nms_window",
        type=int,
        default=DEFAULT_NMS_WINDOW,
        help="NMS window in frames (default: 25; 0 = off)",
    )
    parser.add_argument("--soft_nms", action="store_true", help="soft NMS instead of hard NMS")
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help="score threshold when events are made from per-frame scores (default: 0.01)",
    )
    parser.add_argument(
        "--sigma", type=float, default=0.0, help="Gaussian smoothing of per-frame scores (frames)"
    )
    parser.add_argument(
        "-l", "--soccernet_path", metavar="LABEL_DIR", help="ground truth from Labels-ball.json"
    )
    parser.add_argument("--eval_dir", help="write the SoccerNet submission files and zip here")
    parser.add_argument("--results_json", help="write every metric here as JSON (fractions)")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.nms_window < 0:
        parser.error("--nms_window must be >= 0")
    return args


# ---- predictions


def prediction_files(model_dir: Path, split: str) -> dict[int, Path]:
    """``{epoch: pred-SPLIT.EPOCH.json}`` of a model directory."""
    found = {}
    for path in model_dir.iterdir():
        match = _PRED_FILE.match(path.name)
        if match and SPLIT_ALIASES.get(match["split"], match["split"]) == split:
            found[int(match["epoch"])] = path
    return found


def score_file(pred_file: Path) -> Path:
    """``pred-test.12.json`` -> ``pred-test.12.score.npz`` (its per-frame scores)."""
    return pred_file.with_name(re.sub(r"\.json(\.gz)?$", ".score.npz", pred_file.name))


def run_model(model_dir: Path, split: str, args: argparse.Namespace) -> Path:
    """Predict ``split`` with the model in ``model_dir``; returns the prediction file written."""
    from model.common import list_epochs, load_model
    from model.predict import predict_split, resolve_device

    epochs = list_epochs(model_dir)
    if not epochs:
        raise DataError(f"{model_dir}: no pred-{split}.*.json predictions and no checkpoint to predict with")
    epoch, why = default_epoch(model_dir, epochs)
    log.info("%s: predicting %s with epoch %d (%s)", model_dir, split, epoch, why)
    videos = load_split(resolve_dataset(args.dataset), split)
    model, config, epoch = load_model(model_dir, epoch, device=resolve_device(None))
    return predict_split(model, config, args.frame_dir, videos, split, model_dir, epoch)[1]


def pick_prediction_file(model_dir: Path, split: str, args: argparse.Namespace) -> Path:
    files = prediction_files(model_dir, split)
    if args.epoch is not None:
        if args.epoch not in files:
            raise DataError(
                f"{model_dir}: no pred-{split}.{args.epoch}.json (epochs with predictions: {sorted(files)})"
            )
        return files[args.epoch]
    if not files:
        return run_model(model_dir, split, args)
    epoch, why = default_epoch(model_dir, sorted(files))
    log.info("%s: epoch %d (%s; --epoch to choose)", model_dir, epoch, why)
    return files[epoch]


def default_epoch(model_dir: Path, epochs: list[int]) -> tuple[int, str]:
    """The epoch with the best validation mAP in loss.json among ``epochs``, else the latest of them."""
    history = load_json(model_dir / "loss.json") if (model_dir / "loss.json").is_file() else []
    scored = {
        h["epoch"]: h["val_mAP"]
        for h in history
        if isinstance(h, dict) and h.get("epoch") in epochs and h.get("val_mAP") is not None
    }
    if scored:
        return max(scored, key=lambda e: (scored[e], e)), "the best val_mAP in loss.json"
    return epochs[-1], "the latest with predictions"


def load_prediction_file(path: Path) -> list[dict]:
    videos = load_json(path)
    if not isinstance(videos, list) or not all(isinstance(v, dict) and "video" in v for v in videos):
        raise DataError(f"{path}: expected a list of {{video, fps, events}} (a pred-SPLIT.EPOCH.json)")
    for v in videos:
        if "fps" not in v or not isinstance(v.get("events", []), list):
            raise DataError(f"{path}: video {v['video']!r} needs 'fps' and an 'events' list")
    return videos


def load_scores(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read the per-frame scores ({e})") from None


def model_classes(model_dir: Path, default: list[str]) -> list[str]:
    config = model_dir / "config.json"
    if config.is_file():
        classes = load_json(config).get("classes")
        if isinstance(classes, list) and classes:
            return classes
    return default


def events_from_scores(
    scores: dict[str, np.ndarray], fps: dict[str, float], classes: list[str], args: argparse.Namespace
) -> list[dict]:
    """Per-frame score arrays -> per-video predictions, with the one post-processing (util.eval)."""
    videos = []
    for video, array in scores.items():
        if video.endswith(TEAM_KEY):
            continue
        if array.ndim != 2 or array.shape[1] != len(classes) + 1:
            raise DataError(
                f"scores of {video!r}: shape {array.shape}, expected (frames, {len(classes) + 1})"
            )
        events = scores_to_events(
            array,
            classes,
            fps[video],
            args.threshold,
            args.nms_window,
            soft=args.soft_nms,
            sigma=args.sigma,
            team_scores=scores.get(video + TEAM_KEY),
        )
        videos.append({"video": video, "fps": fps[video], "events": events})
    return videos


def load_predictions(args: argparse.Namespace, split: str, classes: list[str]) -> list[dict]:
    """The predictions to evaluate, post-processed (module docstring)."""
    paths = [Path(p) for p in args.model_dir]
    for path in paths:
        if not path.exists():
            raise DataError(f"{path}: no such model directory or prediction file")
    if len(paths) == 1 and paths[0].is_file():
        videos = load_prediction_file(paths[0])
        return [dict(v, events=nms_events(v["events"], args.nms_window, soft=args.soft_nms)) for v in videos]
    if any(p.is_file() for p in paths):
        raise DataError("an ensemble takes model directories only (their .score.npz are averaged)")
    pred_files = [pick_prediction_file(p, split, args) for p in paths]
    npz = [score_file(f) for f in pred_files]
    videos = load_prediction_file(pred_files[0])
    if len(paths) == 1 and not npz[0].is_file():
        log.info("%s: no per-frame scores; post-processing its events", npz[0])
        return [dict(v, events=nms_events(v["events"], args.nms_window, soft=args.soft_nms)) for v in videos]
    for path in npz:
        if not path.is_file():
            raise DataError(f"{path}: not found; an ensemble needs every model's per-frame scores")
    try:
        scores = average_scores([load_scores(p) for p in npz])
    except ValueError as e:
        raise DataError(f"cannot average {', '.join(map(str, npz))}: {e}") from None
    fps = {v["video"]: float(v["fps"]) for v in videos}
    missing = [k for k in scores if not k.endswith(TEAM_KEY) and k not in fps]
    if missing:
        raise DataError(f"{pred_files[0]}: no fps for {missing[:3]} (in {npz[0]})")
    return events_from_scores(scores, fps, model_classes(paths[0], classes), args)


# ---- ground truth


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
    args: argparse.Namespace, dataset_dir: Path | None, split: str, predictions: list[dict]
) -> dict[str, list[dict]]:
    if args.soccernet_path:
        games = split_games(dataset_dir, split, predictions)
        return ground_truth_from_label_dir(Path(args.soccernet_path), games)
    if dataset_dir is None:
        resolve_dataset(args.dataset)  # raises the DataError that says where it looked
    videos = load_split(dataset_dir, split)
    other_fps = sorted({float(v["fps"]) for v in videos} - {float(SOCCERNET_FPS)})
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


# ---- main


def main(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    split = split_name(args.split)
    dataset_dir = dataset_or_none(args.dataset)
    has_classes = dataset_dir is not None and (dataset_dir / "class.txt").is_file()
    classes = load_classes(dataset_dir) if has_classes else list(CLASSES)
    predictions = load_predictions(args, split, classes)
    ground_truth = load_ground_truth(args, dataset_dir, split, predictions)
    predicted = predictions_by_game(predictions)
    check_coverage(ground_truth, predicted)
    if args.eval_dir:
        written = write_results_spotting(predictions, args.eval_dir)
        zip_path = zip_results(args.eval_dir, Path(args.eval_dir) / SUBMISSION_ZIP)
        print(f"wrote {len(written)} results_spotting.json and {zip_path}")
    results = spotting_results(ground_truth, predicted, classes, METRICS, TEAM_METRICS)
    print(
        f"{split}: {len(ground_truth)} game(s), {sum(len(v['events']) for v in predictions)} predicted events"
    )
    print(format_results(results, classes))
    if args.results_json:
        store_json(args.results_json, results)
        print(f"wrote {args.results_json}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, get_args()))
