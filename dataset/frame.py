"""Training clips over frame folders or video files (the predict path's frame sources are ``dataset.source``).

- ``ClipSampler`` + ``clip_targets`` are the pure parts of training-clip construction (random windows with padding
  at the video ends, foreground up-sampling, per-frame targets with dilation); ``FrameClipDataset`` reads the frames
  of those clips. A clip is a pure function of ``(seed, stream, epoch, index)``, so the data of an epoch does not
  depend on the number of workers or processes, or on whether the run was resumed.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler
from tqdm import tqdm

from dataset.source import fit_frame, read_jpeg
from util.frame_dir import VIDEO_FILE, FrameDir
from util.frame_folder import FRAME_NAME
from util.io import DataError
from util.video_index import VideoFramesCache

log = logging.getLogger(__name__)

# Frames of black padding allowed before the first / after the last frame of a video in a training clip.
DEFAULT_PAD_LEN = 5
# Streams of clip randomness: training clips and the fixed validation-loss clips never share draws.
TRAIN_STREAM = 0
VAL_STREAM = 1


# ---------------------------------------------------------------------------------------------------------------
# Training clips: sampling and targets (pure), then the frame reading


@dataclass
class VideoEvents:
    """One video's events as arrays sorted by frame: class index (1-based, 0 = background), team (1 = right,
    0 = left, -1 = unknown)."""

    num_frames: int
    frames: np.ndarray
    labels: np.ndarray
    teams: np.ndarray


def video_events(video: dict, classes: Sequence[str], source: str = "labels") -> VideoEvents:
    """Convert a parsed-label entry ``{video, num_frames, events: [{frame, label, team?}]}`` to arrays."""
    class_index = {name: i + 1 for i, name in enumerate(classes)}
    events = sorted(video.get("events", []), key=lambda e: e["frame"])
    labels = []
    for event in events:
        if event["label"] not in class_index:
            raise DataError(
                f"{source}: video {video['video']} has an event labelled {event['label']!r}, "
                f"which is not one of the dataset's classes (class.txt)"
            )
        labels.append(class_index[event["label"]])
    teams = [{"right": 1, "left": 0}.get(e.get("team"), -1) for e in events]
    return VideoEvents(
        num_frames=int(video["num_frames"]),
        frames=np.array([int(e["frame"]) for e in events], np.int64),
        labels=np.array(labels, np.int64),
        teams=np.array(teams, np.int64),
    )


def clip_targets(
    events: VideoEvents, start: int, clip_len: int, dilate_len: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame targets of the clip ``[start, start + clip_len)``.

    Returns ``labels`` (clip_len,) int64 with 0 = background, ``team`` (clip_len,) float32 (1 = right) and
    ``team_mask`` (clip_len,) float32, 1 where a frame carries an event whose team is known. Each event also
    labels the ``dilate_len`` frames on either side of it; where two dilated events meet, the nearer event wins
    (an event's own frame always keeps its label).
    """
    labels = np.zeros(clip_len, np.int64)
    team = np.zeros(clip_len, np.float32)
    team_mask = np.zeros(clip_len, np.float32)
    distance = np.full(clip_len, np.iinfo(np.int64).max, np.int64)
    lo = bisect.bisect_left(events.frames, start - dilate_len)
    hi = bisect.bisect_right(events.frames, start + clip_len - 1 + dilate_len)
    positions = np.arange(clip_len)
    for i in range(lo, hi):
        offset = int(events.frames[i]) - start
        near = np.abs(positions - offset)
        take = (near <= dilate_len) & (near < distance)
        distance[take] = near[take]
        labels[take] = events.labels[i]
        known = events.teams[i] >= 0
        team[take] = float(events.teams[i]) if known else 0.0
        team_mask[take] = 1.0 if known else 0.0
    return labels, team, team_mask


def clip_displacement(
    events: VideoEvents, start: int, clip_len: int, radius: int
) -> tuple[np.ndarray, np.ndarray]:
    """T-DEED's displacement targets of the clip ``[start, start + clip_len)``: ``offset`` (clip_len,) float32, the
    signed number of frames from each frame to the nearest event (event frame - frame), and ``mask`` (clip_len,)
    float32, 1 where that event is at most ``radius`` frames away (ties go to the earlier event)."""
    offset = np.zeros(clip_len, np.float32)
    mask = np.zeros(clip_len, np.float32)
    if radius <= 0 or len(events.frames) == 0:
        return offset, mask
    lo = bisect.bisect_left(events.frames, start - radius)
    hi = bisect.bisect_right(events.frames, start + clip_len - 1 + radius)
    positions = np.arange(start, start + clip_len)
    best = np.full(clip_len, radius + 1, np.int64)
    for frame in events.frames[lo:hi].tolist():
        delta = frame - positions
        take = np.abs(delta) < best
        best[take] = np.abs(delta[take])
        offset[take] = delta[take]
    mask[best <= radius] = 1.0
    return offset, mask


