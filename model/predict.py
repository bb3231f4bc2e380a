"""The one predict path: a model and a frame source in, per-frame scores out (DESIGN.md, "One predict path").

Training (validation and test), evaluation, inference and the web app all call ``predict_scores``: windows of
``clip_len`` frames overlapping by half, read as a stream (a JPEG folder or a video decoded on the fly), batched,
under ``torch.inference_mode()`` and mixed precision on CUDA; the softmax scores of overlapping windows are
averaged. ``predict_split`` runs it over a split's videos and writes ``pred-{split}.{epoch}.json`` (events) and
``pred-{split}.{epoch}.score.npz`` (per-frame scores) in a model directory.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dataset.source import FrameSource, iter_windows, open_frame_source
from dataset.transform import center_crop, to_clips
from model.common import unwrap_model
from util.io import store_json
from util.postprocess import PostProcess, scores_to_events, store_scores

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 8  # windows per batch, everywhere: scores then agree bit for bit between the steps


def source_size(config: dict) -> tuple[int, int] | None:
    """(width, height) of the frames the model was trained on, before any crop (None: unknown, use as read)."""
    if config.get("source_width") and config.get("source_height"):
        return int(config["source_width"]), int(config["source_height"])
    return None


def model_frame_source(config: dict, path: str | Path, num_frames: int | None = None) -> FrameSource:
    """Open a frame folder or a video file at the model's frame rate and frame size."""
    return open_frame_source(path, fps=float(config["fps"]), size=source_size(config), num_frames=num_frames)


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# SPOT_CPU_AMP: "auto" (default) = bf16 autocast on a CPU with native bf16 (AMX or AVX512-BF16), "off" = fp32.
ENV_CPU_AMP = "SPOT_CPU_AMP"


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX tiles or AVX512-BF16: oneDNN's bf16 kernels are then faster
    than fp32; elsewhere bf16 is emulated and slower)."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    try:
        return any(getattr(torch.cpu, name, lambda: False)() for name in checks)
    except Exception:  # an odd build without these probes: stay in fp32
        return False


def cpu_amp_enabled() -> bool:
    """bf16 autocast on this CPU: native bf16 and not switched off (``SPOT_CPU_AMP=off``)."""
    value = os.environ.get(ENV_CPU_AMP, "auto").strip().lower()
    if value in ("0", "off", "false", "no"):
        return False
    return cpu_has_native_bf16()


def autocast(device: torch.device, dtype: torch.dtype | None = None) -> contextlib.AbstractContextManager:
    """Mixed precision: on CUDA ``dtype`` (default bf16 where supported, else fp16); on a CPU with native bf16
    (:func:`cpu_amp_enabled`), bf16 (about 1.2x faster training and 1.35x faster inference on an AMX Xeon);
    full precision elsewhere."""
    if device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16) if cpu_amp_enabled() else contextlib.nullcontext()
    if device.type != "cuda":
        return contextlib.nullcontext()
    if dtype is None:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


class _Accumulator:
    """Running sums of per-frame scores over windows, growing as a stream of unknown length is read."""

    def __init__(self, num_classes: int, team: bool, capacity: int):
        capacity = max(capacity, 1)
        self.scores = np.zeros((capacity, num_classes), np.float64)
        self.team = np.zeros(capacity, np.float64) if team else None
        self.count = np.zeros(capacity, np.int32)

    def add(self, start: int, scores: np.ndarray, team: np.ndarray | None) -> None:
        end = start + len(scores)
        if end > len(self.count):
            grow = max(end, 2 * len(self.count)) - len(self.count)
            self.scores = np.concatenate([self.scores, np.zeros((grow, self.scores.shape[1]))])
            self.count = np.concatenate([self.count, np.zeros(grow, np.int32)])
            if self.team is not None:
                self.team = np.concatenate([self.team, np.zeros(grow)])
        self.scores[start:end] += scores
        self.count[start:end] += 1
        if self.team is not None and team is not None:
            self.team[start:end] += team

    def result(self, num_frames: int) -> tuple[np.ndarray, np.ndarray | None]:
        count = np.maximum(self.count[:num_frames], 1)[:, None]
        scores = (self.scores[:num_frames] / count).astype(np.float32)
        team = None if self.team is None else (self.team[:num_frames] / count[:, 0]).astype(np.float32)
        return scores, team


def _crop_hw(config: dict) -> tuple[int, int] | None:
    if config.get("frame_height") and config.get("frame_width"):
        return int(config["frame_height"]), int(config["frame_width"])
    return None


def _run_batch(model: nn.Module, windows: list[np.ndarray], config: dict, device: torch.device) -> tuple:
    frames = torch.from_numpy(np.stack(windows))
    clips = center_crop(to_clips(frames, device), _crop_hw(config))
    with autocast(device):
        output = model(clips)
    scores = torch.softmax(output["logits"].float(), dim=-1).cpu().numpy()
    team = output.get("team")
    team = torch.sigmoid(team.float()).cpu().numpy() if team is not None else None
    return scores, team


