"""Step 5: spot the actions of one video (a frame folder or a video file) and show them.

``run_inference`` is the one function behind ``inference_spot.py`` and the web app. It loads a model directory,
reads the video through the one predict path (``model.predict.predict_scores``; a video file is decoded on the
fly at the model's frame rate and size, no JPEGs written), turns scores into events (``util.postprocess`` through
``model.predict.scores_to_predictions``) and writes into ``output_dir``:

- ``predictions.json``: ``{video, fps, num_frames, events: [{frame, label, score[, team, team_score], time_s,
  time}]}`` (the README's format plus each event's time in seconds and as ``mm:ss.ff``): the events shown, those
  scoring at least the display threshold;
- ``results_spotting.json`` (SoccerNet's format): every event of the model's post-processing, as the evaluator
  and the SoccerNet server take them (for a SoccerNet game ``<league>/<season>/<game>[/<half>]``, the same rows
  ``eval_soccernet_ball.py --eval_dir`` writes);
- ``scores.npz``: per-frame scores, the array of ``pred-*.score.npz`` (and ``<video>::team`` for a team model);
- ``events.csv``: the events shown, one row each (time_s, time, label, team, score, team_score, frame), for a
  spreadsheet or an editing tool;
- ``timeline.png``: per-class score curves with the detected events, and the ground truth beside them when the
  video's ``Labels-ball.json`` is known (``labels``): found and missed events, right and false detections at
  delta = 1 s under SoccerNet's matching (also in ``predictions.json``: ``ground_truth`` and each event's
  ``correct``);
- ``frames/`` (``visualize``; drawn by ``model.render``): every frame with its overlays, as JPEGs;
- ``annotated.mp4`` (``create_video``): H.264 (browser-playable), at the source's resolution, labels around each
  action, slow motion around each action, a timeline bar, and the source's audio; with the ground truth, its
  events labelled at the right (found green, missed red) and false detections framed in red.

The model folder says how it is used (``model.folder.ModelFolder``, read once): the epoch, the post-processing
(windows in seconds) and the display threshold training chose on val; the options (``InferenceOptions``, the one
definition of step 5's options) override each.

Reading, the model and writing overlap: a thread decodes ahead of the model, and while rendering one thread
decodes, the caller's thread draws and another encodes.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from dataset.source import (
    FPS_TOLERANCE,
    FrameFit,
    FrameSource,
    JpegDirSource,
    LimitedSource,
    PrefetchSource,
    ResampledSource,
    VideoInput,
    aspect_change,
    aspect_fit,
    aspects_differ,
    resolve_input,
)
from model.common import load_model
from model.folder import ModelFolder
from model.inference_options import InferenceOptions
from model.predict import (
    DEFAULT_BATCH_SIZE,
    model_frame_source,
    predict_scores,
    scores_to_predictions,
    source_size,
    tta_mode,
    window_stride,
)
from model.render import Progress, render
from util import visualize as vis
from util.cli import ASPECT_MODES, DEFAULT_ASPECT
from util.io import DataError, store_json
from util.metrics.analysis import mark_events
from util.postprocess import PostProcess, store_scores
from util.soccernet import LABEL_FILE, load_labels, position_to_frame, split_video_id
from util.submission import write_events_csv, write_video_results

log = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.json"
SCORES_FILE = "scores.npz"
TIMELINE_FILE = "timeline.png"
EVENTS_CSV = "events.csv"


def _ratio(width: float, height: float) -> str:
    """An aspect ratio as people name it ("4:3", "16:9", "9:16") when it is one of those, else "1.85:1"."""
    from fractions import Fraction

    value = width / height
    near = Fraction(value).limit_denominator(16)
    if abs(float(near) / value - 1.0) < 0.005:
        return f"{near.numerator}:{near.denominator}"
    return f"{value:.2f}:1"


def _size_text(item: VideoInput) -> str:
    display = item.display_size
    shown = round(display[0])
    if shown == item.width:
        return f"{item.width}x{item.height}"
    sar = item.sample_aspect_ratio
    return f"{item.width}x{item.height} (shown {shown}x{item.height}, pixels {sar:.3g} wide)"


def frame_geometry(
    config: dict, item: VideoInput, aspect: str, notes: list[str]
) -> tuple[tuple[int, int] | None, FrameFit | None]:
    """How ``item``'s frames go into the model: (the size they are read at (None: as stored), how a frame of
    another display aspect fits in it (None: resized to it)), with a note when its aspect is not the model's.

    The model's frame is the size it was trained on (``source_size``). Frames whose display aspect (stored
    width times the sample aspect ratio, over the height) differs from it by more than ``ASPECT_TOLERANCE``
    are, by ``aspect`` (``ASPECT_MODES``): "letterbox" scaled to fit inside it and centred between black bars,
    "crop" scaled to cover it and cut about the centre, "stretch" resized to it; the same aspect is resized as
    always. A config that records no size (an old one) reads a video file at its height, its aspect kept, a
    frame folder as stored, and the model's centre crop cuts a wider frame to its input; a frame narrower than
    its input (``frame_width`` x ``frame_height``) is fitted into that."""
    if aspect not in ASPECT_MODES:
        raise DataError(f"aspect must be one of {', '.join(ASPECT_MODES)}, not {aspect!r}")
    display = item.display_size
    size = source_size(config)
    if display is None:
        return size, None
    if size is None:
        height = int(config.get("frame_height") or item.height)
        as_read = (max(2, 2 * round(display[0] * height / display[1] / 2)), height) if item.is_file else None
        model_input = (int(config.get("frame_width") or 0), height)
        if (
            not model_input[0]
            or aspect_change(display, model_input) >= 1.0
            or not aspects_differ(display, model_input)
        ):
            return as_read, None
        size = model_input
    if not aspects_differ(display, size):
        return size, None
    fit = aspect_fit(display, size, aspect)
    width, height = size
    said = (
        f"{item.path}: {_size_text(item)} frames, {_ratio(*display)}, are not the model's {width}x{height} "
        f"({_ratio(width, height)}): "
    )
    if fit is None:
        factor = 1.0 / aspect_change(display, size)  # what stretching does to the width of every shape
        wider = f"{factor - 1:.0%} wider" if factor > 1 else f"{1 - factor:.0%} narrower"
        said += f"stretched to {width}x{height}, every shape {wider} than it is"
    elif fit.mode == "letterbox":
        bars = "left and right" if fit.inner[0] < width else "above and below"
        said += f"letterboxed, scaled to {fit.inner[0]}x{fit.inner[1]} between black bars {bars}"
    else:
        kept = (width * height) / (fit.inner[0] * fit.inner[1])
        cut = "left and right" if fit.inner[0] > width else "top and bottom"
        said += f"cropped, scaled to {fit.inner[0]}x{fit.inner[1]} and cut at the {cut} ({kept:.0%} kept)"
    notes.append(said + " (aspect: letterbox, crop or stretch)")
    return size, fit


def open_source(
    config: dict, item: VideoInput, max_frames: int | None, notes: list[str], aspect: str = DEFAULT_ASPECT
) -> FrameSource:
    """The frames the model reads: at its frame rate (a frame folder at another rate is resampled, with a
    note) and size (another aspect ratio letterboxed, cropped or stretched by ``aspect``, with a note:
    ``frame_geometry``), cut at ``max_frames``."""
    fps = float(config["fps"])
    if abs(item.source_fps - fps) > FPS_TOLERANCE * fps:
        notes.append(f"{item.path}: {item.source_fps:g} fps resampled to the model's {fps:g} fps")
    size, fit = frame_geometry(config, item, aspect, notes)
    if item.is_file:
        read_as = config if size is None else {**config, "source_width": size[0], "source_height": size[1]}
        source = model_frame_source(read_as, item.path, fit=fit)
    else:
        source = JpegDirSource(item.path, fps=item.source_fps, size=size, fit=fit)
        if abs(item.source_fps - fps) > FPS_TOLERANCE * fps:
            source = ResampledSource(source, fps)
    if max_frames is not None:
        source = LimitedSource(source, max_frames)
    return source


# ---------------------------------------------------------------------------------------------------------------
# Outputs


def event_rows(events: list[dict], fps: float) -> list[dict]:
    """Events with their time added: ``time_s`` (seconds) and ``time`` (``mm:ss.ff``)."""
    rows = []
    for event in events:
        seconds = int(event["frame"]) / fps
        rows.append({**event, "time_s": round(seconds, 3), "time": vis.format_clock(seconds)})
    return rows


def events_table(events: list[dict], classes: list[str], team: bool) -> str:
    """Detected events per class: count, best and mean score (and per team when the model has a team head)."""
    from tabulate import tabulate

    rows = []
    for name in classes:
        mine = [e for e in events if e["label"] == name]
        scores = [e["score"] for e in mine]
        row = [
            name,
            len(mine),
            f"{max(scores):.2f}" if mine else "-",
            f"{np.mean(scores):.2f}" if mine else "-",
        ]
        if team:
            row += [sum(e.get("team") == "left" for e in mine), sum(e.get("team") == "right" for e in mine)]
        rows.append(row)
    total = ["all", len(events), "", ""] + (
        [sum(e.get("team") == "left" for e in events), sum(e.get("team") == "right" for e in events)]
        if team
        else []
    )
    headers = ["class", "events", "best", "mean"] + (["left", "right"] if team else [])
    return tabulate([*rows, total], headers=headers, tablefmt="simple")


# ---------------------------------------------------------------------------------------------------------------
# The one entry point


def display_thresholds(usage: dict, classes: list[str], override: float | None) -> dict[str, float]:
    """The lowest score shown, per class: ``override`` for every class when given; else what the model recorded
    on val (``selection.json``'s class_thresholds), and its display threshold for a class it recorded none for."""
    if override is not None:
        return dict.fromkeys(classes, float(override))
    recorded = usage.get("class_thresholds") or {}
    return {c: float(recorded.get(c, usage["display_threshold"])) for c in classes}


def _uniform(thresholds: dict[str, float]) -> float | None:
    values = set(thresholds.values())
    return values.pop() if len(values) == 1 else None


def describe_thresholds(thresholds: dict[str, float], usage: dict, override: float | None) -> str:
    """``"score 0.3"`` or ``"per-class thresholds (val precision >= 0.8 at 1 s): PASS 0.42, ..."``, for logs."""
    uniform = _uniform(thresholds)
    if override is not None or uniform is not None and not usage.get("class_thresholds"):
        return f"score {uniform:g}"
    target = usage.get("target_precision")
    why = f" (val precision >= {target:g} at 1 s, else best F1)" if target is not None else ""
    return f"per-class thresholds{why}: " + ", ".join(f"{c} {t:.2f}" for c, t in thresholds.items())


def ground_truth_for(
    item: VideoInput, labels: str | Path | None, fps: float, classes: list[str]
) -> list[dict] | None:
    """The video's annotated events (``{frame, label, team, visibility, position_ms}`` at ``fps``, of its half, in
    the model's classes), or None when unknown. ``labels``: "auto" (the Labels-ball.json beside a video file of a
    SoccerNet-style library), None / "none" (off), a Labels-ball.json, or a library folder holding
    ``<game>/Labels-ball.json``."""
    if labels is None or str(labels) == "none":
        return None
    game, half = split_video_id(item.video_id)
    if str(labels) == "auto":
        path = item.path.parent / LABEL_FILE if item.is_file else None
        if path is None or not path.is_file():
            return None
    else:
        path = Path(labels)
        if path.is_dir():
            path = path / game / LABEL_FILE
        if not path.is_file():
            raise DataError(
                f"{path}: no {LABEL_FILE} (--labels: a {LABEL_FILE}, or the library folder of the video)"
            )
    truth = []
    for a in load_labels(path):
        frame = position_to_frame(a["position_ms"], fps)
        if a["half"] == (half or 1) and a["label"] in classes:
            truth.append({"frame": frame, "label": a["label"], "team": a.get("team"),
                          "visibility": a["visibility"], "position_ms": a["position_ms"]})  # fmt: skip
    log.info("ground truth: %d events of %s (%s)", len(truth), item.video_id, path)
    return truth


def run_inference(
    model_dir: str | Path | ModelFolder,
    output_dir: str | Path,
    options: InferenceOptions | None = None,
    *,
    progress: Progress | None = None,
    **changes: Any,
) -> dict[str, Any]:
    """Spot the actions of one video and write the outputs (module docstring) into ``output_dir``.

    ``model_dir``: the model folder (a path, or the ``ModelFolder`` already read). ``options``: what to run on and
    how (``InferenceOptions``: the input, the epoch, the post-processing, what is drawn; None: the defaults);
    ``changes``, options by field name on top of them (``run_inference(m, out, video=v, create_video=True)``).
    ``progress(stage, done, total)`` is called with stage "decoding", "detecting" and "rendering". Bad input raises
    DataError.

    Returns ``{video_id, events, all_events, predictions, scores, timeline, video, frames, results_spotting, fps,
    num_frames, video_frames, video_times_s, in_reel, epoch, postprocess, score_threshold (None when per class),
    class_thresholds, threshold_text, team, classes, summary, notes, seconds}``: ``events`` are those shown,
    ``all_events`` those of results_spotting.json; paths are ``Path`` or None, ``video_frames`` counts the annotated
    video's frames (slow motion included), ``video_times_s`` gives each event's time in that video (None without
    one), ``in_reel`` whether each event is in it (a highlight reel of chosen classes or team leaves some out; None
    without a video), ``notes`` are one-line remarks for the user (a resampled frame rate, another aspect ratio
    letterboxed), ``seconds`` the time of each stage (load, detect, render, total).
    """
    options = options or InferenceOptions()
    if changes:
        options = options.with_changes(**changes)
    drawing = options.render_options()
    started = time.perf_counter()
    if progress is not None:  # opening the input and loading the model
        progress("decoding", 0, 1)
    item = resolve_input(options.video, options.frame_dir, options.video_name, options.max_frames)
    folder = ModelFolder.of(model_dir)
    model, config, epoch = load_model(folder, epoch=options.epoch, device=_device(options.device))
    config = {**config, **options.predict_overrides}
    try:  # a bad --tta / --window_overlap, before the video is read
        tta_mode(config), window_stride(config)
    except ValueError as e:
        raise DataError(str(e)) from None
    fps, classes = float(config["fps"]), list(config["classes"])
    options.check_model(classes, bool(config.get("team")))
    usage = folder.selection
    try:
        post = usage["postprocess"].with_overrides(options.nms_window, options.nms_window_s, fps)
    except ValueError as e:
        raise DataError(str(e)) from None
    thresholds = display_thresholds(usage, classes, options.score_threshold)
    threshold_text = describe_thresholds(thresholds, usage, options.score_threshold)
    log.info(
        "post-processing: %s; events shown from %s%s", post.describe(fps), threshold_text,
        "" if usage["recorded"] else " (the defaults: the model recorded none)",
    )  # fmt: skip
    # Read before the model runs, so that a wrong --labels fails at once.
    truth = ground_truth_for(item, options.labels, fps, classes)
    seconds = {"load": time.perf_counter() - started}
    batch_size = options.batch_size or DEFAULT_BATCH_SIZE
    # Another aspect ratio than the model's: "letterbox" (default), "crop" or "stretch", always with a note.
    aspect = options.aspect
    (scores, team, displacement), notes = detect(
        model, config, item, options.max_frames, batch_size, options.device, progress, aspect
    )
    seconds["detect"] = time.perf_counter() - started - seconds["load"]
    if truth is not None:  # the frames processed (--max_frames)
        truth = [t for t in truth if t["frame"] < len(scores)]
    outputs = _write_outputs(
        item, Path(output_dir), config, (scores, team, displacement), post, thresholds, epoch, truth
    )
    outputs["threshold_text"] = threshold_text
    num_frames = len(scores)
    video_path = frames_path = video_times = None
    video_frames = 0
    if drawing.any:
        render_started = time.perf_counter()
        video_path, frames_path, video_frames, video_times = render(
            item, Path(output_dir), outputs["events"], classes, fps, num_frames, drawing, progress,
            truth=outputs["ground_truth"],
        )  # fmt: skip
        seconds["render"] = time.perf_counter() - render_started
    seconds["total"] = time.perf_counter() - started
    return {
        **outputs,
        "video": video_path,
        "frames": frames_path,
        "video_frames": video_frames,
        "video_times_s": video_times,
        "in_reel": None if video_path is None else [drawing.in_reel(e) for e in outputs["events"]],
        "fps": fps,
        "num_frames": num_frames,
        "epoch": epoch,
        "postprocess": post,
        "score_threshold": _uniform(thresholds),
        "class_thresholds": thresholds,
        "team": team is not None,
        "classes": classes,
        "notes": notes,
        "seconds": seconds,
    }


def detect(
    model: Any,
    config: dict,
    item: VideoInput,
    max_frames: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | None = None,
    progress: Progress | None = None,
    aspect: str = DEFAULT_ASPECT,
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Per-frame scores of ``item`` through the one predict path, decoding in a thread ahead of the model; a
    frame of another aspect ratio than the model's is fitted by ``aspect`` (``open_source``).

    Returns ((scores (T, C+1), team (P(right) (T,), or p(class, right) (T, C) for team as classes) or None,
    displacement (T,) or None), notes for the user, e.g. a resampled frame rate, another aspect ratio letterboxed;
    each is logged as a warning).
    """
    notes: list[str] = []
    source = PrefetchSource(open_source(config, item, max_frames, notes, aspect))
    for note in notes:
        log.warning("%s", note)
    fps = float(config["fps"])
    expected = item.expected_frames
    if item.source_fps and abs(item.source_fps - fps) > FPS_TOLERANCE * fps:
        expected = round(expected * fps / item.source_fps)

    # Decoding runs alongside the model, so it is reported as part of "detecting".
    def on_batch(done: int, total: int | None) -> None:
        if progress is not None:
            progress("detecting", done, max(total or expected, done))

    result = predict_scores(model, config, source, batch_size, device=_device(device), progress=on_batch)
    scores = result[0]
    if len(scores) == 0:
        raise DataError(f"{item.path}: no frames could be read")
    if progress is not None:
        progress("detecting", len(scores), len(scores))
    return result, notes


def _device(device: str | None) -> str:
    from model.predict import resolve_device

    return str(resolve_device(device))


def _write_outputs(
    item: VideoInput,
    output_dir: Path,
    config: dict,
    result: tuple[np.ndarray, np.ndarray | None, np.ndarray | None],
    post: PostProcess,
    thresholds: dict[str, float],
    epoch: int,
    truth: list[dict] | None = None,
) -> dict[str, Any]:
    """predictions.json and events.csv (the events shown), scores.npz, results_spotting.json (every event),
    timeline.png."""
    fps, classes = float(config["fps"]), list(config["classes"])
    scores, team, _ = result
    results = {item.video_id: result}
    (prediction,) = scores_to_predictions(results, config, post)
    shown = [e for e in prediction["events"] if e["score"] >= thresholds[e["label"]]]
    events = event_rows(shown, fps)
    found = None
    if truth is not None:
        hit, correct = mark_events(truth, events, fps)
        truth = [{**t, "found": h} for t, h in zip(truth, hit, strict=True)]
        events = [{**e, "correct": c} for e, c in zip(events, correct, strict=True)]
        found = {"events": len(truth), "found": sum(hit), "missed": len(truth) - sum(hit),
                 "false_alarms": len(events) - sum(correct)}  # fmt: skip
    output_dir.mkdir(parents=True, exist_ok=True)
    document = {
        "video": item.video_id,
        "fps": fps,
        "num_frames": len(scores),
        "events": events,
        "source": str(item.path),
        "epoch": epoch,
        "score_threshold": _uniform(thresholds),
        "class_thresholds": thresholds,
        "postprocess": post.to_dict(),
        "nms_window": post.event_options(fps)["nms_window"],
    }
    if truth is not None:
        document["ground_truth"], document["ground_truth_summary"] = event_rows(truth, fps), found
    store_json(output_dir / PREDICTIONS_FILE, document)
    write_events_csv(output_dir / EVENTS_CSV, events)
    store_scores(output_dir / SCORES_FILE, results)
    results_spotting = write_video_results(prediction, output_dir)
    colors = vis.class_colors(classes)
    uniform = _uniform(thresholds)
    shown_from = f"score >= {uniform:g}" if uniform is not None else "score >= its class's threshold, dashed"
    title = f"{item.video_id}: {len(events)} events ({shown_from})\n{post.describe(fps)}"
    if found is not None:
        title += f"; ground truth: {found['found']} of {found['events']} found, {found['false_alarms']} false detections"
    vis.plot_timeline(
        output_dir / TIMELINE_FILE, scores, classes, fps, events, colors, thresholds, title, truth=truth
    )
    return {
        "video_id": item.video_id,
        "events": events,
        "all_events": prediction["events"],
        "predictions": output_dir / PREDICTIONS_FILE,
        "events_csv": output_dir / EVENTS_CSV,
        "scores": output_dir / SCORES_FILE,
        "timeline": output_dir / TIMELINE_FILE,
        "results_spotting": results_spotting,
        "summary": events_table(events, classes, team is not None),
        "ground_truth": truth,
        "ground_truth_summary": found,
    }
