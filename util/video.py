"""Video reading: decode once, resample by timestamp, resize.

One reader serves every step: ``VideoReader`` / ``read_frames`` decode a video with PyAV (FFmpeg's decoders,
multi-threaded), pick for each output time ``k / sample_fps`` the source frame nearest in time (so 29.97, 50 and
variable-frame-rate sources give true 25 fps output), and convert/resize in a small thread pool. Frame
extraction (step 1, ``util.extract``) writes what it reads as JPEGs (at its default 4:2:0 colour, from the
resized YUV planes: ``yuvj420p``); inference (step 5) reads the same frames as arrays. Writing video is
``util.video_writer``.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from util.io import DataError

log = logging.getLogger(__name__)
DEFAULT_HEIGHT = 224
# swscale's bilinear filter widens with the scale factor, so downscaling 720p -> 224p is anti-aliased, and it
# costs about half of the bicubic default.
INTERPOLATION = "BILINEAR"
# swscale threads per conversion: one. Readers already convert frames in parallel (a pool, or DataLoader workers),
# and swscale's own thread pool hangs in a process forked after using it (a DataLoader worker).
SCALE_THREADS = 1
# Isolated undecodable packets are skipped (the sampler then takes the nearest good frame); more than this share
# of bad packets means the file is damaged.
MAX_BAD_PACKET_SHARE = 0.01
MIN_BAD_PACKETS = 10
# A decoded video shorter than its header's duration by more than this is reported as truncated.
TRUNCATION_TOLERANCE_S = 2.0
TRUNCATION_TOLERANCE_SHARE = 0.05
_EPS_S = 1e-6
# What VideoReader yields: HxWx3 arrays, or (yuvj420p) JPEG's Y, Cb, Cr planes for a JPEG encoder.
PIXEL_FORMATS = ("rgb24", "bgr24", "yuvj420p")


@dataclass(frozen=True)
class VideoInfo:
    """What a video's header says (``probe_video``); decoded timestamps may disagree, see ``VideoReader``."""

    path: str
    fps: float  # average frame rate (the header's; 0.0 when unknown)
    duration_s: float
    num_frames: int  # from the header, or duration x fps when the container does not store it
    width: int  # stored frame size in pixels
    height: int
    has_audio: bool
    codec: str
    sample_aspect_ratio: float = 1.0  # pixel width / height; display width = width x this


# ---- opening and probing


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes); download it again")


def _open(path: Path) -> Any:
    """Open a container that has a video stream, or raise DataError naming the file and the reason."""
    _check_file(path)
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as e:
        raise DataError(f"{path}: not a readable video file ({error_reason(e)})") from e
    if not container.streams.video:
        container.close()
        raise DataError(f"{path}: has no video stream")
    return container


def error_reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error)


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Read a video's header (no decoding). A missing, empty or non-video file raises DataError."""
    path = Path(path)
    with _open(path) as container:
        # Read everything while the container is open: PyAV crashes on stream attributes after close.
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else 0.0
        if stream.duration and stream.time_base:
            duration_s = float(stream.duration * stream.time_base)
        elif container.duration:
            duration_s = container.duration / av.time_base
        else:
            duration_s = 0.0
        num_frames = int(stream.frames) or round(duration_s * fps)
        ctx = stream.codec_context
        sar = stream.sample_aspect_ratio or ctx.sample_aspect_ratio
        return VideoInfo(
            path=str(path),
            fps=fps,
            duration_s=duration_s,
            num_frames=num_frames,
            width=ctx.width,
            height=ctx.height,
            has_audio=bool(container.streams.audio),
            codec=ctx.name,
            sample_aspect_ratio=float(sar) if sar else 1.0,
        )


def output_size(
    width: int, height: int, out_height: int | None = None, out_width: int | None = None, sar: float = 1.0
) -> tuple[int, int]:
    """(width, height) of resized frames: one side given keeps the display aspect ratio with an even other side.

    1280x720 at height 224 gives 398x224. Neither side given keeps the display size.
    """
    display_w = width * sar
    if out_height and out_width:
        return int(out_width), int(out_height)
    if out_height:
        return max(2, 2 * round(display_w * out_height / height / 2)), int(out_height)
    if out_width:
        return int(out_width), max(2, 2 * round(height * out_width / display_w / 2))
    return (width, height) if sar == 1.0 else (max(2, 2 * round(display_w / 2)), height)


