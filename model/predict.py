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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dataset.source import (
    FrameFit,
    FrameSource,
    PrefetchSource,
    VideoFileSource,
    in_thread,
    iter_windows,
    open_frame_source,
)
from dataset.transform import center_crop, to_clips
from model.common import team_classes, unwrap_model
from util.cli import DEFAULT_OVERLAP, TTA_MODES
from util.frame_dir import VIDEO_FILE, FrameDir
from util.io import DataError, store_json
from util.postprocess import PostProcess, scores_to_events, store_scores

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 8  # windows per batch, everywhere: scores then agree bit for bit between the steps


def source_size(config: dict) -> tuple[int, int] | None:
    """(width, height) of the frames the model was trained on, before any crop (None: unknown, use as read)."""
    if config.get("source_width") and config.get("source_height"):
        return int(config["source_width"]), int(config["source_height"])
    return None


def model_frame_source(
    config: dict, path: str | Path, num_frames: int | None = None, fit: FrameFit | None = None
) -> FrameSource:
    """Open a frame folder or a video file at the model's frame rate and frame size, resized to it as training
    read its frames; ``fit`` (``dataset.source.aspect_fit``: step 5, for a video of another aspect ratio)
    keeps the frames' aspect instead, letterboxed or cropped into the model's size."""
    return open_frame_source(
        path, fps=float(config["fps"]), size=source_size(config), num_frames=num_frames, fit=fit
    )


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


def cuda_capability(device: torch.device | int | None = None) -> str:
    """The GPU's compute capability as CUDA names it: "sm_70" (V100), "sm_75" (T4), "sm_80" (A100), "sm_90" (H100)."""
    major, minor = torch.cuda.get_device_capability(device)
    return f"sm_{major}{minor}"


def cuda_has_native_bf16(device: torch.device | int | None = None) -> bool:
    """Whether the GPU computes bf16 natively: compute capability 8.0 or more (Ampere and later).

    ``torch.cuda.is_bf16_supported()`` is no answer: it counts emulation and says True on T4 and V100, where cuDNN
    has no bf16 convolutions (a crash or a crawl)."""
    return torch.cuda.get_device_capability(device)[0] >= 8


def cuda_amp_dtype(device: torch.device | int | None = None) -> torch.dtype:
    """The mixed-precision type of this GPU, the one choice of training (``--amp_dtype auto``), prediction,
    feature extraction and gpu-check: bf16 where it is native, else fp16 (with a GradScaler in training)."""
    return torch.bfloat16 if cuda_has_native_bf16(device) else torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None = None) -> contextlib.AbstractContextManager:
    """Mixed precision: on CUDA ``dtype`` (default :func:`cuda_amp_dtype`); on a CPU with native bf16
    (:func:`cpu_amp_enabled`), bf16 (about 1.2x faster training and 1.35x faster inference on an AMX Xeon);
    full precision elsewhere, and wherever ``dtype`` is torch.float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    if device.type == "cpu":
        return torch.autocast("cpu", dtype=torch.bfloat16) if cpu_amp_enabled() else contextlib.nullcontext()
    if device.type != "cuda":
        return contextlib.nullcontext()
    if dtype is None:
        dtype = cuda_amp_dtype(device)
    return torch.autocast("cuda", dtype=dtype)


# Per-video results everywhere: (scores (T, C + 1), team or None, displacement in frames (T,) or None); team is a team
# head's P(right) (T,), or for team as classes the joint p(class, right) (T, C) (p(class, left) = scores - team).
VideoScores = tuple[np.ndarray, np.ndarray | None, np.ndarray | None]


class ScoreSums:
    """Running sums of per-frame outputs over windows, growing as a stream of unknown length is read. It holds
    frames ``[offset, offset + capacity)`` of a video: one rank's share (``predict_range``), or all of it."""

    def __init__(self, capacity: int, num_outputs: int, offset: int = 0):
        self.capacity = max(capacity, 1)
        self.offset = offset
        self.sums = {"scores": np.zeros((self.capacity, num_outputs), np.float64)}
        self.count = np.zeros(self.capacity, np.int32)

    def _grow(self, end: int) -> None:
        grow = max(end, 2 * self.capacity) - self.capacity
        self.capacity += grow
        self.count = np.concatenate([self.count, np.zeros(grow, np.int32)])
        for name, values in self.sums.items():
            self.sums[name] = np.concatenate([values, np.zeros((grow, *values.shape[1:]))])

    def add(self, start: int, outputs: dict[str, np.ndarray], count: np.ndarray | int = 1) -> None:
        """Add the outputs of frames from ``start`` (a video's frame number) on."""
        start -= self.offset
        end = start + len(outputs["scores"])
        if end > self.capacity:
            self._grow(end)
        for name, values in outputs.items():
            if name not in self.sums:
                self.sums[name] = np.zeros((self.capacity, *values.shape[1:]), np.float64)
            self.sums[name][start:end] += values
        self.count[start:end] += count

    def merge(self, other: ScoreSums) -> None:
        """Add another share's sums (another rank's windows of the same video)."""
        size = min(other.capacity, len(self.count) + self.offset - other.offset)
        self.add(other.offset, {k: v[:size] for k, v in other.sums.items()}, other.count[:size])

    def result(self, num_frames: int) -> VideoScores:
        count = np.maximum(self.count[:num_frames], 1)

        def mean(name: str) -> np.ndarray | None:
            if name not in self.sums:
                return None
            values = self.sums[name][:num_frames]
            return (values / count.reshape(-1, *([1] * (values.ndim - 1)))).astype(np.float32)

        return mean("scores"), mean("team"), mean("displacement")


