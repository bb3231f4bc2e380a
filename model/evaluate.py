"""Step 4's predictions: what a model folder, a prediction file or an ensemble of model folders predicts on a split,
post-processed as chosen, and the display thresholds recorded on val (``eval_soccernet_ball.py``).

A model folder (a ``ModelFolder``, read once) is evaluated as training chose on val (its selection.json): that
epoch, and that post-processing; ``PostprocessFlags`` override the post-processing, ``PredictionSettings`` the
epoch and the prediction settings (``tta``, ``window_overlap``: the split is then predicted again, into
``MODEL_DIR/predict-<settings>/``). A folder without predictions of the split for its epoch predicts them first. A
prediction file is scored as it is unless a post-processing flag is given; an ensemble averages its folders'
per-frame scores, then post-processes them.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from model.folder import ModelFolder
from util.dataset import SPLIT_ALIASES
from util.io import DataError, load_json
from util.postprocess import (
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

log = logging.getLogger("eval_soccernet_ball")

_PRED_FILE = re.compile(r"^pred-(?P<split>\w+)\.(?P<epoch>\d+)\.json(\.gz)?$")


def _from_namespace(cls: type, args: Any) -> Any:
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})


@dataclass(frozen=True)
class PostprocessFlags:
    """The post-processing the user asked for (None: not given): NMS window in frames at the model's rate or in
    seconds, soft NMS, the lowest event score, Gaussian smoothing in frames or seconds, NMS per (class, team)
    ("class_team") or per class ("class")."""

    nms_window: int | None = None
    nms_window_s: float | None = None
    soft_nms: bool | None = None
    threshold: float | None = None
    sigma: float | None = None
    sigma_s: float | None = None
    team_nms: str | None = None

    @classmethod
    def from_namespace(cls, args: Any) -> PostprocessFlags:
        return _from_namespace(cls, args)

    @property
    def given(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))

    def apply(self, base: PostProcess, fps: float) -> PostProcess:
        """``base`` with the flags given (frames read at ``fps``)."""
        sigma_s = self.sigma_s if self.sigma is None else self.sigma / fps
        return base.with_overrides(
            nms_window=self.nms_window,
            nms_window_s=self.nms_window_s,
            fps=fps,
            soft=self.soft_nms,
            sigma_s=sigma_s,
            threshold=self.threshold,
            nms_per_team=None if self.team_nms is None else self.team_nms == "class_team",
        )


@dataclass(frozen=True)
class PredictionSettings:
    """How a model folder's predictions are found or made: ``epoch`` (None: the selected one), ``tta`` and
    ``window_overlap`` (None: as trained), and the ``dataset`` and ``frame_dir`` a missing prediction is made from."""

    dataset: str
    frame_dir: str
    epoch: int | None = None
    tta: str | None = None
    window_overlap: float | None = None

    @classmethod
    def from_namespace(cls, args: Any) -> PredictionSettings:
        return _from_namespace(cls, args)

    @property
    def overrides(self) -> dict[str, Any]:
        """The prediction settings given, as config keys."""
        given = {"tta": self.tta, "window_overlap": self.window_overlap}
        return {k: v for k, v in given.items() if v is not None}


def open_sources(names: list[str]) -> list[ModelFolder | Path]:
    """What was named on the command line: model folders (read once, from here on) and prediction files."""
    sources: list[ModelFolder | Path] = []
    for name in names:
        path = Path(name)
        if not path.exists():
            raise DataError(f"{path}: no such model directory or prediction file")
        sources.append(ModelFolder(path) if path.is_dir() else path)
    return sources


# ---- a model folder's prediction files


def prediction_files(pred_dir: Path, split: str) -> dict[int, Path]:
    """``{epoch: pred-SPLIT.EPOCH.json}`` of a model directory."""
    found = {}
    for path in pred_dir.iterdir():
        match = _PRED_FILE.match(path.name)
        if match and SPLIT_ALIASES.get(match["split"], match["split"]) == split:
            found[int(match["epoch"])] = path
    return found


def score_file(pred_file: Path) -> Path:
    """``pred-test.12.json`` -> ``pred-test.12.score.npz`` (its per-frame scores)."""
    return pred_file.with_name(re.sub(r"\.json(\.gz)?$", ".score.npz", pred_file.name))


def prediction_dir(folder: ModelFolder, settings: PredictionSettings) -> Path:
    """Where the predictions evaluated live: the model directory, or ``predict-<settings>/`` inside it when
    ``tta`` / ``window_overlap`` ask for other prediction settings than training's."""
    overrides = settings.overrides
    if not overrides:
        return folder.path
    return folder.path / ("predict-" + ".".join(f"{k}-{v:g}" if isinstance(v, float) else f"{k}-{v}"
                                                for k, v in sorted(overrides.items())))  # fmt: skip


