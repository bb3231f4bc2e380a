"""Clips of precomputed per-frame features, so a temporal head can be trained on a frozen backbone.

Features live in ``FEATURE_DIR/<video id>.npy``, one ``(num_frames, dim)`` float array per video at the frame
rate of the parsed labels, written by ``extract_features.py``, with ``FEATURE_DIR/features.json`` (which backbone,
frame rate, frame geometry, dtype; :func:`load_feature_info`) and ``FEATURE_DIR/backbone.pt`` (that backbone's
weights). Clip sampling and targets are exactly those of the frame clips (``dataset.frame``); ``FeatureSource`` is
the predict path's frame source over one video's features (its windows are ``(clip_len, dim)`` arrays).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from dataset.frame import ClipDataset
from dataset.source import FrameSource
from util.io import DataError, load_json

FEATURES_JSON = "features.json"  # what the features are (written by extract_features.py)
BACKBONE_FILE = "backbone.pt"  # the state dict of the backbone that computed them
EXTRACT_HINT = "compute them with extract_features.py DATASET FRAME_DIR -o FEATURE_DIR"
# Keys every features.json has (extract_features.py writes more: where the backbone came from, the dataset...).
FEATURE_INFO_KEYS = (
    "feature_arch", "clip_len", "fps", "feature_dim", "dtype", "source_width", "source_height", "frame_height",
    "frame_width",
)  # fmt: skip


def feature_path(feature_dir: str | Path, video: str) -> Path:
    return Path(feature_dir) / f"{video}.npy"


def load_features(path: str | Path, num_frames: int | None = None) -> np.ndarray:
    """Memory-map one video's ``(num_frames, dim)`` features; a missing or malformed file raises DataError."""
    path = Path(path)
    try:
        features = np.load(path, mmap_mode="r")
    except FileNotFoundError as e:
        raise DataError(f"{path}: feature file missing; {EXTRACT_HINT} (it skips finished videos)") from e
    except (OSError, ValueError, EOFError) as e:
        raise DataError(
            f"{path}: not a readable .npy array ({e}); delete it and compute it again ({EXTRACT_HINT})"
        ) from e
    if features.ndim != 2 or features.dtype.kind != "f":
        raise DataError(
            f"{path}: expected a (frames, dim) float array, got {features.dtype} of shape {features.shape}; "
            f"delete it and compute it again ({EXTRACT_HINT})"
        )
    if num_frames is not None and len(features) < num_frames:
        raise DataError(
            f"{path}: {len(features)} frames of features but the labels say {num_frames}; "
            f"compute them again (extract_features.py ... --overwrite)"
        )
    return features


class FeatureClipDataset(ClipDataset):
    """Clips of features: ``features`` is a (clip_len, dim) float32 tensor, zeros past the ends of a video."""

    def __init__(self, feature_dir: str | Path, videos: Sequence[dict], classes: Sequence[str], **kwargs):
        super().__init__(videos, classes, **kwargs)
        self.feature_dir = Path(feature_dir)
        # Validate every file up front (cheap: memory-mapped headers only).
        self.dims = {
            load_features(feature_path(self.feature_dir, v), e.num_frames).shape[1]
            for v, e in zip(self.video_ids, self.events, strict=True)
        }
        if len(self.dims) != 1:
            raise DataError(f"{self.feature_dir}: feature files differ in dimension: {sorted(self.dims)}")
        self.dim = self.dims.pop()
        self._cache: dict[int, np.ndarray] = {}

    def read_clip(self, video_index: int, start: int) -> dict:
        if video_index not in self._cache:
            path = feature_path(self.feature_dir, self.video_ids[video_index])
            self._cache[video_index] = load_features(path)
        features = self._cache[video_index]
        num_frames = self.events[video_index].num_frames
        out = np.zeros((self.clip_len, self.dim), np.float32)
        lo, hi = max(0, -start), min(self.clip_len, num_frames - start)
        if hi > lo:
            out[lo:hi] = features[start + lo : start + hi]
        return {"features": torch.from_numpy(out)}


# ---------------------------------------------------------------------------------------------------------------
# A feature folder: features.json, backbone.pt, and the features of a video as a frame source for the predict path


def is_feature_dir(path: str | Path) -> bool:
    """Whether ``path`` is a feature folder of ``extract_features.py`` (it holds a features.json)."""
    return (Path(path) / FEATURES_JSON).is_file()


def load_feature_info(feature_dir: str | Path) -> dict:
    """``FEATURE_DIR/features.json``, checked (DataError naming the file when missing or incomplete)."""
    path = Path(feature_dir) / FEATURES_JSON
    if not path.is_file():
        raise DataError(f"{path}: not found; {feature_dir} is not a feature folder ({EXTRACT_HINT})")
    info = load_json(path)
    if not isinstance(info, dict):
        raise DataError(f"{path}: expected a JSON object")
    missing = [k for k in FEATURE_INFO_KEYS if k not in info]
    if missing:
        raise DataError(f"{path}: missing key(s) {', '.join(missing)}; {EXTRACT_HINT} (--overwrite)")
    return info


def load_backbone_state(feature_dir: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of the backbone that computed the features (``FEATURE_DIR/backbone.pt``)."""
    path = Path(feature_dir) / BACKBONE_FILE
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise DataError(f"{path}: not found; {EXTRACT_HINT} (--overwrite)") from e
    except Exception as e:  # noqa: BLE001 - unpickling errors of every kind: the file is damaged
        why = (str(e).splitlines() or [type(e).__name__])[0]
        raise DataError(f"{path}: cannot load ({why}); {EXTRACT_HINT} (--overwrite)") from e
    if not isinstance(state, dict):
        raise DataError(f"{path}: not a state dict; {EXTRACT_HINT} (--overwrite)")
    return state


class FeatureSource(FrameSource):
    """One video's precomputed features as a frame source: ``iter_chunks`` yields ``(n, dim)`` float32 arrays, so
    the predict path's windows are ``(clip_len, dim)`` and its model runs ``forward_features`` on them."""

    holds_features = True

    def __init__(self, path: str | Path, fps: float, num_frames: int | None = None):
        self.features = load_features(path, num_frames)
        self.name = str(path)
        self.fps = float(fps)
        self.num_frames = len(self.features) if num_frames is None else int(num_frames)

    def iter_chunks(self, chunk_len: int):
        return self.iter_range(0, self.num_frames, chunk_len)

    def iter_range(self, start: int, stop: int, chunk_len: int):
        for first in range(start, stop, chunk_len):
            yield np.asarray(self.features[first : min(first + chunk_len, stop)], np.float32)