def _crop_hw(config: dict) -> tuple[int, int] | None:
    if config.get("frame_height") and config.get("frame_width"):
        return int(config["frame_height"]), int(config["frame_width"])
    return None


def tta_mode(config: dict) -> str:
    """The test-time augmentation a config asks for: "none" or "flip" (anything else is a ValueError)."""
    mode = str(config.get("tta") or "none")
    if mode not in TTA_MODES:
        raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, not {mode!r}")
    return mode


def window_stride(config: dict) -> int:
    """Frames between the starts of consecutive windows: ``clip_len`` less the ``window_overlap`` share."""
    clip_len = int(config["clip_len"])
    overlap = float(config.get("window_overlap", DEFAULT_OVERLAP))
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"window_overlap must be in [0, 1), not {overlap}")
    return max(1, clip_len - int(clip_len * overlap))


def _numpy_outputs(output: dict, config: dict, flipped: bool = False) -> dict[str, np.ndarray]:
    """A forward pass's per-frame outputs as arrays: softmax scores, P(right) (of the unflipped clip: a mirrored
    clip's left is the true right) and displacement in frames, those two when the config has them. Team as
    classes gives the class scores p(class, left) + p(class, right) and, as "team", the joint p(class, right)
    (T, C): sums both, so the means over windows and mirrors stay those of the 2C + 1 softmax itself."""
    probs = torch.softmax(output["logits"].float(), dim=-1)
    if team_classes(config):
        num_classes = len(config["classes"])
        left, right = probs[..., 1 : 1 + num_classes], probs[..., 1 + num_classes :]
        if flipped:
            left, right = right, left
        out = {
            "scores": torch.cat([probs[..., :1], left + right], -1).cpu().numpy(),
            "team": right.cpu().numpy(),
        }
    else:
        out = {"scores": probs.cpu().numpy()}
    if config.get("team") and output.get("team") is not None:
        p_right = torch.sigmoid(output["team"].float())
        out["team"] = (1.0 - p_right if flipped else p_right).cpu().numpy()
    if config.get("displacement") and output.get("displacement") is not None:
        out["displacement"] = output["displacement"].float().cpu().numpy()
    return out


