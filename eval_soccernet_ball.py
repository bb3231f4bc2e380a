#!/usr/bin/env python3
"""Evaluate spotting predictions with SoccerNet's action-spotting mAP (and Team mAP when predictions carry teams).

MODEL_DIR is a model directory (its pred-SPLIT.EPOCH.json / .score.npz), a prediction file (pred-SPLIT.EPOCH.json:
a list of {video, fps, events}), or several model directories (an ensemble: their per-frame scores are averaged,
then post-processed). Ground truth: the parsed labels of DATASET, or with -l the Labels-ball.json files themselves.

A model directory is evaluated as training chose on val (its selection.json): that epoch, and that
post-processing (NMS window in seconds, hard or soft, smoothing); the flags below override either, and what is used
is printed. A prediction file is scored as it is (its events were post-processed when it was written) unless an NMS
flag is given.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before torch is imported: re-execute with tcmalloc when it is installed
    from util.allocator import use_fast_allocator

    use_fast_allocator()

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

# The predictions come from model.evaluate (each model directory read once, as a model.folder.ModelFolder), the
# ground truth from util.ground_truth; this script parses the flags, scores, and writes what was asked for.
from model.evaluate import (
    PostprocessFlags,
    PredictionSettings,
    load_predictions,
    open_sources,
    record_thresholds,
)
from model.folder import ModelFolder
from util.cli import add_prediction_flags, run_main, setup_logging
from util.dataset import load_classes, split_name
from util.ground_truth import check_coverage, dataset_or_none, labels_withheld, load_ground_truth, split_games
from util.io import DataError, store_json
from util.metrics.results import format_results, predictions_by_game, spotting_results
from util.metrics.spotting import METRICS, TEAM_METRICS
from util.postprocess import DEFAULT_TARGET_PRECISION, TEAM_NMS_MODES
from util.soccernet import CLASSES
from util.submission import check_submission, write_results_spotting, zip_results

log = logging.getLogger("eval_soccernet_ball")

SUBMISSION_ZIP = "results_spotting.zip"


def get_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("dataset", help="dataset name (data/<name>/) or a parsed-labels folder")
    parser.add_argument(
        "frame_dir",
        help="frame folder, or the video library itself (read only to run a model that has no predictions yet)",
    )
    parser.add_argument(
        "model_dir", nargs="+", help="model directory, prediction file, or several model dirs"
    )
    parser.add_argument("-s", "--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument(
        "--epoch",
        type=int,
        help="epoch of a model directory's predictions (default: the one training selected on val)",
    )
    predict = parser.add_argument_group(
        "prediction (default: as the model was trained, config.json); given, a model directory predicts the "
        "split again with them, into MODEL_DIR/predict-<settings>/ (its own predictions stay as they are)"
    )
    add_prediction_flags(predict, "as the model was trained")
    post = parser.add_argument_group(
        "post-processing (default: what the model recorded in selection.json; a prediction file: as it is)"
    )
    nms = post.add_mutually_exclusive_group()
    nms.add_argument(
        "--nms_window", type=int, help="NMS window, +- frames at the model's frame rate (0 = off)"
    )
    nms.add_argument("--nms_window_s", type=float, help="NMS window, +- seconds (0 = off)")
    post.add_argument(
        "--soft_nms", action=argparse.BooleanOptionalAction, help="soft NMS instead of hard NMS (or not)"
    )
    post.add_argument("--threshold", type=float, help="lowest score of an event made from per-frame scores")
    sigma = post.add_mutually_exclusive_group()
    sigma.add_argument("--sigma", type=float, help="Gaussian smoothing of per-frame scores, frames (0 = off)")
    sigma.add_argument("--sigma_s", type=float, help="Gaussian smoothing of per-frame scores, seconds")
    post.add_argument(
        "--team_nms",
        choices=TEAM_NMS_MODES,
        help="NMS per (class, team), on p(class, team), or per class (events of a prediction file: by their team)",
    )
    parser.add_argument(
        "-l", "--soccernet_path", metavar="LABEL_DIR", help="ground truth from Labels-ball.json"
    )
    parser.add_argument("--eval_dir", help="write the SoccerNet submission files and zip here")
    parser.add_argument("--results_json", help="write every metric here as JSON (fractions)")
    report = parser.add_argument_group("the evaluation report (--report)")
    report.add_argument(
        "--report",
        metavar="DIR",
        type=Path,
        help="write DIR/report.html (self-contained: opens offline), its figures as PNGs and report.json: "
        "AP against delta, precision-recall curves, timing offsets, confusions, worst errors, bootstrap intervals",
    )
    report.add_argument(
        "--report_threshold",
        type=float,
        default=0.5,
        help="confidence from which a prediction counts as shown, for the report's confusions and error lists "
        "(default 0.5; the APs use every threshold)",
    )
    report.add_argument(
        "--bootstrap_rounds", type=int, default=500, help="bootstrap resamples of the intervals (default 500)"
    )
    report.add_argument(
        "--bootstrap_chunk_s",
        type=float,
        default=60.0,
        help="length of the contiguous chunks of play the bootstrap resamples, seconds (default 60)",
    )
    record = parser.add_argument_group("display thresholds (training records them; this records them again)")
    record.add_argument(
        "--record_thresholds",
        action="store_true",
        help="with -s val and one model directory: record in its selection.json, per class, the lowest threshold "
        "from which val precision at delta = 1 s stays >= --target_precision (else the best-F1 threshold); "
        "inference and the app show events from there",
    )
    record.add_argument(
        "--target_precision",
        type=float,
        default=DEFAULT_TARGET_PRECISION,
        help=f"the precision --record_thresholds holds (default {DEFAULT_TARGET_PRECISION})",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if not 0.0 <= args.target_precision <= 1.0:
        parser.error("--target_precision must be in [0, 1]")
    if args.record_thresholds and (split_name(args.split) != "val" or len(args.model_dir) != 1
                                   or not Path(args.model_dir[0]).is_dir()):  # fmt: skip
        parser.error(
            "--record_thresholds needs -s val and one model directory (thresholds are chosen on val)"
        )
    for name in ("nms_window", "nms_window_s", "sigma", "sigma_s"):
        if getattr(args, name) is not None and getattr(args, name) < 0:
            parser.error(f"--{name} must be >= 0")
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        parser.error("--threshold must be in [0, 1]")
    if args.window_overlap is not None and not 0.0 <= args.window_overlap < 1.0:
        parser.error("--window_overlap must be in [0, 1)")
    if (args.tta or args.window_overlap is not None) and any(Path(p).is_file() for p in args.model_dir):
        parser.error(
            "--tta and --window_overlap run a model again: give model directories, not prediction files"
        )
    if not 0.0 <= args.report_threshold <= 1.0:
        parser.error("--report_threshold must be in [0, 1]")
    if args.bootstrap_rounds < 1 or args.bootstrap_chunk_s <= 0:
        parser.error("--bootstrap_rounds must be >= 1 and --bootstrap_chunk_s > 0")
    return args


def submit(
    args: argparse.Namespace, dataset_dir: Path | None, predictions: list[dict], classes: list[str]
) -> int:
    """The challenge: SoccerNet's files and the zip its server takes, checked; no metric (the labels are withheld)."""
    if not args.eval_dir:
        raise DataError(
            "-s challenge: its labels are withheld, so there is nothing to score here; pass --eval_dir OUT to write "
            "the submission (results_spotting.json per game and the zip the evaluation server takes)"
        )
    games = split_games(dataset_dir, "challenge", predictions)
    written = write_results_spotting(predictions, args.eval_dir)
    zip_path = zip_results(args.eval_dir, Path(args.eval_dir) / SUBMISSION_ZIP)
    team = any(e.get("team") is not None for v in predictions for e in v["events"])
    checked = check_submission(zip_path, games, classes, team)
    task = "Team Ball Action Spotting" if team else "Ball Action Spotting"  # 2025 and 2024
    print(
        f"challenge: {checked['games']} game(s), {checked['rows']} predictions, written in {len(written)} "
        f"results_spotting.json; the labels are withheld, so no metric is computed here"
    )
    print(
        f"submission for the {task} challenge: {zip_path} (checked: every challenge game, SoccerNet's fields, halves)"
    )
    print("upload that zip to SoccerNet's evaluation server for the challenge")
    return 0


