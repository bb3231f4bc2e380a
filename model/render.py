"""Step 5's annotated outputs: frames drawn with their overlays (``util.visualize``), written as ``annotated.mp4``
(``util.video_writer``) and/or ``frames/``: the whole video, slowed down around each action, or a highlight reel.

A highlight reel (``RenderOptions.highlights_s``) is short by construction: :func:`plan_reel` fills a target length
(``RenderOptions.reel_target_frames``: a share of the match, at least ``REEL_MIN_S`` or the whole video, at most a
cap) with the best-scoring actions of the chosen classes and team, each +- ``highlights_s``, windows that overlap
merged, shown in time order, without slow motion unless asked. It is drawn by seeking to each window
(``util.video_index.VideoFrames.iter_range``: one seek to the keyframe before the window, then decoding forward; a
frame folder reads those JPEGs only), so only the frames it shows are converted and drawn, and only those and the
reference frames from each window's keyframe are decoded: not the whole match.

Decoding runs in a thread, drawing in the caller's and encoding in the writer's; nothing half-written is left on
an error.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dataset.source import (
    FPS_TOLERANCE,
    FrameSource,
    JpegDirSource,
    LimitedSource,
    ResampledSource,
    VideoInput,
    in_thread,
)
from model.inference_options import (
    DEFAULT_REEL_MAX_S,
    DEFAULT_REEL_SHARE,
    DEFAULT_SLOWMO_FACTOR,
    REEL_MIN_S,
)
from util import visualize as vis
from util.io import DataError
from util.video_writer import H264Writer

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (stage, done, total)
DEFAULT_SLOWMO_SPAN_S = 0.4
VIDEO_FILE = "annotated.mp4"
FRAMES_DIR = "frames"
CHUNK_FRAMES = 16


@dataclass(frozen=True)
class RenderOptions:
    """What step 5 draws: ``video`` (annotated.mp4) and/or ``frames`` (frames/), slow motion (``slowmo_factor``
    repeats of each frame within ``slowmo_span_s`` of an action; 1 = off; None: ``DEFAULT_SLOWMO_FACTOR`` in the
    whole video, off in a highlight reel) and ``highlights_s``: None, the whole video; else a highlight reel of the
    best-scoring actions of ``highlight_classes`` (None: every class) by ``highlight_team`` ("left" / "right";
    None: either), each +- ``highlights_s`` seconds, as many as fit in ``reel_share`` of the match (1: no share
    limit; never under ``REEL_MIN_S``, or the whole video when shorter) and ``reel_max_s`` seconds (0: no cap),
    slow motion included."""

    video: bool = True
    frames: bool = False
    slowmo_factor: int | None = None
    slowmo_span_s: float = DEFAULT_SLOWMO_SPAN_S
    highlights_s: float | None = None
    highlight_classes: tuple[str, ...] | None = None
    highlight_team: str | None = None
    reel_share: float = DEFAULT_REEL_SHARE
    reel_max_s: float = DEFAULT_REEL_MAX_S

    def __post_init__(self) -> None:
        if self.slowmo_factor is not None and self.slowmo_factor < 1:
            raise DataError(
                f"slow-motion factor {self.slowmo_factor} must be at least 1 (1 = no slow motion)"
            )
        if self.slowmo_span_s < 0:
            raise DataError(f"slow-motion span {self.slowmo_span_s} s is negative")
        if self.highlights_s is not None and self.highlights_s < 0:
            raise DataError(f"highlight span {self.highlights_s} s is negative")
        if (
            self.highlight_classes is not None or self.highlight_team is not None
        ) and self.highlights_s is None:
            raise DataError("a highlight reel's classes or team need a highlight span (--highlights SECONDS)")
        if self.highlight_team not in (None, "left", "right"):
            raise DataError(f"highlight team {self.highlight_team!r} must be 'left' or 'right'")
        if not 0 < self.reel_share <= 1:  # (NaN fails too)
            raise DataError(f"reel share {self.reel_share} must be above 0 and at most 1 (1: no share limit)")
        if not (self.reel_max_s >= 0 and math.isfinite(self.reel_max_s)):
            raise DataError(f"reel cap {self.reel_max_s} s must be 0 (no cap) or positive")

    def in_reel(self, event: dict) -> bool:
        """Whether ``event`` is one of the actions a highlight reel may show (its class and team chosen)."""
        classes, team = self.highlight_classes, self.highlight_team
        return (classes is None or event["label"] in classes) and (team is None or event.get("team") == team)

    @property
    def reel(self) -> bool:
        """Whether this is a highlight reel (else the whole video)."""
        return self.highlights_s is not None

    @property
    def slowmo(self) -> int:
        """The slow-motion factor drawn: the one asked for, else 3 in the whole video and 1 (off) in a reel."""
        if self.slowmo_factor is not None:
            return int(self.slowmo_factor)
        return 1 if self.reel else DEFAULT_SLOWMO_FACTOR

    def reel_target_frames(self, num_frames: int, fps: float) -> int:
        """The most frames a highlight reel of a ``num_frames``-frame match at ``fps`` holds (slow motion counted):
        ``reel_share`` of the match, at least ``REEL_MIN_S`` (or the whole match when shorter), at most
        ``reel_max_s`` (0: no cap); at least one frame."""
        match_s = num_frames / fps
        target_s = min(match_s, max(self.reel_share * match_s, REEL_MIN_S))
        if self.reel_max_s > 0:
            target_s = min(target_s, self.reel_max_s)
        return max(1, math.floor(target_s * fps + 1e-6))

    @property
    def any(self) -> bool:
        return self.video or self.frames


# ---------------------------------------------------------------------------------------------------------------
# The highlight reel: which frames it shows


@dataclass(frozen=True)
class Reel:
    """A highlight reel's plan over a match of ``len(covered)`` frames: ``windows``, the [start, stop) frame ranges
    shown, merged and in time order; ``covered`` (bool per frame); ``picked`` (per event of the plan, in its order)
    whether its window was added for it; ``frames``, the reel's length in output frames (slow motion counted), at
    most ``target``."""

    windows: list[tuple[int, int]]
    covered: np.ndarray
    picked: list[bool]
    frames: int
    target: int

    def shows(self, frame: int) -> bool:
        """Whether match frame ``frame`` is in the reel."""
        return (
            bool(self.covered[min(max(int(frame), 0), len(self.covered) - 1)]) if len(self.covered) else False
        )


def _runs(covered: np.ndarray) -> list[tuple[int, int]]:
    """The [start, stop) runs of True in ``covered``."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], covered.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def plan_reel(
    events: Sequence[dict],
    num_frames: int,
    fps: float,
    options: RenderOptions,
    repeats: np.ndarray | None = None,
) -> Reel:
    """Which frames a highlight reel shows: the chosen actions (``options.in_reel``), best score first (the earlier
    on a tie), each adds its window (+- ``options.highlights_s``) when the frames it adds (``repeats`` per frame:
    slow motion; None: 1 each) keep the reel within ``options.reel_target_frames``; a window that does not fit is
    passed over, and a later one that does (one overlapping the reel already, a window cut by the video's ends)
    still goes in. Overlapping windows merge; the reel plays them in time order. When not even the best action's
    window fits, the reel is as much of it as fits, centred on the action; with no chosen action at all, the first
    window's worth of frames (the reel is still a video)."""
    if num_frames < 1:
        return Reel([], np.zeros(0, bool), [False] * len(events), 0, 0)
    span = max(0, round(float(options.highlights_s or 0.0) * fps))
    target = options.reel_target_frames(num_frames, fps)
    cost = np.ones(num_frames, np.int64) if repeats is None else np.asarray(repeats, np.int64)[:num_frames]
    covered = np.zeros(num_frames, bool)
    picked = [False] * len(events)

    def at(i: int) -> int:
        return min(max(int(events[i]["frame"]), 0), num_frames - 1)

    chosen = sorted(
        (i for i, e in enumerate(events) if options.in_reel(e)),
        key=lambda i: (-float(events[i]["score"]), at(i)),
    )
    used = 0
    for i in chosen:
        lo, hi = max(0, at(i) - span), min(num_frames, at(i) + span + 1)
        added = int(cost[lo:hi][~covered[lo:hi]].sum())
        if used + added <= target:
            covered[lo:hi] = True
            used += added
            picked[i] = True
    if not covered.any():  # not even the best window fits: its middle, as long as the target allows
        centre = at(chosen[0]) if chosen else 0
        first, end = max(0, centre - span), min(num_frames, centre + span + 1)
        lo, hi, used = centre, centre + 1, int(cost[centre])
        while True:
            left = lo > first and used + cost[lo - 1] <= target
            right = hi < end and used + cost[hi] <= target
            if not (left or right):
                break
            if left and (not right or centre - lo <= hi - 1 - centre):
                lo -= 1
                used += int(cost[lo])
            else:
                used += int(cost[hi])
                hi += 1
        covered[lo:hi] = True
        if chosen:
            picked[chosen[0]] = True
    return Reel(_runs(covered), covered, picked, used, target)


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
    if abs(item.source_fps - fps) > FPS_TOLERANCE * fps:
        source = ResampledSource(source, fps)
    for chunk in LimitedSource(source, num_frames).iter_chunks(CHUNK_FRAMES):
        yield from chunk