def _run_batch(
    model: nn.Module,
    windows: list[np.ndarray],
    config: dict,
    device: torch.device,
    features: bool = False,
    precision: torch.dtype | None = None,
) -> dict[str, np.ndarray]:
    """Per-frame outputs of a batch of windows (of frames; with ``features``, (clip_len, dim) windows of features
    that go through ``forward_features``) under ``autocast(device, precision)``; with ``tta: flip`` the mean of the
    clips and their mirrors."""
    if features:
        with autocast(device, precision):
            output = model.forward_features(torch.from_numpy(np.stack(windows)).to(device))
        return _numpy_outputs(output, config)
    frames = torch.from_numpy(np.stack(windows))
    clips = center_crop(to_clips(frames, device), _crop_hw(config))
    flip = tta_mode(config) == "flip"
    with autocast(device, precision):
        output = model(torch.cat([clips, clips.flip(-1)]) if flip else clips)
    if not flip:
        return _numpy_outputs(output, config)
    n = len(windows)
    plain = _numpy_outputs({k: v[:n] for k, v in output.items() if torch.is_tensor(v)}, config)
    mirrored = _numpy_outputs(
        {k: v[n:] for k, v in output.items() if torch.is_tensor(v)}, config, flipped=True
    )
    return {name: (plain[name] + mirrored[name]) / 2 for name in plain}


def predict_scores(
    model: nn.Module,
    config: dict,
    frame_source: FrameSource,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    precision: torch.dtype | None = None,
) -> VideoScores:
    """Per-frame scores of one video.

    Returns ``scores`` (num_frames, num_classes + 1) float32 softmax probabilities (column 0 = background) and
    ``team`` (num_frames,) float32 P(right) when the model has a team head ((num_frames, num_classes) p(class,
    right) for team as classes, its scores then p(class, left) + p(class, right)), else None, and ``displacement``
    (num_frames,) float32 frames to the nearest event when the model has a displacement head, else None. Windows
    of ``config["clip_len"]`` frames overlap by ``config["window_overlap"]`` (default half; the last one is
    aligned to the end of the video); each frame's outputs are the mean over the windows that contain it, and with
    ``config["tta"] == "flip"`` over each window and its horizontal mirror too. ``progress(frames_read, total)``
    is called after each batch (total is None for a video whose length is not known in advance). ``precision`` is
    the autocast type (torch.float32: none); None: :func:`autocast`'s default for the device. Training passes its
    own, so that the epoch and the post-processing are chosen on the scores it trained for.
    """
    total = frame_source.num_frames
    acc, num_read = _accumulate(
        model, config, frame_source.iter_chunks(int(config["clip_len"])), frame_source, total or 0,
        batch_size, device, precision, progress=progress,
    )  # fmt: skip
    return acc.result(num_read)


def predict_range(
    model: nn.Module,
    config: dict,
    frame_source: FrameSource,
    start: int,
    stop: int,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device | None = None,
    precision: torch.dtype | None = None,
) -> ScoreSums:
    """The summed outputs of the windows that frames ``[start, stop)`` hold, one rank's share of a video
    (``shard_windows`` gives the ranges: their windows are those ``predict_scores`` reads). The shares of all
    ranks, merged (``ScoreSums.merge``), give ``predict_scores``'s result. Frames are read in a thread ahead
    of the model."""
    chunks = in_thread(frame_source.iter_range(start, stop, int(config["clip_len"])), 3, "frame-prefetch")
    acc, num_read = _accumulate(model, config, chunks, frame_source, stop - start, batch_size, device, precision,
                                offset=start)  # fmt: skip
    if num_read != stop - start:
        raise DataError(f"{frame_source.name}: read {num_read} frames of [{start}, {stop})")
    return acc


def _accumulate(
    model: nn.Module,
    config: dict,
    chunks: Iterator[np.ndarray],
    frame_source: FrameSource,
    capacity: int,
    batch_size: int,
    device: str | torch.device | None,
    precision: torch.dtype | None,
    offset: int = 0,
    progress: Callable[[int, int | None], None] | None = None,
) -> tuple[ScoreSums, int]:
    """The windows of frames ``chunks`` (frame ``offset`` on), batched through the model: (their summed outputs,
    the number of frames read)."""
    device = resolve_device(device)
    model = unwrap_model(model)
    was_training = model.training
    model.eval()
    clip_len = int(config["clip_len"])
    features = getattr(frame_source, "holds_features", False)  # a source of (n, dim) features, not images
    acc = ScoreSums(capacity or 4 * clip_len, len(config["classes"]) + 1, offset)
    num_read = 0
    pending: list[tuple[int, np.ndarray, int]] = []

    def flush() -> None:
        outputs = _run_batch(model, [w for _, w, _ in pending], config, device, features, precision)
        for i, (start, _, num_valid) in enumerate(pending):
            acc.add(offset + start, {name: values[i, :num_valid] for name, values in outputs.items()})
        pending.clear()
        if progress is not None:
            progress(num_read, frame_source.num_frames)

    def counted(chunks):
        nonlocal num_read
        for chunk in chunks:
            num_read += len(chunk)
            yield chunk

    try:
        with torch.inference_mode():
            for window in iter_windows(counted(chunks), clip_len, window_stride(config)):
                pending.append(window)
                if len(pending) == batch_size:
                    flush()
            if pending:
                flush()
    finally:
        model.train(was_training)
    return acc, num_read