# ---- resampling by timestamp (pure)


class NearestFrameSampler:
    """Pick, for each output time ``k / sample_fps``, the source frame nearest in time (ties: the earlier one).

    Feed source frames in presentation order with ``push(time_s, item)``; each call returns the ``(k, item)``
    pairs it settles. ``finish(end_s)`` settles the rest up to the end of the last frame. Times count from the
    first frame. A frame may be returned for several k (upsampling) or for none (downsampling).
    ``sample_fps <= 0`` keeps every frame.
    """

    def __init__(self, sample_fps: float, start_s: float | None = None, first_k: int = 0) -> None:
        """``start_s``: the time of output frame 0 (default: the first frame's); ``first_k``: the first output
        frame (a live feed going on after a gap: its frames keep the grid of the match's frame 0)."""
        self.sample_fps = float(sample_fps)
        self.next_k = first_k
        self.start_s: float | None = start_s
        self.prev: tuple[float, Any] | None = None

    def _target(self, k: int) -> float:
        return k / self.sample_fps

    def push(self, time_s: float, item: Any) -> list[tuple[int, Any]]:
        if self.start_s is None:
            self.start_s = time_s
        rel_s = time_s - self.start_s
        if self.prev is not None and rel_s < self.prev[0]:
            rel_s = self.prev[0]  # out-of-order timestamps: treat as simultaneous
        out: list[tuple[int, Any]] = []
        if self.sample_fps <= 0:
            out.append((self.next_k, item))
            self.next_k += 1
        else:
            while self._target(self.next_k) <= rel_s + _EPS_S:
                target = self._target(self.next_k)
                if self.prev is not None and target - self.prev[0] <= rel_s - target + _EPS_S:
                    out.append((self.next_k, self.prev[1]))
                else:
                    out.append((self.next_k, item))
                self.next_k += 1
        self.prev = (rel_s, item)
        return out

    def finish(self, end_s: float) -> list[tuple[int, Any]]:
        """Settle the output times before ``end_s`` (absolute, like push's times) with the last frame."""
        if self.prev is None or self.sample_fps <= 0 or self.start_s is None:
            return []
        out = []
        while self._target(self.next_k) < end_s - self.start_s - _EPS_S:
            out.append((self.next_k, self.prev[1]))
            self.next_k += 1
        return out


# ---- the reader


_thread_local = threading.local()


def _reformatter(kind: str) -> VideoReformatter:
    """This thread's swscale context for ``kind`` of output. One per thread, reused across frames (a fresh one per
    frame costs more than the scaling), and per process: a context made before a fork hangs in the child (its
    worker threads are not there)."""
    made = getattr(_thread_local, kind, None)
    if made is None or made[0] != os.getpid():
        made = (os.getpid(), VideoReformatter())
        setattr(_thread_local, kind, made)
    return made[1]


def _convert(frame: Any, width: int, height: int, pixel_format: str) -> np.ndarray:
    """One decoded frame as an (height, width, 3) array in ``pixel_format`` ("bgr24" or "rgb24").

    Both are swscale's bgr24 output (RGB is its channels reversed): swscale's yuv -> rgb24 path gives other
    pixels (up to 5 levels, 1.6 on average at 224p -> 112 px), and step 1 writes bgr24, so every reader of a
    video (training clips, inference) sees exactly the pixels step 1's JPEGs were compressed from.
    """
    out = _reformatter("bgr").reformat(
        frame, width=width, height=height, format="bgr24", interpolation=INTERPOLATION, threads=SCALE_THREADS
    )
    array = out.to_ndarray()
    if pixel_format == "rgb24":
        return np.ascontiguousarray(array[..., ::-1])
    if pixel_format != "bgr24":
        raise ValueError(f"pixel_format must be rgb24 or bgr24, not {pixel_format!r}")
    return array


