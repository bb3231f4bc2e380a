"""Drawing the results of step 5: class colours, frame overlays, slow motion, the timeline plot.

One colour per class (``class_colors``) is shared by the annotated video, its timeline bar and ``timeline.png``, so
a colour means the same action everywhere. A team is shown as a side marker: a triangle pointing to the team's side
(left / right) beside the label, and in the timeline bar the left team's ticks fill the upper half, the right
team's the lower half.

The annotated video is written by ``util.video_writer.H264Writer``; ``model.render`` puts the two together.
"""

from __future__ import annotations

import bisect
import colorsys
import io
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from util.io import atomic_write_bytes

log = logging.getLogger(__name__)

Color = tuple[int, int, int]  # RGB, 0-255

# SoccerNet-Ball's 12 classes (util.soccernet.CLASSES) get fixed, well separated colours; other class names get
# evenly spaced hues after them.
_CLASS_PALETTE: dict[str, Color] = {
    "PASS": (31, 119, 180),
    "DRIVE": (44, 160, 44),
    "HEADER": (255, 187, 30),
    "HIGH PASS": (23, 190, 207),
    "OUT": (150, 150, 150),
    "CROSS": (255, 127, 14),
    "THROW IN": (148, 103, 189),
    "SHOT": (214, 39, 40),
    "BALL PLAYER BLOCK": (140, 86, 75),
    "PLAYER SUCCESSFUL TACKLE": (227, 119, 194),
    "FREE KICK": (188, 189, 34),
    "GOAL": (120, 255, 80),
}
TEAM_SIDES = ("left", "right")
# How long (each side of its frame) a detected action's label stays on screen in the annotated video.
LABEL_SPAN_S = 0.75
# Output videos are never smaller than this many rows, so the labels stay legible (224p SoccerNet stays as it is).
MIN_VIDEO_HEIGHT = 224
FONT = cv2.FONT_HERSHEY_SIMPLEX
FOUND, MISSED = (26, 152, 80), (215, 48, 39)  # ground truth found / missed, a false detection (RGB)


def class_colors(classes: Sequence[str]) -> dict[str, Color]:
    """RGB colour of each class: SoccerNet classes keep theirs; other names get distinct hues in list order."""
    others = [c for c in classes if c not in _CLASS_PALETTE]
    colors = {c: _CLASS_PALETTE[c] for c in classes if c in _CLASS_PALETTE}
    for i, name in enumerate(others):
        r, g, b = colorsys.hsv_to_rgb((0.08 + i / max(1, len(others))) % 1.0, 0.75, 0.95)
        colors[name] = (int(r * 255), int(g * 255), int(b * 255))
    return colors


def text_color(background: Color) -> Color:
    """Black or white, whichever reads better on ``background``."""
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)


def format_clock(seconds: float) -> str:
    """``83.456`` -> ``"01:23.45"`` (minutes:seconds.hundredths; minutes are not wrapped at 60)."""
    hundredths = int(round(max(0.0, seconds) * 100))
    minutes, rest = divmod(hundredths, 6000)
    return f"{minutes:02d}:{rest // 100:02d}.{rest % 100:02d}"


def output_size(width: int, height: int, min_height: int = MIN_VIDEO_HEIGHT) -> tuple[int, int]:
    """Size of the annotated video for frames of ``width`` x ``height``: even (yuv420p needs it), scaled up to
    ``min_height`` rows when smaller."""
    if height < min_height:
        width, height = round(width * min_height / height), min_height
    return width - width % 2, height - height % 2


# ---------------------------------------------------------------------------------------------------------------
# Which frames show which event, and which are slowed down


class EventSpans:
    """Events sorted by frame, to ask which are within ``span_frames`` of a frame (bisection, no scan)."""

    def __init__(self, events: Sequence[dict], span_frames: int):
        self.events = sorted(events, key=lambda e: (e["frame"], -e["score"]))
        self.frames = [int(e["frame"]) for e in self.events]
        self.span = max(0, int(span_frames))

    def at(self, frame: int) -> list[dict]:
        lo = bisect.bisect_left(self.frames, frame - self.span)
        hi = bisect.bisect_right(self.frames, frame + self.span)
        return self.events[lo:hi]


