"""Step 5: spot the actions of one video (a frame folder or a video file) and show them.

``run_inference`` is the one function behind ``inference_spot.py`` and the web app. It loads a model directory,
reads the video through the one predict path (``model.predict.predict_scores``; a video file is decoded on the
fly at the model's frame rate and size, no JPEGs written), turns scores into events (``util.eval`` through
``model.predict.scores_to_predictions``) and writes into ``output_dir``:

- ``predictions.json``: ``{video, fps, num_frames, events: [{frame, label, score[, team, team_score], time_s,
  time}]}`` (the README's format plus each event's time in seconds and as ``mm:ss.ff``): the events shown, those
  scoring at least the display threshold;
- ``results_spotting.json`` (SoccerNet's format): every event of the model's post-processing, as the evaluator
  and the SoccerNet server take them (for a SoccerNet game ``<league>/<season>/<game>[/<half>]``, the same rows
  ``eval_soccernet_ball.py --eval_dir`` writes);
- ``scores.npz``: per-frame scores, the array of ``pred-*.score.npz`` (and ``<video>::team`` for a team head);
- ``timeline.png``: per-class score curves with the detected events;
- ``frames/`` (``visualize``): every frame with its overlays, as JPEGs;
- ``annotated.mp4`` (``create_video``): H.264 (browser-playable), at the source's resolution, labels around each
  action, slow motion around each action, a timeline bar, and the source's audio.

The model directory says how it is used (``model.common.load_selection``): the epoch, the post-processing (windows
in seconds) and the display threshold training chose on val; arguments override each.

Reading, the model and writing overlap: a thread decodes ahead of the model, and while rendering one thread
decodes, the caller's thread draws and another encodes.
"""

from __future__ import annotations

import logging
import math
import queue
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from dataset.frame import FrameSource, JpegDirSource, read_fps
from model.common import load_model, load_selection
from model.predict import (
    DEFAULT_BATCH_SIZE,
    model_frame_source,
    predict_scores,
    scores_to_predictions,
    source_size,
    store_scores,
)
from util import visualize as vis
from util.eval import PostProcess
from util.io import DataError, store_json
from util.soccernet import split_video_id, write_results_spotting

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]

DEFAULT_SLOWMO_FACTOR = 3
DEFAULT_SLOWMO_SPAN_S = 0.4
PREDICTIONS_FILE = "predictions.json"
SCORES_FILE = "scores.npz"
TIMELINE_FILE = "timeline.png"
VIDEO_FILE = "annotated.mp4"
FRAMES_DIR = "frames"
RESULTS_SPOTTING_FILE = "results_spotting.json"
# A SoccerNet video file's stem: "224p" / "720p" (one video per game) or "1_224p" (halves).
_SOCCERNET_STEM = re.compile(r"^(?:(?P<half>[12])_)?(?:\d+p|HQ)$", re.IGNORECASE)
_FPS_TOLERANCE = 1e-3


# ---------------------------------------------------------------------------------------------------------------
# Frame source wrappers: resampling a frame folder, a frame limit, reading ahead in a thread


class ResampledSource(FrameSource):
    """Frames of ``inner`` at another rate: output frame k is the source frame nearest to time k / fps."""

    def __init__(self, inner: FrameSource, fps: float):
        self.inner, self.fps, self.name = inner, float(fps), inner.name
        self.ratio = inner.fps / self.fps
        self.num_frames = None
        if inner.num_frames is not None:
            self.num_frames = self._count(inner.num_frames)

    def _index(self, k: int) -> int:
        return int(math.floor(k * self.ratio + 0.5 - 1e-9))

    def _count(self, num_source: int) -> int:
        k = max(0, int((num_source - 0.5) / self.ratio) - 2)
        while self._index(k) < num_source:
            k += 1
        return k

    def iter_chunks(self, chunk_len: int) -> Iterator[np.ndarray]:
        out: list[np.ndarray] = []
        k, seen = 0, 0
        for chunk in self.inner.iter_chunks(chunk_len):
            while self._index(k) < seen + len(chunk):
                out.append(chunk[self._index(k) - seen])
                k += 1
                if len(out) == chunk_len:
                    yield np.stack(out)
                    out = []
            seen += len(chunk)
        if out:
            yield np.stack(out)