def run_model(folder: ModelFolder, split: str, epoch: int, settings: PredictionSettings) -> Path:
    """Predict ``split`` with epoch ``epoch`` of the model (and the prediction settings); returns the prediction
    file written (in :func:`prediction_dir`)."""
    from model.common import load_model
    from model.predict import predict_split, resolve_device
    from util.dataset import load_split, resolve_dataset

    videos = load_split(resolve_dataset(settings.dataset), split)
    model, config, epoch = load_model(folder, epoch, device=resolve_device(None))
    config = {**config, **settings.overrides}
    out_dir = prediction_dir(folder, settings)
    out_dir.mkdir(exist_ok=True)
    post = folder.selection["postprocess"]
    return predict_split(model, config, settings.frame_dir, videos, split, out_dir, epoch, post=post)[1]


def pick_prediction_file(folder: ModelFolder, split: str, settings: PredictionSettings) -> Path:
    """The prediction file of the epoch to evaluate (``settings.epoch``, else the selected one), predicted first
    when the folder has its checkpoint but no predictions of ``split`` for it."""
    pred_dir = prediction_dir(folder, settings)
    files = prediction_files(pred_dir, split) if pred_dir.is_dir() else {}
    selection = folder.selection
    if settings.epoch is not None:
        epoch, why = settings.epoch, "--epoch"
    elif selection["epoch"] is not None:
        epoch, why = selection["epoch"], selection["why"]
    elif files:
        epoch, why = max(files), "the latest with predictions (no checkpoint, no selection.json)"
    else:
        raise DataError(f"{folder}: no pred-{split}.*.json predictions and no checkpoint to predict with")
    if epoch in files:
        log.info("%s: epoch %d (%s)", folder, epoch, why)
        return files[epoch]
    if epoch not in folder.epochs:
        raise DataError(
            f"{folder}: no pred-{split}.{epoch}.json and no checkpoint of epoch {epoch} "
            f"(predictions: {sorted(files)}; checkpoints: {folder.epochs})"
        )
    log.info("%s: predicting %s with epoch %d (%s)", folder, split, epoch, why)
    return run_model(folder, split, epoch, settings)


def load_prediction_file(path: Path) -> list[dict]:
    videos = load_json(path)
    if not isinstance(videos, list) or not all(isinstance(v, dict) and "video" in v for v in videos):
        raise DataError(f"{path}: expected a list of {{video, fps, events}} (a pred-SPLIT.EPOCH.json)")
    for v in videos:
        if "fps" not in v or not isinstance(v.get("events", []), list):
            raise DataError(f"{path}: video {v['video']!r} needs 'fps' and an 'events' list")
    return videos


def model_classes(folder: ModelFolder, default: list[str]) -> list[str]:
    if folder.config_path.is_file():
        classes = folder.config_json.get("classes")
        if isinstance(classes, list) and classes:
            return classes
    return default


# ---- events


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