def slowmo_repeats(num_frames: int, event_frames: Sequence[int], factor: int, span_frames: int) -> np.ndarray:
    """How many times each frame is written: ``factor`` within ``span_frames`` of an event, else 1.

    The output has ``num_frames + (factor - 1) * (number of slowed frames)`` frames; overlapping spans merge.
    """
    repeats = np.ones(num_frames, np.int64)
    if factor <= 1 or num_frames == 0:
        return repeats
    slowed = np.zeros(num_frames + 1, np.int64)
    for frame in event_frames:
        lo, hi = max(0, int(frame) - span_frames), min(num_frames, int(frame) + span_frames + 1)
        if lo < hi:
            slowed[lo] += 1
            slowed[hi] -= 1
    repeats[np.cumsum(slowed[:-1]) > 0] = int(factor)
    return repeats


def highlight_mask(num_frames: int, event_frames: Sequence[int], span_frames: int) -> np.ndarray:
    """1 for the frames within ``span_frames`` of an event, else 0 (a highlight reel); with no event, the first
    ``span_frames`` frames, so that the reel is still a video."""
    mask = np.zeros(num_frames, np.int64)
    for frame in event_frames:
        mask[max(0, int(frame) - span_frames) : max(0, int(frame) + span_frames + 1)] = 1
    if not mask.any():
        mask[: max(1, span_frames)] = 1
    return mask


def repeat_segments(repeats: np.ndarray) -> list[tuple[int, int, int]]:
    """Runs of equal repeat count: ``[(first frame, end frame (exclusive), repeats), ...]``."""
    if len(repeats) == 0:
        return []
    edges = np.flatnonzero(np.diff(repeats)) + 1
    starts = [0, *edges.tolist()]
    ends = [*edges.tolist(), len(repeats)]
    return [(s, e, int(repeats[s])) for s, e in zip(starts, ends, strict=True)]


# ---------------------------------------------------------------------------------------------------------------
# Frame overlays


def _font(height: int) -> tuple[float, int]:
    """Font scale and stroke thickness for a frame ``height`` rows high."""
    return max(0.4, height / 560), max(1, round(height / 300))


def _side_marker(img: np.ndarray, x: int, y: int, size: int, side: str, color: Color) -> None:
    """A filled triangle pointing to ``side`` with its base centred at (x, y)."""
    d = -1 if side == "left" else 1
    points = np.array([[x, y - size], [x, y + size], [x + d * int(size * 1.4), y]], np.int32)
    cv2.fillConvexPoly(img, points, color, lineType=cv2.LINE_AA)