class LimitedSource(FrameSource):
    """The first ``max_frames`` frames of ``inner`` (reading stops there)."""

    def __init__(self, inner: FrameSource, max_frames: int):
        self.inner, self.fps, self.name = inner, inner.fps, inner.name
        self.max_frames = int(max_frames)
        self.num_frames = None if inner.num_frames is None else min(inner.num_frames, self.max_frames)

    def iter_chunks(self, chunk_len: int) -> Iterator[np.ndarray]:
        left = self.max_frames
        chunks = self.inner.iter_chunks(chunk_len)
        try:
            for chunk in chunks:
                if left <= 0:
                    break
                yield chunk[:left]
                left -= len(chunk)
        finally:
            chunks.close()


_END = object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def _in_thread(items: Iterable[Any], depth: int, name: str) -> Iterator[Any]:
    """Iterate ``items`` in a background thread, ``depth`` items ahead; errors are raised in the caller."""
    slots: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not put(item):
                    break
            put(_END)
        except BaseException as e:  # noqa: BLE001 - handed to the consuming thread, which raises it
            put(_Failed(e))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


class PrefetchSource(FrameSource):
    """Reads ``inner`` in a background thread a few chunks ahead, so decoding overlaps the model.
    ``frames_read`` counts the frames decoded so far (for progress)."""

    def __init__(self, inner: FrameSource, depth: int = 3):
        self.inner, self.fps, self.name, self.num_frames = inner, inner.fps, inner.name, inner.num_frames
        self.depth = depth
        self.frames_read = 0

    def iter_chunks(self, chunk_len: int) -> Iterator[np.ndarray]:
        def counted() -> Iterator[np.ndarray]:
            for chunk in self.inner.iter_chunks(chunk_len):
                self.frames_read += len(chunk)
                yield chunk

        yield from _in_thread(counted(), self.depth, "frame-prefetch")


# ---------------------------------------------------------------------------------------------------------------
# Input: what to read and how


class VideoInput:
    """One resolved input: a frame folder or a video file, with its id, frame rate and expected length."""

    def __init__(self, video_id: str, path: Path, is_file: bool, source_fps: float, expected_frames: int):
        self.video_id = video_id
        self.path = path
        self.is_file = is_file
        self.source_fps = source_fps
        self.expected_frames = expected_frames
        self.width = 0
        self.height = 0


def video_id_of_file(path: Path) -> str:
    """The SoccerNet video id of a library file (``<league>/<season>/<game>`` for ``.../<game>/224p.mp4``,
    ``.../<game>/1`` for ``1_224p.mkv``), else the file's stem."""
    match = _SOCCERNET_STEM.match(path.stem)
    parents = path.resolve().parent.parts
    if match is None or len(parents) < 4:
        return path.stem
    game = "/".join(parents[-3:])
    return f"{game}/{match['half']}" if match["half"] else game


def is_soccernet_game(video_id: str) -> bool:
    """True for ``<league>/<season>/<game>`` or ``<league>/<season>/<game>/<half>`` ids."""
    game, _ = split_video_id(video_id)
    return len(game.split("/")) == 3


