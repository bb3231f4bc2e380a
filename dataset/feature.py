"""Clips of precomputed per-frame features, so a temporal head can be trained on a frozen backbone.

Features live in ``FEATURE_DIR/<video id>.npy``, one ``(num_frames, dim)`` float array per video at the frame
rate of the parsed labels. Clip sampling and targets are exactly those of the frame clips (``dataset.frame``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from dataset.frame import ClipDataset
from util.io import DataError


def feature_path(feature_dir: str | Path, video: str) -> Path:
    return Path(feature_dir) / f"{video}.npy"


def load_features(path: str | Path, num_frames: int | None = None) -> np.ndarray:
    """Memory-map one video's ``(num_frames, dim)`` features; a missing or malformed file raises DataError."""
    path = Path(path)
    try:
        features = np.load(path, mmap_mode="r")
    except FileNotFoundError as e:
        raise DataError(f"{path}: feature file missing; compute the features of every video first") from e
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable .npy array ({e})") from e
    if features.ndim != 2:
        raise DataError(f"{path}: expected a (frames, dim) array, got shape {features.shape}")
    if num_frames is not None and len(features) < num_frames:
        raise DataError(f"{path}: {len(features)} frames of features but the labels say {num_frames}")
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