def _jpeg_planes(frame: Any, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A decoded frame resized to ``width`` x ``height`` as JPEG's 4:2:0 planes (Y, Cb, Cr), uint8 views.

    swscale resizes the decoder's YUV with the same filter as ``_convert`` and converts it to what a JPEG
    holds (BT.601 matrix, full range), as the ffmpeg CLI feeds its JPEG encoder: no RGB on the way, which
    costs a third of the resize and, in the JPEG encoder, the conversion back. A BT.709 source is converted to
    BT.601, so its JPEGs' colours are right (the ffmpeg CLI leaves them BT.709). The planes keep swscale's row
    padding.
    """
    out = _reformatter("planes").reformat(
        frame,
        width=width,
        height=height,
        format="yuv420p",
        dst_colorspace="ITU601",
        dst_color_range="JPEG",
        interpolation=INTERPOLATION,
        threads=SCALE_THREADS,
    )
    planes = []
    for plane in out.planes:
        rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        planes.append(rows[:, : plane.width])
    return planes[0], planes[1], planes[2]


class VideoReader:
    """Decode ``path`` once: output frame k is the source frame nearest to time ``k / sample_fps``.

    Iterating yields ``(k, array)`` in order, arrays HxWx3 uint8 in ``pixel_format`` ("rgb24" or "bgr24"),
    resized to ``height`` / ``width`` (one side keeps the aspect ratio with an even other side; neither keeps the
    source size). ``pixel_format="yuvj420p"`` yields JPEG's (Y, Cb, Cr) planes instead (``_jpeg_planes``).
    ``sample_fps=0`` keeps every decoded frame. ``fn(k, array)``, when given, runs in the conversion threads
    and its result is yielded instead of the array (extraction encodes JPEGs there); ``threads`` of them, or
    0: in the decoding thread. ``info``: the file's ``probe_video``, when the caller has it (one opening
    less).

    After iteration: ``num_frames`` (output frames), ``fps`` (output rate), ``decoded_frames``, ``duration_s``
    (decoded). A damaged file raises DataError naming it.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        sample_fps: float = 0.0,
        height: int | None = None,
        width: int | None = None,
        pixel_format: str = "rgb24",
        max_frames: int | None = None,
        threads: int = 2,
        decode_threads: int = 0,
        info: VideoInfo | None = None,
    ) -> None:
        if sample_fps < 0:
            raise ValueError(f"sample_fps must be >= 0, got {sample_fps}")
        if pixel_format not in PIXEL_FORMATS:
            raise ValueError(f"pixel_format must be one of {', '.join(PIXEL_FORMATS)}, not {pixel_format!r}")
        self.path = Path(path)
        self.info = info if info is not None else probe_video(self.path)
        self.sample_fps = float(sample_fps)
        self.size = output_size(
            self.info.width, self.info.height, height, width, self.info.sample_aspect_ratio
        )
        self.pixel_format = pixel_format
        self.max_frames = max_frames
        self.threads = max(0, threads)
        self.decode_threads = decode_threads
        self.num_frames = 0
        self.decoded_frames = 0
        self.duration_s = 0.0
        self.bad_packets = 0

    @property
    def fps(self) -> float:
        """Output frame rate: sample_fps, or the source's when every frame is kept."""
        if self.sample_fps > 0:
            return self.sample_fps
        measured = self.decoded_frames / self.duration_s if self.duration_s > 0 else 0.0
        # The header's rate is exact (30000/1001); trust it unless the decoded frames disagree.
        if self.info.fps and (not measured or abs(measured - self.info.fps) <= 0.005 * self.info.fps):
            return self.info.fps
        return measured

    def expected_frames(self) -> int:
        """Output frames the header promises (for progress bars): round(duration x sample_fps)."""
        n = round(self.info.duration_s * self.sample_fps) if self.sample_fps > 0 else self.info.num_frames
        return min(n, self.max_frames) if self.max_frames is not None else n

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        return self.frames()

    def convert(self, frame: Any) -> Any:
        """A decoded frame as this reader yields it: resized, in ``pixel_format``."""
        width, height = self.size
        if self.pixel_format == "yuvj420p":
            return _jpeg_planes(frame, width, height)
        return _convert(frame, width, height, self.pixel_format)

    def frames(self, fn: Callable[[int, np.ndarray], Any] | None = None) -> Iterator[tuple[int, Any]]:
        def job(k: int, frame: Any) -> Any:
            array = self.convert(frame)
            return array if fn is None else fn(k, array)

        if self.threads == 0:  # in this thread, as frames come out of the decoder (its own threads decode)
            for k, frame in self._sampled_frames():
                if self.max_frames is not None and k >= self.max_frames:
                    self.num_frames = self.max_frames
                    break
                yield k, job(k, frame)
            return
        pending: collections.deque[tuple[int, Future]] = collections.deque()
        max_pending = 4 * self.threads
        pool = ThreadPoolExecutor(self.threads, thread_name_prefix="video-convert")
        try:
            for k, frame in self._sampled_frames():
                if self.max_frames is not None and k >= self.max_frames:
                    self.num_frames = self.max_frames
                    break
                pending.append((k, pool.submit(job, k, frame)))
                while len(pending) > max_pending:
                    k_done, future = pending.popleft()
                    yield k_done, future.result()
            while pending:
                k_done, future = pending.popleft()
                yield k_done, future.result()
        finally:
            for _, future in pending:
                future.cancel()
            pool.shutdown(wait=True)

    def _sampled_frames(self) -> Iterator[tuple[int, Any]]:
        sampler = NearestFrameSampler(self.sample_fps)
        container = _open(self.path)
        try:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = self.decode_threads
            last_s = start_s = None
            frame_s = 1.0 / self.info.fps if self.info.fps else 0.0
            for packets, packet in enumerate(container.demux(stream), 1):
                for frame in self._decode(packet, packets):
                    time_s = frame.time
                    if time_s is None:  # no timestamp: assume the nominal spacing
                        time_s = 0.0 if last_s is None else last_s + frame_s
                    if frame.duration and frame.time_base:
                        frame_s = float(frame.duration * frame.time_base)
                    elif last_s is not None and time_s > last_s:
                        frame_s = time_s - last_s
                    start_s = time_s if start_s is None else start_s
                    last_s = time_s
                    self.decoded_frames += 1
                    for k, picked in sampler.push(time_s, frame):
                        self.num_frames = k + 1
                        yield k, picked
            if last_s is None:
                raise DataError(f"{self.path}: no decodable video frames")
            end_s = last_s + (frame_s or (1.0 / self.sample_fps if self.sample_fps else 0.0))
            self.duration_s = end_s - start_s
            for k, picked in sampler.finish(end_s):
                self.num_frames = k + 1
                yield k, picked
        finally:
            container.close()
        self._check_complete()

    def _decode(self, packet: Any, packets: int) -> list:
        try:
            return packet.decode()
        except av.error.InvalidDataError as e:
            self.bad_packets += 1
            if self.bad_packets > max(MIN_BAD_PACKETS, MAX_BAD_PACKET_SHARE * packets):
                raise DataError(
                    f"{self.path}: damaged video, {self.bad_packets} undecodable packets "
                    f"among the first {packets} ({error_reason(e)})"
                ) from e
            return []

    def _check_complete(self) -> None:
        declared_s = self.info.duration_s
        missing_s = declared_s - self.duration_s
        if self.max_frames is None and missing_s > max(
            TRUNCATION_TOLERANCE_S, TRUNCATION_TOLERANCE_SHARE * declared_s
        ):
            raise DataError(
                f"{self.path}: truncated or damaged video: decoded {self.duration_s:.1f} s of the "
                f"{declared_s:.1f} s its header declares; download it again"
            )
        if self.bad_packets:
            log.warning("%s: skipped %d undecodable packets", self.path, self.bad_packets)


def read_frames(
    path: str | os.PathLike,
    sample_fps: float = 0.0,
    height: int | None = None,
    width: int | None = None,
    max_frames: int | None = None,
    pixel_format: str = "rgb24",
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(k, HxWx3 uint8 array)``: frame k is the source frame nearest to time k / sample_fps.

    ``sample_fps=0`` keeps every frame; ``height``/``width`` resize (one side keeps the aspect ratio).
    Use ``VideoReader`` directly to also get the output fps and frame count.
    """
    yield from VideoReader(path, sample_fps, height, width, pixel_format, max_frames)
