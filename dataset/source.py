"""Frame sources: what the one predict path, inference and rendering read, frame k at time k / fps.

- ``read_jpeg`` decodes one frame (libjpeg-turbo through OpenCV); a missing or unreadable file raises
  ``DataError`` naming it, never a silent black frame.
- ``FrameSource``: ``JpegDirSource`` (a frame folder of step 1) or ``VideoFileSource`` (a video decoded on the fly
  by ``util.video.read_frames`` at the model's fps and size), opened by ``open_frame_source``; the wrappers
  ``ResampledSource`` (a folder at another frame rate), ``LimitedSource`` (the first N frames) and
  ``PrefetchSource`` (decoding in a thread ahead of the model).
- ``iter_windows``: the sliding inference windows over a source.
- ``VideoInput`` / ``resolve_input``: one input of step 5 (a frame folder or a video file) checked and described
  before anything is decoded.
- ``FrameFit`` / ``aspect_fit``: a frame of another display aspect ratio than the model's, letterboxed (black
  bars, step 5's default) or cropped about the centre into the model's frame size, never stretched silently.
"""

from __future__ import annotations

import contextlib
import math
import queue
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from util.cli import ASPECT_MODES
from util.frame_folder import FPS_FILE, FRAME_NAME, count_frames, read_fps
from util.io import DataError
from util.soccernet import video_id_of_file
from util.video import read_frames

# ---------------------------------------------------------------------------------------------------------------
# Reading frames


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


def fit_frame(image: np.ndarray, size: tuple[int, int] | None, fit: FrameFit | None = None) -> np.ndarray:
    """Resize an (H, W, 3) frame to ``size`` = (width, height) when it differs; with ``fit``, keeping its
    aspect: resized to ``fit.inner``, then padded or cut about the centre to ``fit.size``."""
    if fit is not None:
        return fit.apply(fit_frame(image, fit.inner))
    if size is None or (image.shape[1], image.shape[0]) == tuple(size):
        return image
    return cv2.resize(image, tuple(size), interpolation=cv2.INTER_AREA)


# ---------------------------------------------------------------------------------------------------------------
# Another aspect ratio than the model's

# Display aspects closer than this share are the same: SoccerNet's 1280x720 and 398x224 (0.06 % apart) are.
ASPECT_TOLERANCE = 0.01


@dataclass(frozen=True)
class FrameFit:
    """How a frame of another aspect ratio goes into the frame size ``size`` = (width, height), keeping its
    aspect: resized to ``inner`` (width, height), then cut about the centre where ``inner`` is larger (crop)
    and padded with black about the centre where it is smaller (letterbox: bars above and below, or left and
    right)."""

    size: tuple[int, int]
    inner: tuple[int, int]

    def apply(self, frames: np.ndarray) -> np.ndarray:
        """(..., inner height, inner width, 3) frames -> (..., height, width, 3); an odd row or column of bar or
        of cut goes to the bottom or the right."""
        (width, height), (inner_w, inner_h) = self.size, self.inner
        if frames.shape[-3:-1] != (inner_h, inner_w):
            raise ValueError(f"frames of {frames.shape[-2]}x{frames.shape[-3]}, not {inner_w}x{inner_h}")
        top, left = max(inner_h - height, 0) // 2, max(inner_w - width, 0) // 2  # cut
        cut = frames[..., top : top + min(inner_h, height), left : left + min(inner_w, width), :]
        if cut.shape[-3:-1] == (height, width):
            return np.ascontiguousarray(cut)
        top, left = max(height - inner_h, 0) // 2, max(width - inner_w, 0) // 2  # bars
        out = np.zeros((*frames.shape[:-3], height, width, frames.shape[-1]), frames.dtype)
        out[..., top : top + cut.shape[-3], left : left + cut.shape[-2], :] = cut
        return out

    @property
    def mode(self) -> str:
        """ "letterbox" (the image inside the frame) or "crop" (the frame inside the image)."""
        return "crop" if self.inner[0] > self.size[0] or self.inner[1] > self.size[1] else "letterbox"


def aspect_change(display: tuple[float, float], size: tuple[int, int]) -> float:
    """How much wider (> 1) or narrower (< 1) a frame of ``display`` = (width, height) is than ``size``."""
    return (display[0] / display[1]) / (size[0] / size[1])


def aspects_differ(display: tuple[float, float], size: tuple[int, int]) -> bool:
    """Whether the aspect ratios differ by more than ``ASPECT_TOLERANCE``."""
    return abs(aspect_change(display, size) - 1.0) > ASPECT_TOLERANCE