def resolve_input(
    video: str | Path | None, frame_dir: str | Path | None, video_name: str | None, max_frames: int | None
) -> VideoInput:
    """Check the input and read what is known before decoding; bad input raises DataError."""
    from util.video import probe_video

    if (video is None) == (frame_dir is None):
        raise DataError("give either a video file (--video) or a frame folder (--frame_dir [--video_name])")
    if video is not None:
        path = Path(video)
        info = probe_video(path)  # DataError for a missing, empty or unreadable file
        expected = round(info.duration_s * info.fps) if info.fps else info.num_frames
        video_id = video_name.strip("/") if video_name else video_id_of_file(path)
        result = VideoInput(video_id, path, True, info.fps, expected)
        result.width, result.height = info.width, info.height
    else:
        path = Path(frame_dir) / video_name if video_name else Path(frame_dir)
        if not path.is_dir():
            hint = f" (no folder {video_name!r} in {frame_dir})" if video_name else ""
            raise DataError(f"{path}: frame folder not found{hint}; extract the frames first")
        fps = read_fps(path)
        source = JpegDirSource(path, fps=fps)
        if not source.num_frames:
            raise DataError(f"{path}: no frames (000000.jpg ...); extract the frames first")
        video_id = video_name.strip("/") if video_name else path.name
        result = VideoInput(video_id, path, False, fps, source.num_frames)
    if max_frames is not None:
        result.expected_frames = min(result.expected_frames, max_frames)
    return result


def _model_config_for(config: dict, item: VideoInput) -> dict:
    """The config to read ``item`` with: a video file is resized to the model's height when the config does
    not record the size of the frames it was trained on."""
    if not item.is_file or source_size(config) is not None or not item.height:
        return config
    height = int(config.get("frame_height") or item.height)
    width = max(2, 2 * round(item.width * height / item.height / 2))
    return {**config, "source_width": width, "source_height": height}


def open_source(config: dict, item: VideoInput, max_frames: int | None, notes: list[str]) -> FrameSource:
    """The frames the model reads: at its frame rate (a frame folder at another rate is resampled, with a
    note) and size, cut at ``max_frames``."""
    fps = float(config["fps"])
    if abs(item.source_fps - fps) > _FPS_TOLERANCE * fps:
        notes.append(f"{item.path}: {item.source_fps:g} fps resampled to the model's {fps:g} fps")
    if item.is_file:
        source = model_frame_source(_model_config_for(config, item), item.path)
    else:
        source = JpegDirSource(item.path, fps=item.source_fps, size=source_size(config))
        if abs(item.source_fps - fps) > _FPS_TOLERANCE * fps:
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


def summary_table(events: list[dict], classes: list[str], team: bool) -> str:
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


