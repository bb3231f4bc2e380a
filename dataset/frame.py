"""Frames in, clips out: JPEG reading, frame sources, training clips and sliding inference windows.

- ``read_jpeg`` decodes one frame (libjpeg-turbo through OpenCV); a missing or unreadable file raises
  ``DataError`` naming it, never a silent black frame.
- ``FrameSource`` is what the one predict path reads: ``JpegDirSource`` (a frame folder of step 1) or
  ``VideoFileSource`` (a video decoded on the fly by ``util.video.read_frames`` at the model's fps and size).
- ``ClipSampler`` + ``clip_targets`` are the pure parts of training-clip construction (random windows with padding
  at the video ends, foreground up-sampling, per-frame targets with dilation); ``FrameClipDataset`` reads the frames
  of those clips. A clip is a pure function of ``(seed, stream, epoch, index)``, so the data of an epoch does not
  depend on the number of workers or processes, or on whether the run was resumed.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from util.io import DataError
from util.video import FRAME_NAME, count_frames, read_fps, read_frames

# Frames of black padding allowed before the first / after the last frame of a video in a training clip.
DEFAULT_PAD_LEN = 5
# Streams of clip randomness: training clips and the fixed validation-loss clips never share draws.
TRAIN_STREAM = 0
VAL_STREAM = 1


# ---------------------------------------------------------------------------------------------------------------
# Reading frames


def frame_path(frame_dir: str | Path, video: str, frame: int) -> Path:
    return Path(frame_dir) / video / FRAME_NAME.format(frame)


def read_jpeg(path: str | Path) -> np.ndarray:
    """Decode one JPEG as an (H, W, 3) RGB uint8 array; a missing or unreadable file raises DataError."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError as e:
        raise DataError(
            f"{path}: frame missing; extract the frames again (frames_as_jpg_soccernet_ball.py)"
        ) from e
    except OSError as e:
        raise DataError(f"{path}: cannot read frame ({e})") from e
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DataError(f"{path}: not a readable JPEG (truncated or corrupt); extract the frames again")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def fit_frame(image: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Resize an (H, W, 3) frame to ``size`` = (width, height) when it differs."""
    if size is None or (image.shape[1], image.shape[0]) == tuple(size):
        return image
    return cv2.resize(image, tuple(size), interpolation=cv2.INTER_AREA)


# ---------------------------------------------------------------------------------------------------------------
# Frame sources for prediction


class FrameSource:
    """Frames of one video, in order, as (n, H, W, 3) RGB uint8 chunks.

    ``fps`` is the frame rate of the frames yielded; ``num_frames`` is known up front for a frame folder and may
    be None for a video decoded on the fly (the stream's end tells). ``name`` is used in messages.
    """

    name: str
    fps: float
    num_frames: int | None

    def iter_chunks(self, chunk_len: int) -> Iterator[np.ndarray]:
        raise NotImplementedError


class JpegDirSource(FrameSource):
    """A frame folder of step 1 (``000000.jpg`` ... plus ``fps.txt``), decoded by a small thread pool."""

    def __init__(
        self,
        video_dir: str | Path,
        num_frames: int | None = None,
        size: tuple[int, int] | None = None,
        fps: float | None = None,
        num_threads: int = 4,
    ):
        self.video_dir = Path(video_dir)
        if not self.video_dir.is_dir():
            raise DataError(f"{self.video_dir}: frame folder not found; extract the frames first")
        self.name = str(self.video_dir)
        self.fps = fps if fps is not None else read_fps(self.video_dir)
        self.num_frames = num_frames if num_frames is not None else count_frames(self.video_dir)
        self.size = size
        self.num_threads = max(1, num_threads)

    def _read(self, frame: int) -> np.ndarray:
        return fit_frame(read_jpeg(self.video_dir / FRAME_NAME.format(frame)), self.size)

    def iter_chunks(self, chunk_len: int) -> Iterator[np.ndarray]:
        with ThreadPoolExecutor(self.num_threads) as pool:
            # Decode one chunk ahead, frame by frame in parallel, so reading overlaps with the model's work.
            pending = None
            for start in range(0, self.num_frames, chunk_len):
                futures = [
                    pool.submit(self._read, i) for i in range(start, min(start + chunk_len, self.num_frames))
                ]
                if pending is not None:
                    yield np.stack([f.result() for f in pending])
                pending = futures
            if pending is not None:
                yield np.stack([f.result() for f in pending])


class VideoFileSource(FrameSource):
    """A video file decoded on the fly by ``util.video`` at ``fps`` and ``size`` (no JPEGs written)."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int] | None):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: video file not found")
        self.name = str(self.path)
        self.fps = float(fps)
        self.size = size
        self.num_frames = None

    def iter_chunks(self, chunk_len: int) -> Iterator[np.ndarray]:
        width, height = self.size if self.size is not None else (None, None)
        buffer: list[np.ndarray] = []
        for _, image in read_frames(self.path, sample_fps=self.fps, height=height, width=width):
            buffer.append(image)
            if len(buffer) == chunk_len:
                yield np.stack(buffer)
                buffer = []
        if buffer:
            yield np.stack(buffer)


def open_frame_source(
    path: str | Path,
    fps: float | None = None,
    size: tuple[int, int] | None = None,
    num_frames: int | None = None,
) -> FrameSource:
    """A frame folder or a video file. ``size`` = (width, height) the frames are resized to (None: as stored);
    ``fps`` is required for a video file (its frames are resampled to it) and checked against a folder's fps.txt."""
    path = Path(path)
    if path.is_dir():
        source = JpegDirSource(path, num_frames=num_frames, size=size)
        if fps is not None and abs(source.fps - fps) > 1e-3 * fps:
            raise DataError(
                f"{path}: frames are at {source.fps:g} fps but the model expects {fps:g} fps; "
                f"extract them with --sample_fps {fps:g}, or pass the video file itself"
            )
        return source
    if fps is None:
        raise DataError(f"{path}: a video file needs the frame rate to decode at")
    return VideoFileSource(path, fps=fps, size=size)


# ---------------------------------------------------------------------------------------------------------------
# Sliding inference windows


def iter_windows(
    chunks: Iterator[np.ndarray], clip_len: int, stride: int
) -> Iterator[tuple[int, np.ndarray, int]]:
    """Stream ``(start, frames (clip_len, H, W, 3), num_valid)`` windows from frame chunks of unknown total length.

    Windows start every ``stride`` frames; once the stream ends, one last window aligned to the end covers the
    tail. Frames past the end of a short video are zeros and ``num_valid`` counts the real ones.
    """
    buffer: np.ndarray | None = None  # frames [buffer_start, buffer_start + len(buffer))
    buffer_start = 0
    next_start = 0
    last_end = 0
    total = 0
    for chunk in chunks:
        total += len(chunk)
        buffer = chunk if buffer is None else np.concatenate([buffer, chunk])
        while next_start + clip_len <= buffer_start + len(buffer):
            offset = next_start - buffer_start
            yield next_start, buffer[offset : offset + clip_len], clip_len
            last_end = next_start + clip_len
            next_start += stride
        # Keep what the next window needs, and the last clip_len frames for a final end-aligned window.
        keep_from = max(buffer_start, min(next_start, total - clip_len))
        buffer, buffer_start = buffer[keep_from - buffer_start :], keep_from
    if buffer is None or total == 0:
        return
    if last_end < total:
        start = max(total - clip_len, 0)
        tail = buffer[start - buffer_start :]
        num_valid = len(tail)
        if num_valid < clip_len:
            pad = np.zeros((clip_len - num_valid, *tail.shape[1:]), tail.dtype)
            tail = np.concatenate([tail, pad])
        yield start, tail, num_valid


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
    and hold ``labels``, ``team``, ``team_mask``, ``video_index``, ``start`` plus what ``read_clip`` reads."""

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
    ):
        self.videos = list(videos)
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
        item.update(self.read_clip(video_index, start))
        return item

    def read_clip(self, video_index: int, start: int) -> dict:
        raise NotImplementedError


class FrameClipDataset(ClipDataset):
    """Clips of JPEG frames: ``frames`` is a (clip_len, H, W, 3) uint8 tensor, black where the clip reaches
    past the video. Workers only decode; augmentation runs batched afterwards (``dataset.transform``).
    Frames whose size differs from the first video's are resized to it."""

    def __init__(self, frame_dir: str | Path, videos: Sequence[dict], classes: Sequence[str], **kwargs):
        super().__init__(videos, classes, **kwargs)
        self.frame_dir = Path(frame_dir)
        missing = [v for v in self.video_ids if not (self.frame_dir / v).is_dir()]
        if missing:
            raise DataError(
                f"{self.frame_dir}: no frame folder for {len(missing)} video(s), e.g. {missing[0]}; "
                f"extract the frames with frames_as_jpg_soccernet_ball.py"
            )
        first = read_jpeg(frame_path(self.frame_dir, self.video_ids[0], 0))
        self.frame_size = (first.shape[1], first.shape[0])  # (width, height)

    def read_clip(self, video_index: int, start: int) -> dict:
        video = self.video_ids[video_index]
        num_frames = self.events[video_index].num_frames
        width, height = self.frame_size
        frames = np.zeros((self.clip_len, height, width, 3), np.uint8)
        for i in range(max(0, -start), min(self.clip_len, num_frames - start)):
            image = read_jpeg(frame_path(self.frame_dir, video, start + i))
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
