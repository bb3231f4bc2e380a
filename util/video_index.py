"""Random access to a video's resampled frames, for training straight from the video library (no JPEG dump).

``VideoIndex.build`` reads a video's packets once without decoding them (their presentation times, durations and
keyframe flags) and maps every output frame ``k`` at ``sample_fps`` to its source frame by the same rule as step 1
(``util.video.NearestFrameSampler``, fed the same times), so ``num_frames`` is the number of JPEGs step 1 writes
and ``VideoFrames.read(start, stop)`` returns the frames step 1 would have written as ``start.jpg`` ... before
JPEG compression (the same decoder, the same swscale conversion).

Indices are kept on disk between runs (``VideoIndex.load``: ``$SPOT_INDEX_CACHE``, keyed by the file's path, size,
modification time and inode, and by the PyAV and FFmpeg library versions that demuxed it). A read seeks to the last
keyframe at or before the first source frame it needs and decodes forward. For H.264, MPEG-2 and MPEG-4
(``SKIPPABLE_CODECS``), frames that no other frame references and that the clip does not use are skipped by the
decoder (``skip_frame=NONREF``): the frames it returns are bit for bit those of a decode from the start.
``decoded`` / ``used`` count the work. A damaged or truncated file is a DataError naming it; a frame is never padded
or repeated to hide one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from util.io import DataError, atomic_open
from util.video import NearestFrameSampler, _convert, _open, error_reason, output_size, probe_video

log = logging.getLogger(__name__)

# Where indices are kept between runs: $SPOT_INDEX_CACHE, else ~/.cache/spot-soccernet-ball/video-index ("off": none).
# An index is reused only for the same file (absolute path, size, modification time, inode) under the same PyAV and
# FFmpeg libraries (decoder_versions); demuxing reads the whole file, so on a large library (SoccerNet-v2's 1,000
# halves, ~150 GB at 224p) the cache saves minutes per run.
INDEX_CACHE_ENV = "SPOT_INDEX_CACHE"
INDEX_FORMAT = 1
# Codecs whose non-reference frames (skip_frame=NONREF) no other frame references: skipping them is exact.
SKIPPABLE_CODECS = ("h264", "mpeg2video", "mpeg4")


@dataclass
class VideoIndex:
    """A video's source frames in presentation order: ``pts`` (stream time base units), ``keyframe`` flags."""

    path: Path
    time_base: float  # seconds per pts unit
    pts: np.ndarray  # (N,) int64, sorted
    keyframe: np.ndarray  # (N,) bool
    end_s: float  # end of the last frame, as step 1's reader computes it
    width: int
    height: int
    sample_aspect_ratio: float

    @classmethod
    def build(cls, path: str | os.PathLike) -> VideoIndex:
        """Demux (no decoding) ``path``; a file with no video packets, or one whose packets have no timestamps, is
        a DataError naming it."""
        path = Path(path)
        info = probe_video(path)  # DataError for a missing, empty or non-video file
        container = _open(path)
        try:
            stream = container.streams.video[0]
            if stream.time_base is None:
                raise DataError(f"{path}: the video stream has no time base; cannot seek in it")
            time_base = float(stream.time_base)
            pts, keys, durations = [], [], []
            try:
                for packet in container.demux(stream):
                    if packet.size == 0 or packet.is_discard:
                        continue
                    if packet.pts is None:
                        raise DataError(
                            f"{path}: packets without timestamps; extract its frames with step 1 "
                            "(frames_as_jpg_soccernet_ball.py) instead of reading the video directly"
                        )
                    pts.append(packet.pts)
                    keys.append(packet.is_keyframe)
                    durations.append(packet.duration or 0)
            except av.error.FFmpegError as e:
                raise DataError(f"{path}: damaged video, cannot read its packets ({error_reason(e)})") from e
        finally:
            container.close()
        if not pts:
            raise DataError(f"{path}: no video frames")
        order = np.argsort(np.asarray(pts, np.int64), kind="stable")
        pts_sorted = np.asarray(pts, np.int64)[order]
        keyframe = np.asarray(keys, bool)[order]
        last = int(order[-1])
        # step 1's reader: the last frame lasts its own duration, else the spacing of the two frames before it.
        if durations[last]:
            last_s = durations[last] * time_base
        elif len(pts_sorted) > 1 and pts_sorted[-1] > pts_sorted[-2]:
            last_s = (pts_sorted[-1] - pts_sorted[-2]) * time_base
        else:
            last_s = 1.0 / info.fps if info.fps else 0.0
        index = cls(
            path=path,
            time_base=time_base,
            pts=pts_sorted,
            keyframe=keyframe,
            end_s=float(pts_sorted[-1] * time_base + last_s),
            width=info.width,
            height=info.height,
            sample_aspect_ratio=info.sample_aspect_ratio,
        )
        index._check_complete(info.duration_s)
        return index

    @classmethod
    def load(cls, path: str | os.PathLike) -> VideoIndex:
        """``build``'s index of ``path``, from the index cache when it holds one of this very file (else built and
        stored there; a cache that cannot be written is skipped)."""
        path = Path(path)
        cache = index_cache_dir()
        if cache is None:
            return cls.build(path)
        try:
            stat = path.stat()
        except OSError:
            return cls.build(path)  # raises the DataError naming the file
        stamp = np.array([INDEX_FORMAT, stat.st_size, stat.st_mtime_ns, stat.st_ino], np.int64)
        decoder = decoder_versions()
        file = cache / f"{hashlib.sha1(str(path.resolve()).encode()).hexdigest()}.npz"
        try:
            with np.load(file) as data:
                if np.array_equal(data["stamp"], stamp) and str(data["decoder"]) == decoder:
                    return cls(
                        path=path,
                        time_base=float(data["time_base"]),
                        pts=data["pts"],
                        keyframe=data["keyframe"],
                        end_s=float(data["end_s"]),
                        width=int(data["size"][0]),
                        height=int(data["size"][1]),
                        sample_aspect_ratio=float(data["sample_aspect_ratio"]),
                    )
        except (OSError, KeyError, ValueError, zipfile.BadZipFile):
            pass  # none yet, another file's, or damaged: build it again
        index = cls.build(path)
        try:
            with atomic_open(file, "wb") as f:
                np.savez(
                    f,
                    stamp=stamp,
                    decoder=np.array(decoder),
                    time_base=index.time_base,
                    pts=index.pts,
                    keyframe=index.keyframe,
                    end_s=index.end_s,
                    size=np.array([index.width, index.height]),
                    sample_aspect_ratio=index.sample_aspect_ratio,
                )
        except OSError as e:
            log.debug("%s: index cache not written (%s)", file, e)
        return index

    def _check_complete(self, declared_s: float) -> None:
        from util.video import TRUNCATION_TOLERANCE_S, TRUNCATION_TOLERANCE_SHARE

        found_s = self.end_s - float(self.pts[0]) * self.time_base
        if declared_s - found_s > max(TRUNCATION_TOLERANCE_S, TRUNCATION_TOLERANCE_SHARE * declared_s):
            raise DataError(
                f"{self.path}: truncated or damaged video: {found_s:.1f} s of frames of the {declared_s:.1f} s its "
                f"header declares; download it again"
            )

    @property
    def num_source_frames(self) -> int:
        return len(self.pts)

    def sample(self, sample_fps: float) -> np.ndarray:
        """Source frame of each output frame at ``sample_fps`` (step 1's nearest-in-time rule); its length is the
        number of frames step 1 writes."""
        sampler = NearestFrameSampler(sample_fps)
        out: list[int] = []
        times = self.pts.astype(np.float64) * self.time_base
        for i, time_s in enumerate(times.tolist()):
            out.extend(item for _, item in sampler.push(time_s, i))
        out.extend(item for _, item in sampler.finish(self.end_s))
        return np.asarray(out, np.int32)  # 4 bytes a frame: a 45-min half at 25 fps is 270 KB

    def keyframe_before(self, source_frame: int) -> int:
        """The last keyframe at or before ``source_frame`` (0 when none is flagged)."""
        keys = np.flatnonzero(self.keyframe[: source_frame + 1])
        return int(keys[-1]) if len(keys) else 0


