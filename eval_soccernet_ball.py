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
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from util.cli import add_prediction_flags, run_main, setup_logging
from util.dataset import SPLIT_ALIASES, load_classes, load_split, resolve_dataset, split_name
from util.io import DataError, load_json, store_json
from util.metrics.results import format_results, labels_by_game, predictions_by_game, spotting_results
from util.metrics.spotting import METRICS, SOCCERNET_FPS, TEAM_METRICS
from util.postprocess import (
    DEFAULT_TARGET_PRECISION,
    DISPLACEMENT_KEY,
    TEAM_KEY,
    PostProcess,
    average_scores,
    is_aux_key,
    load_score_arrays,
    nms_events,
    scores_to_events,
    window_frames,
)
from util.soccernet import CLASSES, LABEL_FILE, load_labels, split_video_id
from util.submission import check_submission, write_results_spotting, zip_results

log = logging.getLogger("eval_soccernet_ball")

_PRED_FILE = re.compile(r"^pred-(?P<split>\w+)\.(?P<epoch>\d+)\.json(\.gz)?$")
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


def user_postprocess(base: PostProcess, fps: float, args: argparse.Namespace) -> PostProcess:
    """``base`` with the post-processing flags the user gave (frames read at ``fps``)."""
    sigma_s = args.sigma_s if args.sigma is None else args.sigma / fps
    return base.with_overrides(
        nms_window=args.nms_window,
        nms_window_s=args.nms_window_s,
        fps=fps,
        soft=args.soft_nms,
        sigma_s=sigma_s,
        threshold=args.threshold,
    )


def postprocess_flags_given(args: argparse.Namespace) -> bool:
    names = ("nms_window", "nms_window_s", "soft_nms", "threshold", "sigma", "sigma_s")
    return any(getattr(args, n) is not None for n in names)


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


def prediction_overrides(args: argparse.Namespace) -> dict:
    """The prediction settings given on the command line (``--tta``, ``--window_overlap``), as config keys."""
    given = {"tta": args.tta, "window_overlap": args.window_overlap}
    return {k: v for k, v in given.items() if v is not None}


def prediction_dir(model_dir: Path, args: argparse.Namespace) -> Path:
    """Where the predictions evaluated live: the model directory, or ``predict-<settings>/`` inside it when
    ``--tta`` / ``--window_overlap`` ask for other prediction settings than training's."""
    overrides = prediction_overrides(args)
    if not overrides:
        return model_dir
    return model_dir / ("predict-" + ".".join(f"{k}-{v:g}" if isinstance(v, float) else f"{k}-{v}"
                                                for k, v in sorted(overrides.items())))  # fmt: skip


def run_model(model_dir: Path, split: str, epoch: int, args: argparse.Namespace) -> Path:
    """Predict ``split`` with epoch ``epoch`` of the model in ``model_dir`` (and the prediction flags); returns the
    prediction file written (in :func:`prediction_dir`)."""
    from model.common import load_model, load_selection
    from model.predict import predict_split, resolve_device

    videos = load_split(resolve_dataset(args.dataset), split)
    model, config, epoch = load_model(model_dir, epoch, device=resolve_device(None))
    config = {**config, **prediction_overrides(args)}
    out_dir = prediction_dir(model_dir, args)
    out_dir.mkdir(exist_ok=True)
    post = load_selection(model_dir)["postprocess"]
    return predict_split(model, config, args.frame_dir, videos, split, out_dir, epoch, post=post)[1]


def pick_prediction_file(model_dir: Path, split: str, args: argparse.Namespace) -> Path:
    """The prediction file of the epoch to evaluate (``--epoch``, else the selected one), predicted first when the
    model directory has its checkpoint but no predictions of ``split`` for it."""
    from model.usage import list_epochs, load_selection

    pred_dir = prediction_dir(model_dir, args)
    files = prediction_files(pred_dir, split) if pred_dir.is_dir() else {}
    checkpoints = list_epochs(model_dir)
    selection = load_selection(model_dir)
    if args.epoch is not None:
        epoch, why = args.epoch, "--epoch"
    elif selection["epoch"] is not None:
        epoch, why = selection["epoch"], selection["why"]
    elif files:
        epoch, why = max(files), "the latest with predictions (no checkpoint, no selection.json)"
    else:
        raise DataError(f"{model_dir}: no pred-{split}.*.json predictions and no checkpoint to predict with")
    if epoch in files:
        log.info("%s: epoch %d (%s)", model_dir, epoch, why)
        return files[epoch]
    if epoch not in checkpoints:
        raise DataError(
            f"{model_dir}: no pred-{split}.{epoch}.json and no checkpoint of epoch {epoch} "
            f"(predictions: {sorted(files)}; checkpoints: {checkpoints})"
        )
    log.info("%s: predicting %s with epoch %d (%s)", model_dir, split, epoch, why)
    return run_model(model_dir, split, epoch, args)