class ClipSampler:
    """Where the training clips of an epoch come from: ``sample(epoch, index) -> (video index, start frame)``.

    A clip is uniform over all frames (a video is picked in proportion to its length) and may reach ``pad_len``
    frames past either end of its video; with probability ``fg_upsample`` it is instead drawn around a random
    event, which it is guaranteed to contain: any event alike, or with ``fg_balance`` an event of a class drawn
    uniformly first (so a rare class is seen as often as PASS). Draws depend only on ``(seed, stream, epoch,
    index)``.
    """

    def __init__(
        self,
        videos: Sequence[VideoEvents],
        clip_len: int,
        pad_len: int = DEFAULT_PAD_LEN,
        fg_upsample: float = 0.0,
        seed: int = 0,
        stream: int = TRAIN_STREAM,
        fg_balance: bool = False,
    ):
        if not videos or sum(v.num_frames for v in videos) <= 0:
            raise DataError("no frames to sample training clips from (the split has no videos)")
        self.videos = list(videos)
        self.clip_len = clip_len
        self.pad_len = max(0, min(pad_len, clip_len - 1))
        self.fg_upsample = float(fg_upsample)
        self.seed = seed
        self.stream = stream
        self._cum_frames = np.cumsum([v.num_frames for v in self.videos])
        self._events = [
            (v, int(f), int(label))
            for v, video in enumerate(self.videos)
            for f, label in zip(video.frames, video.labels, strict=True)
            if 0 <= f < video.num_frames
        ]
        # Event indices grouped by class (for fg_balance): one group per class that has events.
        by_class: dict[int, list[int]] = {}
        for i, (_, _, label) in enumerate(self._events):
            by_class.setdefault(label, []).append(i)
        self._class_groups = [np.asarray(by_class[c]) for c in sorted(by_class)] if fg_balance else []

    def start_range(self, video_index: int) -> tuple[int, int]:
        """Inclusive range of clip starts in a video."""
        num_frames = self.videos[video_index].num_frames
        lo = -self.pad_len
        return lo, max(lo, num_frames - self.clip_len + self.pad_len)

    def sample(self, epoch: int, index: int) -> tuple[int, int]:
        rng = np.random.default_rng([self.seed, self.stream, epoch, index])
        if self._events and rng.random() < self.fg_upsample:
            if self._class_groups:
                group = self._class_groups[int(rng.integers(len(self._class_groups)))]
                event = int(group[int(rng.integers(len(group)))])
            else:
                event = int(rng.integers(len(self._events)))
            video_index, frame, _ = self._events[event]
            lo, hi = self.start_range(video_index)
            lo, hi = max(lo, frame - self.clip_len + 1), min(hi, frame)
            return video_index, int(rng.integers(lo, hi + 1)) if hi >= lo else min(frame, hi)
        position = int(rng.integers(int(self._cum_frames[-1])))
        video_index = int(np.searchsorted(self._cum_frames, position, side="right"))
        lo, hi = self.start_range(video_index)
        return video_index, int(rng.integers(lo, hi + 1))


class ClipDataset(Dataset):
    """Training / validation clips of a split: items are indexed by ``(epoch, index)`` (see ``EpochSampler``)
    and hold ``labels``, ``team``, ``team_mask``, ``video_index``, ``start``, with ``displacement`` > 0 also
    ``displacement`` and ``displacement_mask`` (:func:`clip_displacement`), plus what ``read_clip`` reads."""

    def __init__(
        self,
        videos: Sequence[dict],
        classes: Sequence[str],
        clip_len: int,
        num_clips: int,
        dilate_len: int = 0,
        fg_upsample: float = 0.0,
        pad_len: int = DEFAULT_PAD_LEN,
        seed: int = 0,
        stream: int = TRAIN_STREAM,
        source: str = "labels",
        fg_balance: bool = False,
        displacement: int = 0,
    ):
        self.videos = list(videos)
        self.displacement = int(displacement)
        self.video_ids = [v["video"] for v in self.videos]
        self.events = [video_events(v, classes, source) for v in self.videos]
        self.clip_len = clip_len
        self.num_clips = num_clips
        self.dilate_len = dilate_len
        self.sampler = ClipSampler(self.events, clip_len, pad_len, fg_upsample, seed, stream, fg_balance)

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, key: tuple[int, int] | int) -> dict:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        video_index, start = self.sampler.sample(epoch, index)
        labels, team, team_mask = clip_targets(
            self.events[video_index], start, self.clip_len, self.dilate_len
        )
        item = {
            "labels": torch.from_numpy(labels),
            "team": torch.from_numpy(team),
            "team_mask": torch.from_numpy(team_mask),
            "video_index": video_index,
            "start": start,
        }
        if self.displacement > 0:
            offset, mask = clip_displacement(
                self.events[video_index], start, self.clip_len, self.displacement
            )
            item["displacement"] = torch.from_numpy(offset)
            item["displacement_mask"] = torch.from_numpy(mask)
        item.update(self.read_clip(video_index, start))
        return item

    def read_clip(self, video_index: int, start: int) -> dict:
        raise NotImplementedError