def _record(
    folder: ModelFolder, ground_truth: dict, predicted: dict, classes: list[str], target: float
) -> None:
    """--record_thresholds, and the table of what was recorded."""
    from tabulate import tabulate

    path, found = record_thresholds(folder, ground_truth, predicted, classes, target)
    rows = [[c, "-" if v["threshold"] is None else f"{v['threshold']:.3f}", v["rule"],
             "-" if v["precision"] is None else f"{v['precision']:.3f}",
             "-" if v["recall"] is None else f"{v['recall']:.3f}"] for c, v in found.items()]  # fmt: skip
    print(tabulate(rows, headers=["class", "threshold", "rule", "val precision", "val recall"]))
    print(f"recorded in {path} (target precision {target:g}); inference and the app now show from these")


def main(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    split = split_name(args.split)
    dataset_dir = dataset_or_none(args.dataset)
    has_classes = dataset_dir is not None and (dataset_dir / "class.txt").is_file()
    classes = load_classes(dataset_dir) if has_classes else list(CLASSES)
    sources = open_sources(args.model_dir)  # each model folder read once, from here on
    settings, flags = PredictionSettings.from_namespace(args), PostprocessFlags.from_namespace(args)
    predictions = load_predictions(sources, split, classes, settings, flags)
    if split == "challenge" and labels_withheld(args.soccernet_path, dataset_dir, predictions):
        return submit(args, dataset_dir, predictions, classes)
    ground_truth = load_ground_truth(args.dataset, args.soccernet_path, dataset_dir, split, predictions)
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
    first = sources[0] if len(sources) == 1 and isinstance(sources[0], ModelFolder) else None
    if args.record_thresholds:
        _record(first, ground_truth, predicted, classes, args.target_precision)
        first = ModelFolder(first.path)  # selection.json as just recorded, for the report
    if args.report:
        from util.report import write_report

        recorded = first.selection["record"] if first is not None and first.selection["recorded"] else None
        page = write_report(args.report, ground_truth, predicted, classes, results, split,
                            source=" ".join(str(m) for m in args.model_dir), threshold=args.report_threshold,
                            rounds=args.bootstrap_rounds, chunk_s=args.bootstrap_chunk_s,
                            recorded=recorded)  # fmt: skip
        print(f"wrote {page} (open it in a browser; the figures are also beside it as PNGs)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, get_args()))