def load_prediction_file(path: Path) -> list[dict]:
    videos = load_json(path)
    if not isinstance(videos, list) or not all(isinstance(v, dict) and "video" in v for v in videos):
        raise DataError(f"{path}: expected a list of {{video, fps, events}} (a pred-SPLIT.EPOCH.json)")
    for v in videos:
        if "fps" not in v or not isinstance(v.get("events", []), list):
            raise DataError(f"{path}: video {v['video']!r} needs 'fps' and an 'events' list")
    return videos


def model_classes(model_dir: Path, default: list[str]) -> list[str]:
    config = model_dir / "config.json"
    if config.is_file():
        classes = load_json(config).get("classes")
        if isinstance(classes, list) and classes:
            return classes
    return default


def events_from_scores(
    scores: dict[str, np.ndarray], fps: dict[str, float], classes: list[str], post: PostProcess
) -> list[dict]:
    """Per-frame score arrays -> per-video predictions, with the one post-processing (util.postprocess)."""
    videos = []
    for video, array in scores.items():
        if is_aux_key(video):
            continue
        if array.ndim != 2 or array.shape[1] != len(classes) + 1:
            raise DataError(
                f"scores of {video!r}: shape {array.shape}, expected (frames, {len(classes) + 1})"
            )
        events = scores_to_events(
            array,
            classes,
            fps[video],
            team_scores=scores.get(video + TEAM_KEY),
            displacement=scores.get(video + DISPLACEMENT_KEY),
            **post.event_options(fps[video]),
        )
        videos.append({"video": video, "fps": fps[video], "events": events})
    return videos


def nms_on_events(videos: list[dict], args: argparse.Namespace, base: PostProcess | None) -> list[dict]:
    """Events of a prediction file: as they are, or with the NMS the user asked for (windows at each video's fps)."""
    if not postprocess_flags_given(args):
        log.info("prediction file: events scored as they are (no post-processing flag given)")
        return videos
    if args.sigma is not None or args.sigma_s is not None:
        raise DataError("--sigma needs per-frame scores (a model directory), not events of a prediction file")
    out, used = [], set()
    for video in videos:
        fps = float(video["fps"])
        # Nothing the user did not ask for: no score cut without --threshold (SoccerNet's evaluator keeps every
        # confidence >= 0), and a zero window leaves the events as they are, their order and duplicates included
        # (at a repeated frame and class the later row is the one the evaluator keeps).
        post = user_postprocess(base or PostProcess(nms_window_s=0.0, threshold=0.0), fps, args)
        used.add(post.describe(fps))
        events = video["events"]
        if args.threshold is not None:
            events = [e for e in events if float(e["score"]) >= post.threshold]
        window = window_frames(post.nms_window_s, fps)
        if window > 0:
            events = nms_events(events, window, soft=post.soft, threshold=post.threshold)
        out.append(dict(video, events=events))
    log.info("prediction events post-processed: %s", "; ".join(sorted(used)) or "no video")
    return out