def window_spans(num_frames: int, clip_len: int, stride: int) -> list[tuple[int, int]]:
    """(start, end) of the windows ``iter_windows`` reads on a video of ``num_frames`` frames: every ``stride``
    frames, then one aligned to the end when the last regular one stops short of it."""
    spans = [(start, start + clip_len) for start in range(0, num_frames - clip_len + 1, stride)]
    if num_frames and (spans[-1][1] if spans else 0) < num_frames:
        spans.append((max(num_frames - clip_len, 0), num_frames))
    return spans


def shard_windows(
    lengths: Sequence[int], clip_len: int, stride: int, num_shards: int
) -> list[list[tuple[int, int, int]]]:
    """Every window of videos of these ``lengths`` (frames), in order, cut into ``num_shards`` runs of equal size
    (to a window), one per rank: each shard is a list of ``(video index, first frame, stop frame)``, the frame
    range holding its windows of that video. A range of consecutive windows reads back, through
    ``iter_windows``, exactly those windows, so ``predict_range`` over the shards does ``predict_scores``'s work
    once, shared out. (SoccerNet-Ball has one val game: by videos, one rank would predict it alone.)"""
    windows = [(i, span) for i, n in enumerate(lengths) for span in window_spans(int(n), clip_len, stride)]
    shards = []
    for k in range(num_shards):
        share = windows[len(windows) * k // num_shards : len(windows) * (k + 1) // num_shards]
        ranges: dict[int, list[int]] = {}
        for video, (start, end) in share:
            first = ranges.setdefault(video, [start, end])
            first[1] = end
        shards.append([(video, lo, hi) for video, (lo, hi) in ranges.items()])
    return shards


def predict_videos(
    model: nn.Module,
    config: dict,
    frame_dir: str | Path | FrameDir,
    videos: Sequence[dict],
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device | None = None,
    precision: torch.dtype | None = None,
) -> dict[str, VideoScores]:
    """``predict_scores`` for each video ``{video, num_frames?}`` of a frame directory (or of the video library, each
    file decoded on the fly at the model's frame rate and size), under ``precision`` (as ``predict_scores``): video
    id -> (scores, team, displacement)."""
    results = {}
    frames = FrameDir.of(frame_dir)
    for video in videos:
        path = frames.locate(video["video"], video.get(VIDEO_FILE))
        source = model_frame_source(config, path, num_frames=video.get("num_frames"))
        if isinstance(source, VideoFileSource):  # decoded in a thread ahead of the model
            source = PrefetchSource(source)
        results[video["video"]] = predict_scores(
            model, config, source, batch_size=batch_size, device=device, precision=precision
        )
    return results


def scores_to_predictions(
    results: dict[str, VideoScores],
    config: dict,
    post: PostProcess | None = None,
    peaks: bool = True,
) -> list[dict]:
    """Per-video predictions ``{video, fps, events: [{frame, label, score[, team, team_score]}]}``; events come
    from ``util.postprocess.scores_to_events`` under ``post`` (windows in seconds, read at the model's fps; None = the
    default ``PostProcess()``), with the team of each event when the model spots teams."""
    fps = float(config["fps"])
    options = (post or PostProcess()).event_options(fps)
    predictions = []
    for video, (scores, team, displacement) in results.items():
        events = scores_to_events(
            scores,
            config["classes"],
            fps,
            team_scores=team,
            displacement=displacement,
            peaks=peaks,
            **options,
        )
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
    results: dict[str, VideoScores],
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