def nms_on_events(videos: list[dict], flags: PostprocessFlags, base: PostProcess | None) -> list[dict]:
    """Events of a prediction file: as they are, or with the NMS the user asked for (windows at each video's fps)."""
    if not flags.given:
        log.info("prediction file: events scored as they are (no post-processing flag given)")
        return videos
    if flags.sigma is not None or flags.sigma_s is not None:
        raise DataError("--sigma needs per-frame scores (a model directory), not events of a prediction file")
    out, used = [], set()
    for video in videos:
        fps = float(video["fps"])
        # Nothing the user did not ask for: no score cut without --threshold (SoccerNet's evaluator keeps every
        # confidence >= 0), and a zero window leaves the events as they are, their order and duplicates included
        # (at a repeated frame and class the later row is the one the evaluator keeps).
        post = flags.apply(base or PostProcess(nms_window_s=0.0, threshold=0.0), fps)
        used.add(post.describe(fps))
        events = video["events"]
        if flags.threshold is not None:
            events = [e for e in events if float(e["score"]) >= post.threshold]
        window = window_frames(post.nms_window_s, fps)
        if window > 0:
            events = nms_events(
                events, window, soft=post.soft, threshold=post.threshold, per_team=post.nms_per_team
            )
        out.append(dict(video, events=events))
    log.info("prediction events post-processed: %s", "; ".join(sorted(used)) or "no video")
    return out


def load_predictions(
    sources: list[ModelFolder | Path],
    split: str,
    classes: list[str],
    settings: PredictionSettings,
    flags: PostprocessFlags,
) -> list[dict]:
    """The predictions to evaluate, post-processed (module docstring)."""
    if len(sources) == 1 and not isinstance(sources[0], ModelFolder):
        return nms_on_events(load_prediction_file(sources[0]), flags, None)
    folders = [s for s in sources if isinstance(s, ModelFolder)]
    if len(folders) != len(sources):
        raise DataError("an ensemble takes model directories only (their .score.npz are averaged)")
    selection = folders[0].selection
    pred_files = [pick_prediction_file(f, split, settings) for f in folders]
    npz = [score_file(f) for f in pred_files]
    videos = load_prediction_file(pred_files[0])
    if len(folders) == 1 and not npz[0].is_file():
        log.info("%s: no per-frame scores; post-processing its events", npz[0])
        return nms_on_events(videos, flags, selection["postprocess"])
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
    post = flags.apply(selection["postprocess"], rate)
    source = "flags" if flags.given else f"{folders[0]}/selection.json"
    if not selection["recorded"] and not flags.given:
        source = "the default: the model recorded none"
    log.info("post-processing: %s (%s)", post.describe(rate), source)
    return events_from_scores(scores, fps, model_classes(folders[0], classes), post)


# ---- display thresholds


def record_thresholds(
    folder: ModelFolder, ground_truth: dict, predicted: dict, classes: list[str], target_precision: float
) -> tuple[Path, dict[str, dict]]:
    """Record per-class display thresholds holding ``target_precision`` on these (val) events in the folder's
    selection.json; returns (its path, ``{class: {threshold, rule, precision, recall}}``)."""
    from model.folder import SELECTION_NAME
    from model.usage import save_selection
    from util.metrics.analysis import precision_thresholds

    path = folder.path / SELECTION_NAME
    if not folder.selection["recorded"]:
        raise DataError(
            f"{path}: no selection.json to record the thresholds in; train the model with train_e2e.py"
        )
    found = precision_thresholds(ground_truth, predicted, classes, target_precision)
    selection = dict(folder.selection["record"])
    selection.update(
        target_precision=float(target_precision),
        class_thresholds={c: v["threshold"] for c, v in found.items() if v["threshold"] is not None},
        class_threshold_rules={
            c: {k: v[k] for k in ("rule", "precision", "recall")} for c, v in found.items()
        },
    )
    save_selection(folder.path, selection)
    return path, found