def draw_event_label(img: np.ndarray, x: int, y: int, event: dict, color: Color, emphasis: float) -> int:
    """Draw one event's label box (class, score, team marker) with its top-left at (x, y); returns its height.

    ``emphasis`` in [0, 1] (1 at the event's own frame) sets how opaque the box is.
    """
    scale, thick = _font(img.shape[0])
    text = f"{event['label']} {event['score']:.2f}"
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thick)
    pad = max(3, th // 3)
    team = event.get("team")
    marker = int(th * 0.55) if team in TEAM_SIDES else 0
    box_w = tw + 2 * pad + (int(marker * 2.6) if marker else 0)
    box_h = th + base + 2 * pad
    x1, y1 = min(img.shape[1], x + box_w), min(img.shape[0], y + box_h)
    region = img[y:y1, x:x1]
    alpha = 0.55 + 0.45 * float(np.clip(emphasis, 0.0, 1.0))
    region[:] = (region * (1 - alpha) + np.array(color, np.float32) * alpha).astype(np.uint8)
    ink = text_color(color)
    text_x = x + pad
    if marker:
        cy = y + box_h // 2
        if team == "left":
            _side_marker(img, x + pad + int(marker * 1.4), cy, marker, "left", ink)
            text_x += int(marker * 2.6)
        else:
            _side_marker(img, x + pad + tw + int(marker * 0.9), cy, marker, "right", ink)
    cv2.putText(img, text, (text_x, y + pad + th), FONT, scale, ink, thick, cv2.LINE_AA)
    return box_h


def draw_overlay(
    img: np.ndarray,
    frame: int,
    fps: float,
    events: Sequence[dict],
    colors: dict[str, Color],
    span_frames: int,
    slowmo: int = 1,
    bar: np.ndarray | None = None,
    num_frames: int | None = None,
    truth: Sequence[dict] | None = None,
) -> np.ndarray:
    """Draw the overlays of ``frame`` on ``img`` (RGB, modified in place and returned).

    ``events`` are those within ``span_frames`` of the frame (``EventSpans.at``): one label each, stacked under
    the clock (nearest first), most opaque at the event's own frame, and a coloured border at that frame. ``slowmo`` > 1 shows a
    slow-motion badge; ``bar`` (from ``timeline_bar``) is pasted at the bottom with a cursor at this frame.
    ``truth``: the ground-truth events near the frame, labelled at the right ("true PASS"), found in green and
    missed in red; an event with ``correct`` False (a false detection) gets a red frame round its label.
    """
    height, width = img.shape[:2]
    scale, thick = _font(height)
    margin = max(4, height // 60)
    clock = f"{format_clock(frame / fps)}  #{frame}"
    (cw, ch), base = cv2.getTextSize(clock, FONT, scale, thick)
    cv2.rectangle(img, (margin - 3, margin - 3), (margin + cw + 3, margin + ch + base + 3), (0, 0, 0), -1)
    cv2.putText(img, clock, (margin, margin + ch), FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)
    if slowmo > 1:
        badge = f"SLOW x{slowmo}"
        (bw, bh), bbase = cv2.getTextSize(badge, FONT, scale, thick)
        bx = width - margin - bw
        cv2.rectangle(img, (bx - 3, margin - 3), (bx + bw + 3, margin + bh + bbase + 3), (200, 30, 30), -1)
        cv2.putText(img, badge, (bx, margin + bh), FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)
    y = margin + ch + base + 2 * margin
    # Nearest (then best) first: when labels do not all fit, the ones that matter now are shown.
    for event in sorted(events, key=lambda e: (abs(int(e["frame"]) - frame), -e["score"])):
        distance = abs(int(event["frame"]) - frame)
        color = colors.get(event["label"], (255, 255, 255))
        if distance == 0:
            cv2.rectangle(img, (0, 0), (width - 1, height - 1), color, max(2, height // 90))
        emphasis = 1.0 - distance / max(1, span_frames)
        box_h = draw_event_label(img, margin, y, event, color, emphasis)
        if event.get("correct") is False:
            (tw, _), _ = cv2.getTextSize(f"{event['label']} {event['score']:.2f}", FONT, scale, thick)
            cv2.rectangle(img, (margin - 2, y - 2), (margin + tw + box_h + 2, y + box_h + 1), MISSED, 2)
        y += box_h + max(2, margin // 2)
        if y > height * 0.7:
            break
    ty = margin + ch + base + 2 * margin
    for t in sorted(truth or [], key=lambda e: abs(int(e["frame"]) - frame)):
        text = f"true {t['label']}"
        (tw, th), tbase = cv2.getTextSize(text, FONT, scale, thick)
        pad = max(3, th // 3)
        x0 = width - margin - tw - 2 * pad
        ink = FOUND if t.get("found") else MISSED
        cv2.rectangle(img, (x0, ty), (x0 + tw + 2 * pad, ty + th + tbase + 2 * pad), (0, 0, 0), -1)
        cv2.rectangle(img, (x0, ty), (x0 + tw + 2 * pad, ty + th + tbase + 2 * pad), ink, 2)
        cv2.putText(img, text, (x0 + pad, ty + pad + th), FONT, scale, ink, thick, cv2.LINE_AA)
        ty += th + tbase + 2 * pad + max(2, margin // 2)
        if ty > height * 0.7:
            break
    if bar is not None and num_frames:
        paste_bar(img, bar, frame, num_frames)
    return img


def bar_height(frame_height: int) -> int:
    return max(8, frame_height // 24)


def timeline_bar(
    width: int, num_frames: int, events: Sequence[dict], colors: dict[str, Color], height: int
) -> np.ndarray:
    """A ``height`` x ``width`` strip: the whole video left to right, one tick per event in its class colour
    (upper half for the left team, lower half for the right, full height without a team)."""
    bar = np.full((height, width, 3), 24, np.uint8)
    bar[0, :] = 90  # a thin rule separates the bar from the picture
    half = height // 2
    for event in sorted(events, key=lambda e: e["score"]):
        x = min(width - 1, int(int(event["frame"]) * width / max(1, num_frames)))
        color = colors.get(event["label"], (255, 255, 255))
        team = event.get("team")
        top, bottom = (1, half) if team == "left" else (half, height) if team == "right" else (1, height)
        bar[top:bottom, x : x + max(1, width // 400)] = color
    return bar


def paste_bar(img: np.ndarray, bar: np.ndarray, frame: int, num_frames: int) -> None:
    """Paste ``bar`` at the bottom of ``img`` and mark ``frame`` on it with a white cursor."""
    height, width = img.shape[:2]
    bh = bar.shape[0]
    img[height - bh :] = bar[:, :width]
    x = min(width - 1, int(frame * width / max(1, num_frames)))
    img[height - bh :, max(0, x - 1) : x + 2] = 255


# ---------------------------------------------------------------------------------------------------------------
# Timeline plot


def _peak_bins(values: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """Down-sample a long curve to at most ``max_points`` bins keeping each bin's maximum (peaks survive)."""
    n = len(values)
    if n <= max_points:
        return np.arange(n), values
    edges = np.linspace(0, n, max_points + 1).astype(np.int64)
    return edges[:-1], np.maximum.reduceat(values, edges[:-1])


def plot_timeline(
    path: str | os.PathLike,
    scores: np.ndarray,
    classes: Sequence[str],
    fps: float,
    events: Sequence[dict],
    colors: dict[str, Color],
    threshold: float | dict[str, float] | None = None,
    title: str = "",
    max_points: int = 4000,
    truth: Sequence[dict] | None = None,
) -> Path:
    """Write ``timeline.png``: one row per class with its score curve over time (``scores`` is (T, C+1), column 0
    background), its display threshold (one for all, or ``{class: threshold}``) as a dashed line, and its
    detected events marked (a triangle pointing to the team's side, or a dot). With ``truth`` (ground-truth events
    with ``found``; shown events with ``correct``): each true event is a tick at the row's foot, green when found,
    red when missed, and a false detection's marker is ringed in red."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import FuncFormatter

    num_frames = len(scores)
    fig, axes = plt.subplots(
        len(classes), 1, figsize=(14, 0.9 + 0.55 * len(classes)), sharex=True, squeeze=False
    )
    axes = axes[:, 0]
    duration_s = max(num_frames / fps, 1e-6)
    for k, (ax, name) in enumerate(zip(axes, classes, strict=True)):
        color = np.array(colors.get(name, (0, 0, 0))) / 255
        x, y = _peak_bins(scores[:, k + 1].astype(np.float32), max_points)
        ax.fill_between(x / fps, y, color=color, alpha=0.35, linewidth=0)
        ax.plot(x / fps, y, color=color, linewidth=0.8)
        line = threshold.get(name) if isinstance(threshold, dict) else threshold
        if line is not None:
            ax.axhline(line, color="0.5", linewidth=0.6, linestyle="--")
        mine = [e for e in events if e["label"] == name]
        if truth is not None:
            for found, tick in ((True, "#1a9850"), (False, "#d73027")):
                xs = [t["frame"] / fps for t in truth if t["label"] == name and bool(t.get("found")) == found]
                if xs:
                    ax.vlines(xs, 0, 0.22, colors=tick, linewidth=1.6, zorder=2)
            wrong = [e for e in mine if e.get("correct") is False]
            if wrong:
                ax.scatter([e["frame"] / fps for e in wrong], [e["score"] for e in wrong], s=70, facecolors="none",
                           edgecolors="#d73027", linewidths=1.2, zorder=4)  # fmt: skip
        for side, marker in (("left", "<"), ("right", ">"), (None, "o")):
            group = [e for e in mine if (e.get("team") if e.get("team") in TEAM_SIDES else None) == side]
            if group:
                ax.scatter(
                    [e["frame"] / fps for e in group],
                    [e["score"] for e in group],
                    marker=marker,
                    s=22,
                    color=color,
                    edgecolors="black",
                    linewidths=0.5,
                    zorder=3,
                )
        ax.set_ylim(0, 1.05)
        ax.set_yticks([0.5], [""])
        ax.grid(axis="y", color="0.9", linewidth=0.5)
        ax.set_xlim(0, duration_s)
        ax.set_ylabel(f"{name} ({len(mine)})", rotation=0, ha="right", va="center", fontsize=8)
        for spine in ("top", "right"):
            ax.spines[spine].set_visible(False)
    digits = 5 if duration_s >= 120 else 8  # mm:ss, or mm:ss.ff for a short clip
    axes[-1].xaxis.set_major_formatter(FuncFormatter(lambda s, _: format_clock(s)[:digits]))
    label = "time (mm:ss);  markers: detected events (< left team, > right team)"
    if truth is not None:
        label += (
            ";  ticks: ground truth (green found, red missed); red rings: false detections (SoccerNet, 1 s)"
        )
    axes[-1].set_xlabel(label)
    fig.suptitle(title or f"{len(events)} detected events", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