def predict_scores(
    model: nn.Module,
    config: dict,
    frame_source: FrameSource,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device | None = None,
    progress: Callable[[int, int | None], None] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-frame scores of one video.

    Returns ``scores`` (num_frames, num_classes + 1) float32 softmax probabilities (column 0 = background) and
    ``team`` (num_frames,) float32 P(right) when the model has a team head, else None. Windows of
    ``config["clip_len"]`` frames start every ``clip_len // 2`` frames (the last one aligned to the end of the
    video); each frame's scores are the mean over the windows that contain it. ``progress(frames_read, total)``
    is called after each batch (total is None for a video whose length is not known in advance).
    """
    device = resolve_device(device)
    model = unwrap_model(model)
    was_training = model.training
    model.eval()
    clip_len = int(config["clip_len"])
    stride = max(1, clip_len - clip_len // 2)
    num_classes = len(config["classes"]) + 1
    total = frame_source.num_frames
    acc = _Accumulator(num_classes, bool(config.get("team")), total or 4 * clip_len)
    num_read = 0
    pending: list[tuple[int, np.ndarray, int]] = []

    def flush() -> None:
        scores, team = _run_batch(model, [w for _, w, _ in pending], config, device)
        for i, (start, _, num_valid) in enumerate(pending):
            acc.add(start, scores[i, :num_valid], None if team is None else team[i, :num_valid])
        pending.clear()
        if progress is not None:
            progress(num_read, total)

    def counted(chunks):
        nonlocal num_read
        for chunk in chunks:
            num_read += len(chunk)
            yield chunk

    try:
        with torch.inference_mode():
            for window in iter_windows(counted(frame_source.iter_chunks(clip_len)), clip_len, stride):
                pending.append(window)
                if len(pending) == batch_size:
                    flush()
            if pending:
                flush()
    finally:
        model.train(was_training)
    return acc.result(num_read)


def predict_videos(
    model: nn.Module,
    config: dict,
    frame_dir: str | Path,
    videos: Sequence[dict],
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """``predict_scores`` for each video ``{video, num_frames?}`` of a frame directory: video id -> (scores, team)."""
    results = {}
    for video in videos:
        source = model_frame_source(
            config, Path(frame_dir) / video["video"], num_frames=video.get("num_frames")
        )
        results[video["video"]] = predict_scores(model, config, source, batch_size=batch_size, device=device)
    return results


def scores_to_predictions(
    results: dict[str, tuple[np.ndarray, np.ndarray | None]],
    config: dict,
    post: PostProcess | None = None,
    peaks: bool = True,
) -> list[dict]:
    """Per-video predictions ``{video, fps, events: [{frame, label, score[, team, team_score]}]}``; events come
    from ``util.postprocess.scores_to_events`` under ``post`` (windows in seconds, read at the model's fps; None = the
    default ``PostProcess()``), with the team head's P(right) when the model has one."""
    fps = float(config["fps"])
    options = (post or PostProcess()).event_options(fps)
    predictions = []
    for video, (scores, team) in results.items():
        events = scores_to_events(scores, config["classes"], fps, team_scores=team, peaks=peaks, **options)
        predictions.append({"video": video, "fps": fps, "events": events})
    return predictions


def prediction_paths(out_dir: str | Path, split: str, epoch: int) -> tuple[Path, Path]:
    """``pred-{split}.{epoch}.json`` and ``pred-{split}.{epoch}.score.npz`` in ``out_dir``."""
    stem = Path(out_dir) / f"pred-{split}.{epoch}"
    return stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".score.npz")


def write_predictions(
    out_dir: str | Path,
    split: str,
    epoch: int,
    results: dict[str, tuple[np.ndarray, np.ndarray | None]],
    config: dict,
    post: PostProcess | None = None,
) -> tuple[list[dict], Path]:
    """Write ``pred-{split}.{epoch}.json`` (events under ``post``) and ``.score.npz``; returns the predictions
    and the json path."""
    json_path, npz_path = prediction_paths(out_dir, split, epoch)
    predictions = scores_to_predictions(results, config, post)
    store_scores(npz_path, results)
    store_json(json_path, predictions)
    return predictions, json_path


def predict_split(
    model: nn.Module,
    config: dict,
    frame_dir: str | Path,
    videos: Sequence[dict],
    split: str,
    out_dir: str | Path,
    epoch: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device | None = None,
    post: PostProcess | None = None,
) -> tuple[list[dict], Path]:
    """Predict every video of a split (parsed-label entries) and write the prediction files in ``out_dir``."""
    log.info("predicting %d %s video(s)", len(videos), split)
    results = predict_videos(model, config, frame_dir, videos, batch_size=batch_size, device=device)
    return write_predictions(out_dir, split, epoch, results, config, post)