def decoder_versions() -> str:
    """PyAV's and its FFmpeg libraries' versions: another FFmpeg may demux a file into other packets or timestamps,
    so a cached index is reused only under the same ones."""
    libraries = ", ".join(
        f"{name} {'.'.join(map(str, v))}" for name, v in sorted(av.library_versions.items())
    )
    return f"PyAV {av.__version__}; {libraries}"


def index_cache_dir() -> Path | None:
    """The index cache folder (``$SPOT_INDEX_CACHE``; "off" disables it)."""
    value = os.environ.get(INDEX_CACHE_ENV, "").strip()
    if value.lower() in ("off", "0", "none", "no"):
        return None
    if value:
        return Path(value)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "spot-soccernet-ball" / "video-index"


class VideoFrames:
    """Output frames of one video at ``sample_fps`` and ``size`` = (width, height), read by range.

    ``read(start, stop)`` returns ``(stop - start, H, W, 3)`` RGB uint8 frames; ``start`` and ``stop`` must lie in
    ``[0, num_frames]``. The container stays open between reads (close it with ``close()``). Decoding runs on the
    CPU (``decode_threads`` FFmpeg threads).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        sample_fps: float,
        size: tuple[int, int] | None = None,
        height: int | None = None,
        decode_threads: int = 1,
        skip_unused: bool = True,
        index: VideoIndex | None = None,
        source: np.ndarray | None = None,
    ):
        self.path = Path(path)
        self.index = index if index is not None else VideoIndex.load(self.path)
        self.sample_fps = float(sample_fps)
        self.source = source if source is not None else self.index.sample(self.sample_fps)
        self.num_frames = len(self.source)
        if size is None:
            size = output_size(
                self.index.width, self.index.height, height, None, self.index.sample_aspect_ratio
            )
        self.size = (int(size[0]), int(size[1]))
        self.decode_threads = decode_threads
        self.skip_unused = skip_unused
        self.decoded = 0  # frames the decoder produced
        self.used = 0  # frames returned
        self._container = None

    def _stream(self):
        if self._container is None:
            self._container = _open(self.path)
            stream = self._container.streams.video[0]
            stream.thread_type = "SLICE" if self.decode_threads != 1 else "NONE"
            stream.codec_context.thread_count = self.decode_threads
        return self._container, self._container.streams.video[0]

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def read(self, start: int, stop: int) -> np.ndarray:
        if not 0 <= start <= stop <= self.num_frames:
            raise IndexError(f"{self.path}: frames [{start}, {stop}) outside [0, {self.num_frames})")
        width, height = self.size
        frames = np.empty((stop - start, height, width, 3), np.uint8)
        if stop == start:
            return frames
        wanted = self.source[start:stop]
        got = self._decode(int(wanted.min()), {int(self.index.pts[i]) for i in np.unique(wanted)})
        for i, source in enumerate(wanted.tolist()):
            frames[i] = got[int(self.index.pts[source])]
        self.used += stop - start
        return frames

    def iter_range(self, start: int, stop: int, chunk_len: int) -> Iterator[np.ndarray]:
        """Frames ``[start, stop)`` in order, in chunks of ``chunk_len``: one seek, then decoding forward, so a long
        range costs what decoding it costs (``read`` seeks at every call). Where the stream does not give the
        indexed frames in order (a seek that lands late, a damaged stretch), the rest is read as ``read`` reads it,
        with its errors."""
        if not 0 <= start <= stop <= self.num_frames:
            raise IndexError(f"{self.path}: frames [{start}, {stop}) outside [0, {self.num_frames})")
        wanted = self.index.pts[self.source[start:stop]].tolist()
        done, chunk = 0, []
        if wanted:
            width, height = self.size
            container, stream = self._stream()
            context = stream.codec_context
            skip = self.skip_unused and self._skippable()
            needed = set(wanted)
            key = self.index.keyframe_before(int(self.source[start]))
            try:
                container.seek(int(self.index.pts[key]), stream=stream, backward=True, any_frame=False)
                for packet in container.demux(stream):
                    if skip and packet.pts is not None:
                        context.skip_frame = "DEFAULT" if packet.pts in needed else "NONREF"
                    for frame in packet.decode():
                        self.decoded += 1
                        if frame.pts is None or frame.pts < wanted[done]:
                            continue
                        if frame.pts > wanted[done]:
                            raise _Leave
                        image = _convert(frame, width, height, "rgb24")
                        while done < len(wanted) and wanted[done] == frame.pts:
                            chunk.append(image)
                            done += 1
                            if len(chunk) == chunk_len:
                                yield np.stack(chunk)
                                chunk = []
                        if done == len(wanted):
                            raise _Leave  # all there: leave the demuxer
            except (_Leave, av.error.FFmpegError):
                pass
            context.skip_frame = "DEFAULT"
            if done < len(
                wanted
            ):  # the rest by read(), from a fresh decoder; else the next seek flushes this one
                self.close()
        self.used += done
        for first in range(start + done, stop, chunk_len):
            chunk.extend(self.read(first, min(first + chunk_len, stop)))
            if len(chunk) >= chunk_len:
                yield np.stack(chunk[:chunk_len])
                chunk = chunk[chunk_len:]
        if chunk:
            yield np.stack(chunk)

    def _decode(self, first: int, needed: set[int]) -> dict[int, np.ndarray]:
        """Decode from the keyframe before source frame ``first`` until every frame of ``needed`` (pts) is in.

        Frames come out in presentation order, so an attempt ends as soon as a frame past the last one needed comes
        out, or when the first frame out is already past the earliest needed (the seek landed late: containers
        that seek by decoding time, not keyframes). The second attempt then decodes from the first packet, no seek.
        """
        width, height = self.size
        earliest, latest = min(needed), max(needed)
        skip = self.skip_unused and self._skippable()
        got: dict[int, np.ndarray] = {}
        for attempt in range(2):
            container, stream = self._stream()
            context = stream.codec_context
            got, first_pts, done = {}, None, False
            try:
                if attempt == 0:
                    key = self.index.keyframe_before(first)
                    container.seek(int(self.index.pts[key]), stream=stream, backward=True, any_frame=False)
                for packet in container.demux(stream):
                    if skip and packet.pts is not None:
                        # Frames nothing references are not decoded unless the clip uses them (exact: no other
                        # frame depends on them).
                        context.skip_frame = "DEFAULT" if packet.pts in needed else "NONREF"
                    try:
                        decoded = packet.decode()
                    except av.error.InvalidDataError:
                        continue  # as step 1: an isolated bad packet; a frame it held is reported missing below
                    for frame in decoded:
                        self.decoded += 1
                        if frame.pts is None:
                            continue
                        first_pts = frame.pts if first_pts is None else first_pts
                        if frame.pts in needed and frame.pts not in got:
                            got[frame.pts] = _convert(frame, width, height, "rgb24")
                        done = done or frame.pts >= latest or first_pts > earliest
                    if done or len(got) == len(needed):
                        break
            except av.error.FFmpegError as e:
                self.close()
                raise DataError(f"{self.path}: damaged video, decoding failed ({error_reason(e)})") from e
            if len(got) == len(needed):
                context.skip_frame = "DEFAULT"
                return got
            self.close()  # the next attempt, or the next read, starts with a fresh decoder at the first packet
            if first_pts is not None and first_pts <= earliest:
                break  # decoded from before the frames needed, and still some are missing: the file is damaged
        missing = sorted(needed - set(got))
        raise DataError(
            f"{self.path}: damaged video: {len(missing)} frame(s) could not be decoded (the first at "
            f"{missing[0] * self.index.time_base:.2f} s); download it again, or extract its frames with step 1"
        )

    def _skippable(self) -> bool:
        """Whether skipping non-reference frames is exact for this codec: H.264's, MPEG-2's and MPEG-4 Part 2's
        non-reference pictures are referenced by nothing. HEVC's sub-layer non-reference pictures may be referenced
        by higher temporal layers, so other codecs decode every frame."""
        _, stream = self._stream()
        return stream.codec_context.name in SKIPPABLE_CODECS


class _Leave(Exception):
    """``VideoFrames.iter_range`` leaves the decoding loop (done, or a frame that is not the next one indexed)."""


class VideoFramesCache:
    """The ``VideoFrames`` of one process, least recently used out first (each holds an open file and a decoder).

    A video's index and its frame mapping are kept once built, so each video is demuxed once per process; built in
    the parent before DataLoader workers fork (``sample``), they are shared with every worker."""

    def __init__(self, max_open: int = 8, decode_threads: int = 1):
        self.max_open = max_open
        self.decode_threads = decode_threads
        self._open: OrderedDict[tuple, VideoFrames] = OrderedDict()
        self._indices: dict[str, VideoIndex] = {}
        self._sources: dict[tuple[str, float], np.ndarray] = {}
        self._pid = os.getpid()

    def index(self, path: str | os.PathLike) -> VideoIndex:
        """The index of ``path`` (loaded once per process)."""
        if str(path) not in self._indices:
            self._indices[str(path)] = VideoIndex.load(path)
        return self._indices[str(path)]

    def sample(self, path: str | os.PathLike, sample_fps: float) -> np.ndarray:
        """The source frame of each output frame of ``path`` at ``sample_fps`` (its length: the frame count)."""
        key = (str(path), float(sample_fps))
        if key not in self._sources:
            self._sources[key] = self.index(path).sample(sample_fps)
        return self._sources[key]

    def get(self, path: str | os.PathLike, sample_fps: float, size: tuple[int, int]) -> VideoFrames:
        if os.getpid() != self._pid:  # in a forked worker: never share the parent's open files
            self._open = OrderedDict()
            self._pid = os.getpid()
        key = (str(path), float(sample_fps), tuple(size))
        frames = self._open.get(key)
        if frames is not None:
            self._open.move_to_end(key)
            return frames
        source = self.sample(path, sample_fps)
        frames = VideoFrames(
            path,
            sample_fps,
            size=size,
            decode_threads=self.decode_threads,
            index=self.index(path),
            source=source,
        )
        self._open[key] = frames
        while len(self._open) > self.max_open:
            _, old = self._open.popitem(last=False)
            old.close()
        return frames

    def close(self) -> None:
        for frames in self._open.values():
            frames.close()
        self._open.clear()