def _window_frames(
    item: VideoInput, fps: float, num_frames: int, windows: list[tuple[int, int]]
) -> Iterator[tuple[int, np.ndarray]]:
    """``(k, frame k)`` for the frames of ``windows`` ([start, stop) at ``fps``, in order), the same frames as
    ``_render_frames``: a video file by one seek per window (``VideoFrames.iter_range``), a frame folder by reading
    those JPEGs; a folder at another rate than ``fps`` is read from the start, keeping the windows' frames."""
    if item.is_file:
        from util.video_index import VideoFrames

        frames = VideoFrames(item.path, fps)
        try:
            for lo, hi in windows:
                yield from _numbered(frames.iter_range(lo, min(hi, frames.num_frames), CHUNK_FRAMES), lo)
        finally:
            frames.close()
        return
    if abs(item.source_fps - fps) > FPS_TOLERANCE * fps:
        shown = np.zeros(num_frames, bool)
        for lo, hi in windows:
            shown[lo:hi] = True
        for k, image in enumerate(_render_frames(item, fps, num_frames)):
            if shown[k]:
                yield k, image
        return
    source = JpegDirSource(item.path, fps=item.source_fps)
    for lo, hi in windows:
        yield from _numbered(source.iter_range(lo, min(hi, source.num_frames), CHUNK_FRAMES), lo)


