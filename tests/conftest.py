"""Shared pytest fixtures. Add fixtures below; do not rewrite others' sections."""

from __future__ import annotations

# ---- videos whose frames show their own index (frame extraction, video reading)
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

INDEX_BITS = 10  # frame index modulo 1024, drawn as 10 black/white vertical stripes (bit 0 leftmost)


def draw_index(index: int, width: int, height: int) -> np.ndarray:
    """An RGB frame showing ``index`` in binary as stripes; survives H.264, resizing and JPEG."""
    img = np.zeros((height, width, 3), np.uint8)
    for bit in range(INDEX_BITS):
        if index >> bit & 1:
            img[:, bit * width // INDEX_BITS : (bit + 1) * width // INDEX_BITS] = 255
    return img


def read_index(img: np.ndarray) -> int:
    """The index drawn by ``draw_index`` in an HxW or HxWx3 image of any size."""
    gray = img.mean(axis=2) if img.ndim == 3 else img
    height, width = gray.shape
    index = 0
    for bit in range(INDEX_BITS):
        x0, x1 = bit * width // INDEX_BITS, (bit + 1) * width // INDEX_BITS
        centre = gray[height // 4 : 3 * height // 4, x0 + (x1 - x0) // 4 : x1 - (x1 - x0) // 4]
        if centre.mean() > 128:
            index |= 1 << bit
    return index


def write_index_video(
    path: Path,
    fps: float = 25.0,
    seconds: float = 2.0,
    times_s: Sequence[float] | None = None,
    size: tuple[int, int] = (160, 90),
) -> list[float]:
    """Write an H.264 video (.mp4 or .mkv) whose frame i shows i; returns the frames' times in seconds.

    Constant rate ``fps`` for ``seconds``, or exactly ``times_s`` (variable frame rate, millisecond precision).
    """
    import av

    rate = Fraction(fps).limit_denominator(1001)
    if times_s is None:
        times_s = [i / rate for i in range(round(seconds * fps))]
        time_base = 1 / rate
    else:
        time_base = Fraction(1, 1000)
    width, height = size
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = time_base
        stream.options = {"preset": "ultrafast", "crf": "18"}
        for i, t in enumerate(times_s):
            frame = av.VideoFrame.from_ndarray(draw_index(i, width, height), format="rgb24")
            frame.pts, frame.time_base = round(Fraction(t) / time_base), time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return [float(t) for t in times_s]


@pytest.fixture
def make_index_video() -> Callable[..., list[float]]:
    """``make_index_video(path, fps=25, seconds=2, times_s=None, size=(160, 90)) -> frame times``."""
    return write_index_video


# ---- a tiny untrained model directory and a short synthetic match (the app, inference and one-truth tests)


def write_tiny_model(model_dir: Path, sharpen: float = 1.0, **config_overrides) -> Path:
    """A real (untrained) model directory: config.json + checkpoint_000.pt, small and fast on a CPU, with a
    team head. ``sharpen`` scales the classifier (an untrained one gives near-uniform scores)."""
    import torch

    from model.common import build_model, default_config, save_checkpoint, save_config

    torch.manual_seed(0)
    config = default_config(
        **{
            "pretrained": False,
            "clip_len": 8,
            "frame_height": 64,
            "frame_width": 112,
            "source_width": 114,
            "source_height": 64,
            "fps": 5.0,
            "team": True,
            **config_overrides,
        }
    )
    model = build_model(config)
    with torch.no_grad():
        model.head.fc.weight.mul_(sharpen)
    model_dir.mkdir(parents=True, exist_ok=True)
    save_config(model_dir, config)
    save_checkpoint(model_dir, 0, model)
    return model_dir


def render_match(root: Path, seconds: float = 4) -> Path:
    """A short synthetic match (398x224, 25 fps, H.264 .mp4)."""
    from util.synthetic import render_library

    render_library(root, games=1, seconds=seconds)
    (video,) = root.rglob("224p.mp4")
    return video


# ---- reference definitions the tests check the library against


def sample_times(source_times_s: Sequence[float], sample_fps: float, end_s: float) -> list[int]:
    """Index of the source frame each output frame comes from (the sampler on a list of timestamps)."""
    from util.video import NearestFrameSampler

    sampler = NearestFrameSampler(sample_fps)
    picks = []
    for i, t in enumerate(source_times_s):
        picks += sampler.push(t, i)
    picks += sampler.finish(end_s)
    return [i for _, i in picks]


def window_starts(num_frames: int, clip_len: int, stride: int) -> list[int]:
    """Starts of windows of ``clip_len`` every ``stride`` frames covering ``[0, num_frames)``; the last window is
    aligned to the end of the video (a video shorter than a clip gets one window at 0, padded)."""
    if num_frames <= clip_len:
        return [0]
    starts = list(range(0, num_frames - clip_len + 1, stride))
    if starts[-1] + clip_len < num_frames:
        starts.append(num_frames - clip_len)
    return starts