def aspect_fit(display: tuple[float, float], size: tuple[int, int], mode: str) -> FrameFit | None:
    """How a frame of display size ``display`` = (width, height) goes into ``size`` by ``mode``
    (``ASPECT_MODES``): "letterbox" fits it inside, "crop" covers the frame with it, "stretch" (None)
    resizes it to ``size``."""
    if mode not in ASPECT_MODES:
        raise DataError(f"aspect must be one of {', '.join(ASPECT_MODES)}, not {mode!r}")
    if mode == "stretch":
        return None
    (width, height), (out_w, out_h) = display, size
    scale = (min if mode == "letterbox" else max)(out_w / width, out_h / height)
    inner_w, inner_h = max(1, round(width * scale)), max(1, round(height * scale))
    if mode == "letterbox":  # the side that fits is the frame's, exactly
        inner = (min(inner_w, out_w), min(inner_h, out_h))
    else:
        inner = (max(inner_w, out_w), max(inner_h, out_h))
    return FrameFit((int(out_w), int(out_h)), inner)


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

    @property
    def holds_features(self) -> bool:
        """Whether the chunks are (n, dim) features rather than images (``dataset.feature.FeatureSource``): the
        model then runs ``forward_features`` on them. A wrapper holds what its ``inner`` source holds."""
        inner = getattr(self, "inner", None)
        return inner is not None and inner.holds_features

    def iter_chunks(self, chunk_len: int) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def iter_range(self, start: int, stop: int, chunk_len: int) -> Iterator[np.ndarray]:
        """Frames ``[start, stop)`` in chunks of at most ``chunk_len`` (one rank's share of a video). This default
        reads from the first frame and drops those before ``start``; sources with random access override it. A
        source that ends before ``stop`` is a DataError naming it."""
        if start >= stop:
            return
        seen = 0
        for chunk in self.iter_chunks(chunk_len):
            lo, hi = max(start - seen, 0), min(stop - seen, len(chunk))
            if lo < hi:
                yield chunk[lo:hi]
            seen += len(chunk)
            if seen >= stop:
                return
        if seen < stop:
            raise DataError(f"{self.name}: {seen} frames, fewer than the {stop} expected")


class JpegDirSource(FrameSource):
    """A frame folder of step 1 (``000000.jpg`` ... plus ``fps.txt``), decoded by a small thread pool; frames
    resized to ``size`` (None: as stored), or with ``fit`` letterboxed or cropped into its size."""

    def __init__(
        self,
        video_dir: str | Path,
        num_frames: int | None = None,
        size: tuple[int, int] | None = None,
        fps: float | None = None,
        num_threads: int = 4,
        fit: FrameFit | None = None,
    ):
        self.video_dir = Path(video_dir)
        if not self.video_dir.is_dir():
            raise DataError(f"{self.video_dir}: frame folder not found; extract the frames first")
        self.name = str(self.video_dir)
        self.fps = fps if fps is not None else read_fps(self.video_dir)
        self.num_frames = num_frames if num_frames is not None else count_frames(self.video_dir)
        self.size = fit.size if fit is not None else size
        self.fit = fit
        self.num_threads = max(1, num_threads)

    def _read(self, frame: int) -> np.ndarray:
        return fit_frame(read_jpeg(self.video_dir / FRAME_NAME.format(frame)), self.size, self.fit)

    def iter_chunks(self, chunk_len: int) -> Iterator[np.ndarray]:
        return self.iter_range(0, self.num_frames, chunk_len)

    def iter_range(self, start: int, stop: int, chunk_len: int) -> Iterator[np.ndarray]:
        with ThreadPoolExecutor(self.num_threads) as pool:
            # Decode one chunk ahead, frame by frame in parallel, so reading overlaps with the model's work.
            pending = None
            for first in range(start, stop, chunk_len):
                futures = [pool.submit(self._read, i) for i in range(first, min(first + chunk_len, stop))]
                if pending is not None:
                    yield np.stack([f.result() for f in pending])
                pending = futures
            if pending is not None:
                yield np.stack([f.result() for f in pending])