def _numbered(chunks, first: int):
    """(frame number, image) of the frames of ``chunks``, the first being frame ``first``."""
    return enumerate((image for chunk in chunks for image in chunk), first)


def render(
    item: VideoInput,
    output_dir: Path,
    events: list[dict],
    classes: list[str],
    fps: float,
    num_frames: int,
    options: RenderOptions,
    progress: Progress | None = None,
    truth: list[dict] | None = None,
) -> tuple[Path | None, Path | None, int, list[float | None]]:
    """Draw the overlays; write ``annotated.mp4`` and/or ``frames/`` as ``options`` say: every frame, or a highlight
    reel's (``plan_reel``; frames/ still holds every frame when asked for, which decodes the whole video).

    ``events`` and ``num_frames`` count frames at the model's ``fps``; a source with a higher frame rate (a 25 fps
    video under a 10 fps model) is drawn at its own rate, the events placed at their times, so the video plays
    smoothly. Returns (video path or None, frames folder or None, frames in the video, each event's time in the
    video in seconds (slow motion stretches the clock; None for an event whose frame a highlight reel leaves out),
    in the order of ``events``). ``truth`` (ground-truth events with ``found``, at ``fps``) are labelled too, at
    the right: found in green, missed in red; an event marked ``correct`` False (a false detection) gets a red
    frame round its label.
    """
    create_video, visualize_frames = options.video, options.frames
    render_fps = item.source_fps if item.source_fps > fps * (1 + FPS_TOLERANCE) else fps
    if render_fps != fps:
        scale = render_fps / fps
        num_frames = max(1, round(num_frames * scale))
        events = [{**e, "frame": min(num_frames - 1, round(int(e["frame"]) * scale))} for e in events]
        truth = [{**t, "frame": min(num_frames - 1, round(int(t["frame"]) * scale))} for t in truth or []]
        fps = render_fps
    colors = vis.class_colors(classes)
    label_span = max(1, round(vis.LABEL_SPAN_S * fps))
    spans = vis.EventSpans(events, label_span)
    truth_spans = vis.EventSpans([{**t, "score": 1.0} for t in truth], label_span) if truth else None
    repeats = vis.slowmo_repeats(
        num_frames, [e["frame"] for e in events], options.slowmo, round(options.slowmo_span_s * fps)
    )
    reel = None
    if options.reel:  # a highlight reel: only its windows' frames are written
        reel = plan_reel(events, num_frames, fps, options, repeats)
        repeats = repeats * reel.covered
        chosen = [options.in_reel(e) for e in events]
        log.info(
            "highlight reel: %d of %d chosen actions picked, %d windows, %.1f s (target %.1f s) of a %.1f s match",
            sum(reel.picked), sum(chosen), len(reel.windows), reel.frames / fps, reel.target / fps,
            num_frames / fps,
        )  # fmt: skip
    starts = np.concatenate([[0], np.cumsum(repeats)])
    video_times: list[float | None] = []
    for e in events:
        frame = min(max(int(e["frame"]), 0), num_frames)
        shown = reel is None or reel.shows(frame)
        video_times.append(float(starts[frame]) / fps if shown else None)
    frames_dir = output_dir / FRAMES_DIR
    partial = output_dir / f".{FRAMES_DIR}.partial"
    if visualize_frames:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    writer: H264Writer | None = None
    bar: np.ndarray | None = None
    size: tuple[int, int] | None = None
    seeking = reel is not None and not visualize_frames  # decode the reel's windows only
    to_draw = int(reel.covered.sum()) if seeking else num_frames

    def open_writer(width: int, height: int) -> None:
        nonlocal writer, bar, size
        size = vis.output_size(width, height)
        bar = vis.timeline_bar(size[0], num_frames, events, colors, vis.bar_height(size[1]))
        if create_video:
            audio = (item.path, vis.repeat_segments(repeats)) if item.is_file else None
            writer = H264Writer(output_dir / VIDEO_FILE, fps, size[0], size[1], audio=audio)

    def source() -> Iterator[tuple[int, np.ndarray]]:
        if seeking:
            return _window_frames(item, fps, num_frames, reel.windows)
        return enumerate(_render_frames(item, fps, num_frames))

    def drawn() -> Iterator[tuple[int, np.ndarray | None]]:
        for k, image in source():
            if size is None:
                open_writer(image.shape[1], image.shape[0])
            if repeats[k] == 0 and not visualize_frames:
                yield k, None  # left out of a highlight reel: nothing to draw
                continue
            if (image.shape[1], image.shape[0]) != size:
                image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
            else:
                image = image.copy()
            vis.draw_overlay(image, k, fps, spans.at(k), colors, label_span, int(repeats[k]), bar, num_frames,
                             truth=None if truth_spans is None else truth_spans.at(k))  # fmt: skip
            yield k, image

    written, done, finished = 0, 0, False
    try:
        for k, image in in_thread(drawn(), 8, "render-draw"):
            if writer is not None and image is not None:
                for _ in range(int(repeats[k])):
                    writer.write(image)
                written += int(repeats[k])
            if visualize_frames and image is not None:
                cv2.imwrite(str(partial / f"{k:06d}.jpg"), image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])
            done += 1
            if progress is not None and (done % CHUNK_FRAMES == 0 or done == to_draw):
                progress("rendering", done, to_draw)
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
