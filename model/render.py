"""Step 5's annotated outputs: every frame drawn with its overlays (``util.visualize``), slow motion around each
action, optionally a highlight reel, written as ``annotated.mp4`` (``util.video_writer``) and/or ``frames/``.

Decoding runs in a thread, drawing in the caller's and encoding in the writer's; nothing half-written is left on
an error.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable, Iterator
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
from util import visualize as vis
from util.io import DataError
from util.video_writer import H264Writer

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]  # (stage, done, total)
DEFAULT_SLOWMO_FACTOR = 3
DEFAULT_SLOWMO_SPAN_S = 0.4
VIDEO_FILE = "annotated.mp4"
FRAMES_DIR = "frames"


@dataclass(frozen=True)
class RenderOptions:
    """What step 5 draws: ``video`` (annotated.mp4) and/or ``frames`` (frames/), slow motion (``slowmo_factor``
    repeats of each frame within ``slowmo_span_s`` of an action; 1 = off) and ``highlights_s`` (only the frames
    within that many seconds of an action; None = the whole video), cut around the actions of
    ``highlight_classes`` (None: every class) by ``highlight_team`` ("left" / "right"; None: either) only."""

    video: bool = True
    frames: bool = False
    slowmo_factor: int = DEFAULT_SLOWMO_FACTOR
    slowmo_span_s: float = DEFAULT_SLOWMO_SPAN_S
    highlights_s: float | None = None
    highlight_classes: tuple[str, ...] | None = None
    highlight_team: str | None = None

    def __post_init__(self) -> None:
        if self.slowmo_factor < 1:
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

    def in_reel(self, event: dict) -> bool:
        """Whether a highlight reel is cut around ``event`` (its class and team chosen)."""
        classes, team = self.highlight_classes, self.highlight_team
        return (classes is None or event["label"] in classes) and (team is None or event.get("team") == team)

    @property
    def any(self) -> bool:
        return self.video or self.frames


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
    for chunk in LimitedSource(source, num_frames).iter_chunks(16):
        yield from chunk


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
) -> tuple[Path | None, Path | None, int, list[float]]:
    """Draw the overlays on every frame; write ``annotated.mp4`` and/or ``frames/`` as ``options`` say.

    ``events`` and ``num_frames`` count frames at the model's ``fps``; a source with a higher frame rate (a 25 fps
    video under a 10 fps model) is drawn at its own rate, the events placed at their times, so the video plays
    smoothly. Returns (video path or None, frames folder or None, frames in the video, each event's time in the
    video in seconds (slow motion stretches the clock), in the order of ``events``). ``truth`` (ground-truth
    events with ``found``, at ``fps``) are labelled too, at the right: found in green, missed in red; an event
    marked ``correct`` False (a false detection) gets a red frame round its label.
    """
    create_video, visualize_frames = options.video, options.frames
    slowmo_factor, slowmo_span_s, highlights_s = (
        options.slowmo_factor,
        options.slowmo_span_s,
        options.highlights_s,
    )
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
        num_frames, [e["frame"] for e in events], slowmo_factor, round(slowmo_span_s * fps)
    )
    if highlights_s is not None:  # a highlight reel: only the frames around each (chosen) action are written
        repeats = repeats * vis.highlight_mask(
            num_frames, [e["frame"] for e in events if options.in_reel(e)], round(highlights_s * fps)
        )
    starts = np.concatenate([[0], np.cumsum(repeats)])
    video_times = [float(starts[min(max(int(e["frame"]), 0), num_frames)]) / fps for e in events]
    frames_dir = output_dir / FRAMES_DIR
    partial = output_dir / f".{FRAMES_DIR}.partial"
    if visualize_frames:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
    writer: H264Writer | None = None
    bar: np.ndarray | None = None
    size: tuple[int, int] | None = None

    def open_writer(width: int, height: int) -> None:
        nonlocal writer, bar, size
        size = vis.output_size(width, height)
        bar = vis.timeline_bar(size[0], num_frames, events, colors, vis.bar_height(size[1]))
        if create_video:
            audio = (item.path, vis.repeat_segments(repeats)) if item.is_file else None
            writer = H264Writer(output_dir / VIDEO_FILE, fps, size[0], size[1], audio=audio)

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
            vis.draw_overlay(image, k, fps, spans.at(k), colors, label_span, int(repeats[k]), bar, num_frames,
                             truth=None if truth_spans is None else truth_spans.at(k))  # fmt: skip
            yield k, image

    written, finished = 0, False
    try:
        for k, image in in_thread(drawn(), 8, "render-draw"):
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