class FrameClipDataset(ClipDataset):
    """Clips of frames: ``frames`` is a (clip_len, H, W, 3) uint8 tensor, black where the clip reaches past the
    video. Workers only decode; augmentation runs batched afterwards (``dataset.transform``). Frames whose size
    differs from the first video's are resized to it.

    FRAME_DIR holds step 1's JPEG folders, or is the video library itself (``util.frame_dir``): a video without a
    frame folder is decoded on the fly at its labels' frame rate, by seeking to the keyframe before the clip
    (``util.video_index``), giving the frames step 1 would have written. Every video file is indexed here, before
    the DataLoader workers fork (they share the indices), and its frame count checked against the labels'.
    """

    def __init__(
        self, frame_dir: str | Path | FrameDir, videos: Sequence[dict], classes: Sequence[str], **kwargs
    ):
        super().__init__(videos, classes, **kwargs)
        frames = FrameDir.of(frame_dir)  # a run passes its one FrameDir: the library is listed once
        self.frame_dir = frames.root
        self.paths: list[Path] = []
        missing = []
        for video in self.videos:
            try:
                self.paths.append(frames.locate(video["video"], video.get(VIDEO_FILE)))
            except DataError:
                missing.append(video["video"])
        if missing:
            raise DataError(
                f"{self.frame_dir}: no frame folder for {len(missing)} video(s), e.g. {missing[0]}, and no such "
                f"video in a library there; extract the frames with frames_as_jpg_soccernet_ball.py, or point "
                f"FRAME_DIR at the video library"
            )
        self.is_video = [p.is_file() for p in self.paths]
        # A video file is decoded at its labels' frame rate.
        self.fps = [float(v.get("fps") or 0) for v in self.videos]
        for video, fps, path in zip(self.videos, self.fps, self.paths, strict=True):
            if path.is_file() and fps <= 0:
                raise DataError(
                    f"{path}: the parsed labels of {video['video']} hold no frame rate to decode it at; parse them "
                    "again (parse_soccernet_ball.py) with FRAME_DIR = the video library"
                )
        self.frame_size = self._first_size()
        self.video_frames = VideoFramesCache()
        files = [i for i, is_video in enumerate(self.is_video) if is_video]
        for i in tqdm(
            files, desc="indexing videos", unit="video", leave=False, disable=len(files) < 8 or None
        ):
            self._check_count(i)

    def _first_size(self) -> tuple[int, int]:
        """(width, height) of the first video's frames: its first JPEG, or for a video file the labels' size."""
        first = self.videos[0]
        if not self.is_video[0]:
            image = read_jpeg(self.paths[0] / FRAME_NAME.format(0))
            return image.shape[1], image.shape[0]
        if first.get("width") and first.get("height"):
            return int(first["width"]), int(first["height"])
        raise DataError(
            f"{self.paths[0]}: the parsed labels of {first['video']} hold no frame size; parse them again "
            "(parse_soccernet_ball.py) with FRAME_DIR = the video library"
        )

    def _check_count(self, video_index: int) -> None:
        path, fps = self.paths[video_index], self.fps[video_index]
        found = len(self.video_frames.sample(path, fps))
        expected = self.events[video_index].num_frames
        if found != expected:
            raise DataError(
                f"{path}: {found} frames at {fps:g} fps, but the parsed labels of {self.video_ids[video_index]} say "
                f"{expected}; parse the labels again against this library (step 2), or extract its frames"
            )
        source_height = self.video_frames.index(path).height
        if self.frame_size[1] > source_height:
            log.warning(
                "%s: %d px high, decoded and upscaled to the labels' %d px; train from the resolution the labels "
                "were made at (parse them against that library, e.g. --resolution 720p)",
                path, source_height, self.frame_size[1],
            )  # fmt: skip

    def read_clip(self, video_index: int, start: int) -> dict:
        num_frames = self.events[video_index].num_frames
        width, height = self.frame_size
        frames = np.zeros((self.clip_len, height, width, 3), np.uint8)
        lo, hi = max(0, -start), min(self.clip_len, num_frames - start)
        if hi <= lo:
            return {"frames": torch.from_numpy(frames)}
        if self.is_video[video_index]:
            video = self.video_frames.get(self.paths[video_index], self.fps[video_index], self.frame_size)
            frames[lo:hi] = video.read(start + lo, start + hi)
        else:
            folder = self.paths[video_index]
            for i in range(lo, hi):
                image = read_jpeg(folder / FRAME_NAME.format(start + i))
                frames[i] = fit_frame(image, self.frame_size)
        return {"frames": torch.from_numpy(frames)}


class EpochSampler(Sampler):
    """Yields ``(epoch, index)`` keys of this rank's share of an epoch's clips (every ``world_size``-th clip).

    Every rank gets the same number of clips (the remainder is dropped) so distributed ranks stay in step.
    """

    def __init__(self, num_clips: int, rank: int = 0, world_size: int = 1, epoch: int = 0):
        self.per_rank = num_clips // world_size
        self.rank = rank
        self.world_size = world_size
        self.epoch = epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for i in range(self.per_rank):
            yield self.epoch, self.rank + i * self.world_size