def _write_results_spotting(prediction: dict, output_dir: Path) -> Path:
    """SoccerNet's results_spotting.json of the video, placed directly in ``output_dir``; a video that is not a
    SoccerNet game (an upload) is written as one game of one half."""
    staging = output_dir / ".results_spotting.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    if not is_soccernet_game(prediction["video"]):
        game = str(prediction["video"] or "video")
        prediction = dict(prediction, video="video" if set(game) <= {".", "/"} else game.replace("/", "_"))
    try:
        (written,) = write_results_spotting([prediction], staging)
        target = output_dir / RESULTS_SPOTTING_FILE
        written.replace(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


# ---------------------------------------------------------------------------------------------------------------
# Rendering: frames with overlays, slow motion, H.264


def _render_frames(item: VideoInput, fps: float, num_frames: int) -> Iterator[np.ndarray]:
    """The frames to draw on, at full resolution, frame k at time k / fps (the frames the model saw)."""
    if item.is_file:
        from util.video import VideoReader

        reader = VideoReader(item.path, sample_fps=fps, max_frames=num_frames)
        for _, image in reader:
            yield image
        return
    source: FrameSource = JpegDirSource(item.path, fps=item.source_fps)
    if abs(item.source_fps - fps) > _FPS_TOLERANCE * fps:
        source = ResampledSource(source, fps)
    for chunk in LimitedSource(source, num_frames).iter_chunks(16):
        yield from chunk


def render(
    item: VideoInput,
    output_dir: Path,
    events: list[dict],
    classes: list[str],
    fps: float,
    num_frames: int,
    create_video: bool,
    visualize_frames: bool,
    slowmo_factor: int,
    slowmo_span_s: float,
    progress: Progress | None = None,
    highlights_s: float | None = None,
) -> tuple[Path | None, Path | None, int, list[float]]:
    """Draw the overlays on every frame; write ``annotated.mp4`` and/or ``frames/``.

    ``events`` and ``num_frames`` count frames at the model's ``fps``; a source with a higher frame rate (a 25 fps
    video under a 10 fps model) is drawn at its own rate, the events placed at their times, so the video plays
    smoothly. Returns (video path or None, frames folder or None, frames in the video, each event's time in the
    video in seconds (slow motion stretches the clock), in the order of ``events``).
    """
    render_fps = item.source_fps if item.source_fps > fps * (1 + _FPS_TOLERANCE) else fps
    if render_fps != fps:
        scale = render_fps / fps
        num_frames = max(1, round(num_frames * scale))
        events = [{**e, "frame": min(num_frames - 1, round(int(e["frame"]) * scale))} for e in events]
        fps = render_fps
    colors = vis.class_colors(classes)
    label_span = max(1, round(vis.LABEL_SPAN_S * fps))
    spans = vis.EventSpans(events, label_span)
    repeats = vis.slowmo_repeats(
        num_frames, [e["frame"] for e in events], slowmo_factor, round(slowmo_span_s * fps)
    )
    if highlights_s is not None:  # a highlight reel: only the frames around each action are written
        repeats = repeats * vis.highlight_mask(
            num_frames, [e["frame"] for e in events], round(highlights_s * fps)
        )
    starts = np.concatenate([[0], np.cumsum(repeats)])
    video_times = [float(starts[min(max(int(e["frame"]), 0), num_frames)]) / fps for e in events]
    frames_dir = output_dir / FRAMES_DIR
    partial = output_dir / f".{FRAMES_DIR}.partial"
    if visualize_frames:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    writer: vis.H264Writer | None = None
    bar: np.ndarray | None = None
    size: tuple[int, int] | None = None

    def open_writer(width: int, height: int) -> None:
        nonlocal writer, bar, size
        size = vis.output_size(width, height)
        bar = vis.timeline_bar(size[0], num_frames, events, colors, vis.bar_height(size[1]))
        if create_video:
            audio = (item.path, vis.repeat_segments(repeats)) if item.is_file else None
            writer = vis.H264Writer(output_dir / VIDEO_FILE, fps, size[0], size[1], audio=audio)

    def drawn() -> Iterator[tuple[int, np.ndarray]]:
        for k, image in enumerate(_render_frames(item, fps, num_frames)):
            if size is None:
                open_writer(image.shape[1], image.shape[0])
            if repeats[k] == 0 and not visualize_frames:
                yield k, None  # left out of a highlight reel: nothing to draw
                continue
            if (image.shape[1], image.shape[0]) != size:
                image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
            else:
                image = image.copy()
            vis.draw_overlay(image, k, fps, spans.at(k), colors, label_span, int(repeats[k]), bar, num_frames)
            yield k, image

    written, finished = 0, False
    try:
        for k, image in _in_thread(drawn(), 8, "render-draw"):
            if writer is not None and image is not None:
                for _ in range(int(repeats[k])):
                    writer.write(image)
                written += int(repeats[k])
            if visualize_frames and image is not None:
                cv2.imwrite(str(partial / f"{k:06d}.jpg"), image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
            if progress is not None and (k % 16 == 0 or k + 1 == num_frames):
                progress("rendering", k + 1, num_frames)
        video_path = writer.close() if writer is not None else None
        finished = True
    finally:
        if not finished:  # an error on the way: leave no half-written video or frame folder
            if writer is not None:
                writer.abort()
            shutil.rmtree(partial, ignore_errors=True)
    if visualize_frames:
        shutil.rmtree(frames_dir, ignore_errors=True)
        partial.replace(frames_dir)
    return video_path, (frames_dir if visualize_frames else None), written, video_times


# ---------------------------------------------------------------------------------------------------------------
# The one entry point


def _check_options(
    score_threshold: float | None,
    nms_window: float | None,
    max_frames: int | None,
    batch_size: int,
    slowmo_factor: int,
    slowmo_span: float,
) -> None:
    if score_threshold is not None and not 0.0 <= score_threshold <= 1.0:
        raise DataError(f"score threshold {score_threshold} is not between 0 and 1")
    if nms_window is not None and nms_window < 0:
        raise DataError(f"NMS window {nms_window} is negative")
    if max_frames is not None and max_frames < 1:
        raise DataError(f"max_frames {max_frames} must be at least 1")
    if batch_size < 1:
        raise DataError(f"batch size {batch_size} must be at least 1")
    if slowmo_factor < 1:
        raise DataError(f"slow-motion factor {slowmo_factor} must be at least 1 (1 = no slow motion)")
    if slowmo_span < 0:
        raise DataError(f"slow-motion span {slowmo_span} s is negative")


def run_inference(
    model_dir: str | Path,
    output_dir: str | Path,
    *,
    video: str | Path | None = None,
    frame_dir: str | Path | None = None,
    video_name: str | None = None,
    score_threshold: float | None = None,
    nms_window: int | None = None,
    nms_window_s: float | None = None,
    visualize: bool = False,
    create_video: bool = False,
    max_frames: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | None = None,
    slowmo_factor: int = DEFAULT_SLOWMO_FACTOR,
    slowmo_span: float = DEFAULT_SLOWMO_SPAN_S,
    epoch: int | None = None,
    progress: Progress | None = None,
    highlights_s: float | None = None,
) -> dict[str, Any]:
    """Spot the actions of one video and write the outputs (module docstring) into ``output_dir``.

    Input: ``video`` (a video file; ``video_name``, if given, is the id recorded for it, else the SoccerNet id
    of a library file or the file's stem) or ``frame_dir`` (+ ``video_name``, a video id under it). ``epoch``,
    ``nms_window`` (+- frames at the model's fps) or ``nms_window_s`` (seconds) and ``score_threshold`` (the
    lowest score shown) default to what the model directory recorded (None). ``slowmo_span`` is
    in seconds each side of an action; ``slowmo_factor`` repeats those frames (1 = off). ``progress(stage, done,
    total)`` is called with stage "decoding", "detecting" and "rendering". ``highlights_s``: the annotated video is a
    highlight reel, each shown action +- that many seconds (a long match is not re-encoded whole). Bad input raises
    DataError.

    Returns ``{video_id, events, all_events, predictions, scores, timeline, video, frames, results_spotting, fps,
    num_frames, video_frames, video_times_s, epoch, postprocess, score_threshold, team, classes, summary, notes,
    seconds}``: ``events`` are those shown, ``all_events`` those of results_spotting.json; paths are ``Path`` or None,
    ``video_frames`` counts the annotated video's frames (slow motion included), ``video_times_s`` gives each
    event's time in that video (None without one), ``notes`` are one-line remarks
    for the user (a resampled frame rate), ``seconds`` the time of each stage (load, detect, render, total).
    """
    window = nms_window if nms_window is not None else nms_window_s
    _check_options(score_threshold, window, max_frames, batch_size, slowmo_factor, slowmo_span)
    started = time.perf_counter()
    if progress is not None:  # opening the input and loading the model
        progress("decoding", 0, 1)
    item = resolve_input(video, frame_dir, video_name, max_frames)
    model, config, epoch = load_model(model_dir, epoch=epoch, device=_device(device))
    usage = load_selection(model_dir)
    try:
        post = usage["postprocess"].with_overrides(nms_window, nms_window_s, float(config["fps"]))
    except ValueError as e:
        raise DataError(str(e)) from None
    if score_threshold is None:
        score_threshold = usage["display_threshold"]
    log.info(
        "post-processing: %s; events shown from score %g%s",
        post.describe(float(config["fps"])), score_threshold,
        "" if usage["recorded"] else " (the defaults: the model recorded none)",
    )  # fmt: skip
    seconds = {"load": time.perf_counter() - started}
    scores, team, notes = detect(model, config, item, max_frames, batch_size, device, progress)
    seconds["detect"] = time.perf_counter() - started - seconds["load"]
    outputs = _write_outputs(item, Path(output_dir), config, scores, team, post, score_threshold, epoch)
    fps, num_frames = float(config["fps"]), len(scores)
    video_path = frames_path = video_times = None
    video_frames = 0
    if create_video or visualize:
        render_started = time.perf_counter()
        video_path, frames_path, video_frames, video_times = render(
            item,
            Path(output_dir),
            outputs["events"],
            list(config["classes"]),
            fps,
            num_frames,
            create_video,
            visualize,
            slowmo_factor,
            slowmo_span,
            progress,
            highlights_s,
        )
        seconds["render"] = time.perf_counter() - render_started
    seconds["total"] = time.perf_counter() - started
    return {
        **outputs,
        "video": video_path,
        "frames": frames_path,
        "video_frames": video_frames,
        "video_times_s": video_times,
        "fps": fps,
        "num_frames": num_frames,
        "epoch": epoch,
        "postprocess": post,
        "score_threshold": score_threshold,
        "team": team is not None,
        "classes": list(config["classes"]),
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
) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Per-frame scores of ``item`` through the one predict path, decoding in a thread ahead of the model.

    Returns (scores (T, C+1), team P(right) (T,) or None, notes for the user, e.g. a resampled frame rate).
    """
    notes: list[str] = []
    source = PrefetchSource(open_source(config, item, max_frames, notes))
    for note in notes:
        log.warning("%s", note)
    fps = float(config["fps"])
    expected = item.expected_frames
    if item.source_fps and abs(item.source_fps - fps) > _FPS_TOLERANCE * fps:
        expected = round(expected * fps / item.source_fps)

    # Decoding runs alongside the model, so it is reported as part of "detecting".
    def on_batch(done: int, total: int | None) -> None:
        if progress is not None:
            progress("detecting", done, max(total or expected, done))

    scores, team = predict_scores(
        model, config, source, batch_size, device=_device(device), progress=on_batch
    )
    if len(scores) == 0:
        raise DataError(f"{item.path}: no frames could be read")
    if progress is not None:
        progress("detecting", len(scores), len(scores))
    return scores, team, notes


def _device(device: str | None) -> str:
    from model.predict import resolve_device

    return str(resolve_device(device))


def _write_outputs(
    item: VideoInput,
    output_dir: Path,
    config: dict,
    scores: np.ndarray,
    team: np.ndarray | None,
    post: PostProcess,
    score_threshold: float,
    epoch: int,
) -> dict[str, Any]:
    """predictions.json (the events shown), scores.npz, results_spotting.json (every event), timeline.png."""
    fps, classes = float(config["fps"]), list(config["classes"])
    results = {item.video_id: (scores, team)}
    (prediction,) = scores_to_predictions(results, config, post)
    shown = [e for e in prediction["events"] if e["score"] >= score_threshold]
    events = event_rows(shown, fps)
    output_dir.mkdir(parents=True, exist_ok=True)
    document = {
        "video": item.video_id,
        "fps": fps,
        "num_frames": len(scores),
        "events": events,
        "source": str(item.path),
        "epoch": epoch,
        "score_threshold": score_threshold,
        "postprocess": post.to_dict(),
        "nms_window": post.event_options(fps)["nms_window"],
    }
    store_json(output_dir / PREDICTIONS_FILE, document)
    store_scores(output_dir / SCORES_FILE, results)
    results_spotting = _write_results_spotting(prediction, output_dir)
    colors = vis.class_colors(classes)
    title = f"{item.video_id}: {len(events)} events (score >= {score_threshold:g}; {post.describe(fps)})"
    vis.plot_timeline(
        output_dir / TIMELINE_FILE, scores, classes, fps, events, colors, score_threshold, title
    )
    return {
        "video_id": item.video_id,
        "events": events,
        "all_events": prediction["events"],
        "predictions": output_dir / PREDICTIONS_FILE,
        "scores": output_dir / SCORES_FILE,
        "timeline": output_dir / TIMELINE_FILE,
        "results_spotting": results_spotting,
        "summary": summary_table(events, classes, team is not None),
    }