class VideoFileSource(FrameSource):
    """A video file decoded on the fly by ``util.video`` at ``fps`` and ``size`` (no JPEGs written); with
    ``fit``, decoded at ``fit.inner`` (its aspect kept) and letterboxed or cropped into ``fit.size``."""

    def __init__(
        self, path: str | Path, fps: float, size: tuple[int, int] | None, fit: FrameFit | None = None
    ):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: video file not found")
        self.name = str(self.path)
        self.fps = float(fps)
        self.size = fit.size if fit is not None else size
        self.fit = fit
        self.num_frames = None

    def _decoded_size(self) -> tuple[int, int] | None:
        return self.fit.inner if self.fit is not None else self.size

    def _fitted(self, chunks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        if self.fit is None:
            yield from chunks
            return
        for chunk in chunks:
            yield self.fit.apply(chunk)

    def iter_chunks(self, chunk_len: int) -> Iterator[np.ndarray]:
        return self._fitted(self._decode_chunks(chunk_len))

    def _decode_chunks(self, chunk_len: int) -> Iterator[np.ndarray]:
        size = self._decoded_size()
        width, height = size if size is not None else (None, None)
        buffer: list[np.ndarray] = []
        for _, image in read_frames(self.path, sample_fps=self.fps, height=height, width=width):
            buffer.append(image)
            if len(buffer) == chunk_len:
                yield np.stack(buffer)
                buffer = []
        if buffer:
            yield np.stack(buffer)

    def iter_range(self, start: int, stop: int, chunk_len: int) -> Iterator[np.ndarray]:
        """Frames ``[start, stop)``: from the first frame, decoded as ``iter_chunks`` decodes them; from a later one,
        by one seek to the keyframe before it (``util.video_index``: the frames a decode from the start gives)."""
        if start == 0:
            yield from super().iter_range(start, stop, chunk_len)
            return
        from util.video_index import VideoFrames

        frames = VideoFrames(self.path, self.fps, size=self._decoded_size())
        try:
            if stop > frames.num_frames:
                raise DataError(
                    f"{self.path}: {frames.num_frames} frames at {self.fps:g} fps, fewer than the {stop} expected "
                    "(parse the labels again against this video)"
                )
            yield from self._fitted(frames.iter_range(start, stop, chunk_len))
        finally:
            frames.close()


def open_frame_source(
    path: str | Path,
    fps: float | None = None,
    size: tuple[int, int] | None = None,
    num_frames: int | None = None,
    fit: FrameFit | None = None,
) -> FrameSource:
    """A frame folder or a video file. ``size`` = (width, height) the frames are resized to (None: as stored),
    or ``fit``, how frames of another aspect go into its size (``aspect_fit``); ``fps`` is required for a
    video file (its frames are resampled to it) and checked against a folder's fps.txt."""
    path = Path(path)
    if path.is_dir():
        source = JpegDirSource(path, num_frames=num_frames, size=size, fit=fit)
        if fps is not None and abs(source.fps - fps) > 1e-3 * fps:
            raise DataError(
                f"{path}: frames are at {source.fps:g} fps but the model expects {fps:g} fps; "
                f"extract them with --sample_fps {fps:g}, or pass the video file itself"
            )
        return source
    if fps is None:
        raise DataError(f"{path}: a video file needs the frame rate to decode at")
    return VideoFileSource(path, fps=fps, size=size, fit=fit)


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


FPS_TOLERANCE = 1e-3


# ---------------------------------------------------------------------------------------------------------------
# Frame source wrappers: resampling a frame folder, a frame limit, reading ahead in a thread


class ResampledSource(FrameSource):
    """Frames of ``inner`` at another rate: output frame k is the source frame nearest to time k / fps."""

    def __init__(self, inner: FrameSource, fps: float):
        self.inner, self.fps, self.name = inner, float(fps), inner.name
        self.ratio = inner.fps / self.fps
        self.num_frames = None
        if inner.num_frames is not None:
            self.num_frames = self._count(inner.num_frames)

    def _index(self, k: int) -> int:
        return int(math.floor(k * self.ratio + 0.5 - 1e-9))

    def _count(self, num_source: int) -> int:
        k = max(0, int((num_source - 0.5) / self.ratio) - 2)
        while self._index(k) < num_source:
            k += 1
        return k

    def iter_chunks(self, chunk_len: int) -> Iterator[np.ndarray]:
        out: list[np.ndarray] = []
        k, seen = 0, 0
        for chunk in self.inner.iter_chunks(chunk_len):
            while self._index(k) < seen + len(chunk):
                out.append(chunk[self._index(k) - seen])
                k += 1
                if len(out) == chunk_len:
                    yield np.stack(out)
                    out = []
            seen += len(chunk)
        if out:
            yield np.stack(out)


class LimitedSource(FrameSource):
    """The first ``max_frames`` frames of ``inner`` (reading stops there)."""

    def __init__(self, inner: FrameSource, max_frames: int):
        self.inner, self.fps, self.name = inner, inner.fps, inner.name
        self.max_frames = int(max_frames)
        self.num_frames = None if inner.num_frames is None else min(inner.num_frames, self.max_frames)

    def iter_chunks(self, chunk_len: int) -> Iterator[np.ndarray]:
        left = self.max_frames
        chunks = self.inner.iter_chunks(chunk_len)
        try:
            for chunk in chunks:
                if left <= 0:
                    break
                yield chunk[:left]
                left -= len(chunk)
        finally:
            chunks.close()


_END = object()


class _Failed:
    def __init__(self, error: BaseException):
        self.error = error


def in_thread(items: Iterable[Any], depth: int, name: str) -> Iterator[Any]:
    """Iterate ``items`` in a background thread, ``depth`` items ahead; errors are raised in the caller."""
    slots: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        iterator = iter(items)
        try:
            for item in iterator:
                if not put(item):
                    break
            put(_END)
        except BaseException as e:  # noqa: BLE001 - handed to the consuming thread, which raises it
            put(_Failed(e))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = slots.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


class PrefetchSource(FrameSource):
    """Reads ``inner`` in a background thread a few chunks ahead, so decoding overlaps the model.
    ``frames_read`` counts the frames decoded so far (for progress)."""

    def __init__(self, inner: FrameSource, depth: int = 3):
        self.inner, self.fps, self.name, self.num_frames = inner, inner.fps, inner.name, inner.num_frames
        self.depth = depth
        self.frames_read = 0

    def iter_chunks(self, chunk_len: int) -> Iterator[np.ndarray]:
        def counted() -> Iterator[np.ndarray]:
            for chunk in self.inner.iter_chunks(chunk_len):
                self.frames_read += len(chunk)
                yield chunk

        yield from in_thread(counted(), self.depth, "frame-prefetch")


# ---------------------------------------------------------------------------------------------------------------
# Input: what to read and how


class VideoInput:
    """One resolved input: a frame folder or a video file, with its id, frame rate and expected length, and
    its frame size when known (``width`` x ``height`` stored, pixels ``sample_aspect_ratio`` wide: a folder's
    first frame, a video's header)."""

    def __init__(self, video_id: str, path: Path, is_file: bool, source_fps: float, expected_frames: int):
        self.video_id = video_id
        self.path = path
        self.is_file = is_file
        self.source_fps = source_fps
        self.expected_frames = expected_frames
        self.width = 0
        self.height = 0
        self.sample_aspect_ratio = 1.0

    @property
    def display_size(self) -> tuple[float, float] | None:
        """(width, height) as shown: the stored width times the sample aspect ratio (None: unknown)."""
        if not self.width or not self.height:
            return None
        return self.width * (self.sample_aspect_ratio or 1.0), float(self.height)


def resolve_input(
    video: str | Path | None, frame_dir: str | Path | None, video_name: str | None, max_frames: int | None
) -> VideoInput:
    """Check the input and read what is known before decoding; bad input raises DataError."""
    from util.video import probe_video

    if (video is None) == (frame_dir is None):
        raise DataError("give either a video file (--video) or a frame folder (--frame_dir [--video_name])")
    if video is not None:
        path = Path(video)
        info = probe_video(path)  # DataError for a missing, empty or unreadable file
        expected = round(info.duration_s * info.fps) if info.fps else info.num_frames
        video_id = video_name.strip("/") if video_name else video_id_of_file(path)
        result = VideoInput(video_id, path, True, info.fps, expected)
        result.width, result.height = info.width, info.height
        result.sample_aspect_ratio = info.sample_aspect_ratio
    else:
        path = Path(frame_dir) / video_name if video_name else Path(frame_dir)
        if video_name and not (path / FPS_FILE).is_file():
            from util.frame_dir import FrameDir

            library = FrameDir(frame_dir).library()
            if video_name.strip("/") in library:  # FRAME_DIR is the video library: decode that video's file
                return resolve_input(library[video_name.strip("/")], None, video_name, max_frames)
        if not path.is_dir():
            hint = f" (no folder {video_name!r} in {frame_dir})" if video_name else ""
            raise DataError(f"{path}: frame folder not found{hint}; extract the frames first")
        fps = read_fps(path)
        source = JpegDirSource(path, fps=fps)
        if not source.num_frames:
            raise DataError(f"{path}: no frames (000000.jpg ...); extract the frames first")
        video_id = video_name.strip("/") if video_name else path.name
        result = VideoInput(video_id, path, False, fps, source.num_frames)
        with contextlib.suppress(DataError):  # a missing first frame: reading says which
            # The size the frames are stored at (step 1 writes them at their display aspect).
            result.height, result.width = read_jpeg(path / FRAME_NAME.format(0)).shape[:2]
    if max_frames is not None:
        result.expected_frames = min(result.expected_frames, max_frames)
    return result