def load_predictions(args: argparse.Namespace, split: str, classes: list[str]) -> list[dict]:
    """The predictions to evaluate, post-processed (module docstring)."""
    from model.common import load_selection

    paths = [Path(p) for p in args.model_dir]
    for path in paths:
        if not path.exists():
            raise DataError(f"{path}: no such model directory or prediction file")
    if len(paths) == 1 and paths[0].is_file():
        return nms_on_events(load_prediction_file(paths[0]), args, None)
    if any(p.is_file() for p in paths):
        raise DataError("an ensemble takes model directories only (their .score.npz are averaged)")
    selection = load_selection(paths[0])
    pred_files = [pick_prediction_file(p, split, args) for p in paths]
    npz = [score_file(f) for f in pred_files]
    videos = load_prediction_file(pred_files[0])
    if len(paths) == 1 and not npz[0].is_file():
        log.info("%s: no per-frame scores; post-processing its events", npz[0])
        return nms_on_events(videos, args, selection["postprocess"])
    for path in npz:
        if not path.is_file():
            raise DataError(f"{path}: not found; an ensemble needs every model's per-frame scores")
    try:
        scores = average_scores([load_score_arrays(p) for p in npz])
    except ValueError as e:
        raise DataError(f"cannot average {', '.join(map(str, npz))}: {e}") from None
    fps = {v["video"]: float(v["fps"]) for v in videos}
    missing = [k for k in scores if not is_aux_key(k) and k not in fps]
    if missing:
        raise DataError(f"{pred_files[0]}: no fps for {missing[:3]} (in {npz[0]})")
    rate = next(iter(fps.values()), 25.0)
    post = user_postprocess(selection["postprocess"], rate, args)
    source = "flags" if postprocess_flags_given(args) else f"{paths[0]}/selection.json"
    if not selection["recorded"] and not postprocess_flags_given(args):
        source = "the default: the model recorded none"
    log.info("post-processing: %s (%s)", post.describe(rate), source)
    return events_from_scores(scores, fps, model_classes(paths[0], classes), post)


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


# ---- main


def record_thresholds(
    model_dir: Path, ground_truth: dict, predicted: dict, classes: list[str], target_precision: float
) -> None:
    """Record per-class display thresholds holding ``target_precision`` on these (val) events in selection.json."""
    from tabulate import tabulate

    from model.usage import SELECTION_NAME, save_selection
    from util.metrics.analysis import precision_thresholds

    path = model_dir / SELECTION_NAME
    if not path.is_file():
        raise DataError(
            f"{path}: no selection.json to record the thresholds in; train the model with train_e2e.py"
        )
    found = precision_thresholds(ground_truth, predicted, classes, target_precision)
    selection = load_json(path)
    selection.update(
        target_precision=float(target_precision),
        class_thresholds={c: v["threshold"] for c, v in found.items() if v["threshold"] is not None},
        class_threshold_rules={
            c: {k: v[k] for k in ("rule", "precision", "recall")} for c, v in found.items()
        },
    )
    save_selection(model_dir, selection)
    rows = [[c, "-" if v["threshold"] is None else f"{v['threshold']:.3f}", v["rule"],
             "-" if v["precision"] is None else f"{v['precision']:.3f}",
             "-" if v["recall"] is None else f"{v['recall']:.3f}"] for c, v in found.items()]  # fmt: skip
    print(tabulate(rows, headers=["class", "threshold", "rule", "val precision", "val recall"]))
    print(
        f"recorded in {path} (target precision {target_precision:g}); inference and the app now show from these"
    )


def labels_withheld(args: argparse.Namespace, dataset_dir: Path | None, predictions: list[dict]) -> bool:
    """The challenge split's labels are SoccerNet's secret: its parsed videos have no events, and -l (when given)
    holds no Labels-ball.json of its games."""
    if args.soccernet_path:
        games = split_games(dataset_dir, "challenge", predictions)
        return not any((Path(args.soccernet_path) / g / LABEL_FILE).is_file() for g in games)
    if dataset_dir is None or not (dataset_dir / "challenge.json").is_file():
        return True
    return not any(v.get("events") for v in load_split(dataset_dir, "challenge"))


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


def main(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    split = split_name(args.split)
    dataset_dir = dataset_or_none(args.dataset)
    has_classes = dataset_dir is not None and (dataset_dir / "class.txt").is_file()
    classes = load_classes(dataset_dir) if has_classes else list(CLASSES)
    predictions = load_predictions(args, split, classes)
    if split == "challenge" and labels_withheld(args, dataset_dir, predictions):
        return submit(args, dataset_dir, predictions, classes)
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
    if args.record_thresholds:
        record_thresholds(Path(args.model_dir[0]), ground_truth, predicted, classes, args.target_precision)
    if args.report:
        from util.report import write_report

        selection = Path(args.model_dir[0]) / "selection.json"
        recorded = load_json(selection) if len(args.model_dir) == 1 and selection.is_file() else None
        page = write_report(args.report, ground_truth, predicted, classes, results, split,
                            source=" ".join(str(m) for m in args.model_dir), threshold=args.report_threshold,
                            rounds=args.bootstrap_rounds, chunk_s=args.bootstrap_chunk_s,
                            recorded=recorded)  # fmt: skip
        print(f"wrote {page} (open it in a browser; the figures are also beside it as PNGs)")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, get_args()))
