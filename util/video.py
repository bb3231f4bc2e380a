"""Video reading and frame extraction: decode once, resample by timestamp, resize, write JPEG frame folders.

One reader serves every step: ``VideoReader`` / ``read_frames`` decode a video with PyAV (FFmpeg's decoders,
multi-threaded), pick for each output time ``k / sample_fps`` the source frame nearest in time (so 29.97, 50 and
variable-frame-rate sources give true 25 fps output), and convert/resize in a small thread pool. Frame
extraction (step 1) writes what it reads as JPEGs; inference (step 5) reads the same frames as arrays.

Frame folders are never left half-done: a video is written into a hidden ``.<name>.partial`` folder beside its
final place and renamed into place once complete (``fps.txt`` included).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import multiprocessing
import os
import queue as queue_module
import shutil
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
from av.video.reformatter import VideoReformatter

from util.io import DataError

log = logging.getLogger(__name__)

FPS_FILE = "fps.txt"
FRAME_NAME = "{:06d}.jpg"
DEFAULT_HEIGHT = 224
DEFAULT_QUALITY = 90
# swscale's bilinear filter widens with the scale factor, so downscaling 720p -> 224p is anti-aliased, and it
# costs about half of the bicubic default.
INTERPOLATION = "BILINEAR"
# Isolated undecodable packets are skipped (the sampler then takes the nearest good frame); more than this share
# of bad packets means the file is damaged.
MAX_BAD_PACKET_SHARE = 0.01
MIN_BAD_PACKETS = 10
# A decoded video shorter than its header's duration by more than this is reported as truncated.
TRUNCATION_TOLERANCE_S = 2.0
TRUNCATION_TOLERANCE_SHARE = 0.05
_EPS_S = 1e-6


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
        raise DataError(f"{path}: not a readable video file ({_reason(e)})") from e
    if not container.streams.video:
        container.close()
        raise DataError(f"{path}: has no video stream")
    return container


def _reason(error: Exception) -> str:
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

    def __init__(self, sample_fps: float) -> None:
        self.sample_fps = float(sample_fps)
        self.next_k = 0
        self.start_s: float | None = None
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


def _convert(frame: Any, width: int, height: int, pixel_format: str) -> np.ndarray:
    # One swscale context per thread, reused across frames (a fresh one per frame costs more than the scaling).
    reformatter = getattr(_thread_local, "reformatter", None)
    if reformatter is None:
        reformatter = _thread_local.reformatter = VideoReformatter()
    out = reformatter.reformat(
        frame, width=width, height=height, format=pixel_format, interpolation=INTERPOLATION
    )
    return out.to_ndarray()


class VideoReader:
    """Decode ``path`` once: output frame k is the source frame nearest to time ``k / sample_fps``.

    Iterating yields ``(k, array)`` in order, arrays HxWx3 uint8 in ``pixel_format`` ("rgb24" or "bgr24"),
    resized to ``height`` / ``width`` (one side keeps the aspect ratio with an even other side; neither keeps the
    source size). ``sample_fps=0`` keeps every decoded frame. ``fn(k, array)``, when given, runs in the
    conversion threads and its result is yielded instead of the array (extraction encodes JPEGs there).

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
    ) -> None:
        if sample_fps < 0:
            raise ValueError(f"sample_fps must be >= 0, got {sample_fps}")
        self.path = Path(path)
        self.info = probe_video(self.path)
        self.sample_fps = float(sample_fps)
        self.size = output_size(
            self.info.width, self.info.height, height, width, self.info.sample_aspect_ratio
        )
        self.pixel_format = pixel_format
        self.max_frames = max_frames
        self.threads = max(1, threads)
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

    def frames(self, fn: Callable[[int, np.ndarray], Any] | None = None) -> Iterator[tuple[int, Any]]:
        width, height = self.size

        def job(k: int, frame: Any) -> Any:
            array = _convert(frame, width, height, self.pixel_format)
            return array if fn is None else fn(k, array)

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
                    f"among the first {packets} ({_reason(e)})"
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


# ---- frame folders


def read_fps(frame_dir: str | os.PathLike) -> float:
    """The output frame rate stored in a frame folder's fps.txt."""
    path = Path(frame_dir) / FPS_FILE
    try:
        return float(path.read_text(encoding="utf-8").strip())
    except FileNotFoundError as e:
        raise DataError(f"{path}: missing; extract the frames first (frames_as_jpg_soccernet_ball.py)") from e
    except ValueError as e:
        raise DataError(f"{path}: not a number") from e


def is_extracted(frame_dir: str | os.PathLike) -> bool:
    """A frame folder is complete once it holds fps.txt (only finished folders are renamed into place)."""
    return (Path(frame_dir) / FPS_FILE).is_file()


def count_frames(frame_dir: str | os.PathLike) -> int:
    with os.scandir(frame_dir) as entries:
        return sum(1 for e in entries if e.name.endswith(".jpg"))


def partial_dir(frame_dir: Path) -> Path:
    return frame_dir.parent / f".{frame_dir.name}.partial"


def _old_dir(frame_dir: Path) -> Path:
    return frame_dir.parent / f".{frame_dir.name}.old"


def clean_stale(frame_dir: str | os.PathLike) -> bool:
    """Remove what an interrupted run left beside ``frame_dir``; True when there was something."""
    found = False
    for stale in (partial_dir(Path(frame_dir)), _old_dir(Path(frame_dir))):
        if stale.exists():
            shutil.rmtree(stale)
            found = True
    return found


# JPEG chroma subsampling: "420" (half-resolution colour, as ffmpeg and most JPEGs) or "444" (full-resolution
# colour: keeps the colour detail of small objects such as the ball, for ~30 % larger files).
CHROMA_SAMPLING = {"420": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420, "444": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444}
DEFAULT_CHROMA = "420"


def _write_jpeg(
    path_pattern: str, quality: int, chroma: str = DEFAULT_CHROMA
) -> Callable[[int, np.ndarray], int]:
    if chroma not in CHROMA_SAMPLING:
        raise ValueError(f"chroma must be one of {sorted(CHROMA_SAMPLING)}, not {chroma!r}")
    params = [
        cv2.IMWRITE_JPEG_QUALITY,
        int(quality),
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
        CHROMA_SAMPLING[chroma],
    ]

    def write(k: int, bgr: np.ndarray) -> int:
        ok, data = cv2.imencode(".jpg", bgr, params)
        if not ok:
            raise OSError(f"JPEG encoding failed for frame {k}")
        data.tofile(path_pattern.format(k))
        return data.size

    return write


def _move_into_place(tmp: Path, frame_dir: Path) -> None:
    old = _old_dir(frame_dir)
    if frame_dir.exists():
        os.replace(frame_dir, old)
    os.replace(tmp, frame_dir)
    if old.exists():
        shutil.rmtree(old)


def extract_video(
    path: str | os.PathLike,
    frame_dir: str | os.PathLike,
    sample_fps: float = 25.0,
    height: int | None = DEFAULT_HEIGHT,
    quality: int = DEFAULT_QUALITY,
    on_frames: Callable[[int], None] | None = None,
    threads: int = 2,
    decode_threads: int = 0,
    chroma: str = DEFAULT_CHROMA,
) -> VideoReader:
    """Write ``frame_dir/000000.jpg ...`` and ``fps.txt``, replacing ``frame_dir`` only once complete.

    ``on_frames(n)`` reports progress. Returns the finished reader (num_frames, fps, duration_s).
    """
    frame_dir = Path(frame_dir)
    tmp = partial_dir(frame_dir)
    if tmp.exists():
        shutil.rmtree(tmp)
    reader = VideoReader(
        path,
        sample_fps,
        height=height or None,
        pixel_format="bgr24",
        threads=threads,
        decode_threads=decode_threads,
    )
    tmp.mkdir(parents=True)
    try:
        write = _write_jpeg(str(tmp / FRAME_NAME), quality, chroma)
        unreported = 0
        for _ in reader.frames(write):
            unreported += 1
            if on_frames is not None and unreported >= 16:
                on_frames(unreported)
                unreported = 0
        if on_frames is not None and unreported:
            on_frames(unreported)
        (tmp / FPS_FILE).write_text(f"{reader.fps!r}\n", encoding="utf-8")
        _move_into_place(tmp, frame_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return reader


# ---- a library of videos, over processes


@dataclass
class ExtractResult:
    """One video's outcome in ``extract_videos``: status is "extracted", "skipped" (already done) or "failed"."""

    video_id: str
    path: str
    status: str
    frames: int = 0
    fps: float = 0.0
    duration_s: float = 0.0
    seconds: float = 0.0  # wall time spent on it
    error: str = ""


@dataclass(frozen=True)
class ExtractJob:
    video_id: str
    path: str
    frame_dir: str
    sample_fps: float
    height: int | None
    quality: int
    decode_threads: int = 0
    chroma: str = DEFAULT_CHROMA


# Per worker process: set by _init_worker; _interrupted after a Ctrl-C, so the jobs already queued to this
# worker return at once instead of running to the end.
_progress_queue: Any = None
_interrupted = False


def _init_worker(progress_queue: Any) -> None:
    global _progress_queue
    _progress_queue = progress_queue


def _run_job(job: ExtractJob, on_frames: Callable[[int], None] | None = None) -> ExtractResult:
    global _interrupted
    if _interrupted:
        return ExtractResult(job.video_id, job.path, "failed", error=f"{job.path}: interrupted")
    if on_frames is None and _progress_queue is not None:
        on_frames = _progress_queue.put
    started = time.perf_counter()
    try:
        reader = extract_video(
            job.path,
            job.frame_dir,
            job.sample_fps,
            job.height,
            job.quality,
            on_frames=on_frames,
            decode_threads=job.decode_threads,
            chroma=job.chroma,
        )
    except KeyboardInterrupt:
        _interrupted = True
        raise
    except (DataError, av.error.FFmpegError, OSError) as e:
        reason = str(e) if isinstance(e, DataError) else f"{job.path}: {_reason(e)}"
        return ExtractResult(
            job.video_id, job.path, "failed", seconds=time.perf_counter() - started, error=reason
        )
    return ExtractResult(
        job.video_id,
        job.path,
        "extracted",
        frames=reader.num_frames,
        fps=reader.fps,
        duration_s=reader.duration_s,
        seconds=time.perf_counter() - started,
    )


class _Progress:
    """Anything with ``total`` and ``update(n)`` (a tqdm bar) or nothing."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar

    def set_total(self, total: int) -> None:
        if self.bar is not None:
            self.bar.total = total
            if hasattr(self.bar, "refresh"):
                self.bar.refresh()

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)


def extract_videos(
    videos: Sequence[tuple[str, str | os.PathLike]],
    out_dir: str | os.PathLike,
    sample_fps: float = 25.0,
    height: int | None = DEFAULT_HEIGHT,
    quality: int = DEFAULT_QUALITY,
    num_workers: int = 1,
    overwrite: bool = False,
    progress: Any = None,
    chroma: str = DEFAULT_CHROMA,
) -> list[ExtractResult]:
    """Extract ``(video_id, path)`` pairs into ``out_dir/<video_id>/`` with ``num_workers`` processes.

    Finished folders are skipped unless ``overwrite``; leftovers of interrupted runs are removed. A bad video
    becomes a "failed" result naming it and the reason; the others still finish. ``progress`` is a tqdm-like bar
    (its total is set here, then it is updated per frame). Results come in the order of ``videos``.
    """
    out_dir = Path(out_dir)
    results: dict[str, ExtractResult] = {}
    jobs: list[ExtractJob] = []
    total = 0
    decode_threads = 0 if num_workers <= 1 else max(1, (os.cpu_count() or 1) // num_workers)
    for video_id, path in videos:
        frame_dir = out_dir / video_id
        if clean_stale(frame_dir):
            log.info("%s: removed the leftovers of an interrupted run", frame_dir)
        if not overwrite and is_extracted(frame_dir):
            mismatch = _settings_mismatch(frame_dir, sample_fps, height)
            if mismatch:
                results[video_id] = ExtractResult(video_id, str(path), "failed", error=mismatch)
                continue
            frames, fps = count_frames(frame_dir), read_fps(frame_dir)
            duration_s = frames / fps if fps > 0 else 0.0
            results[video_id] = ExtractResult(video_id, str(path), "skipped", frames, fps, duration_s)
            continue
        try:
            info = probe_video(path)
        except DataError as e:
            results[video_id] = ExtractResult(video_id, str(path), "failed", error=str(e))
            continue
        total += round(info.duration_s * sample_fps) if sample_fps > 0 else info.num_frames
        jobs.append(
            ExtractJob(
                video_id, str(path), str(frame_dir), sample_fps, height, quality, decode_threads, chroma
            )
        )
    bar = _Progress(progress)
    bar.set_total(total)
    if num_workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            results[job.video_id] = _run_job(job, bar.update)
    else:
        results.update(_run_pool(jobs, num_workers, bar))
    return [results[video_id] for video_id, _ in videos]


def _settings_mismatch(frame_dir: Path, sample_fps: float, height: int | None) -> str:
    """Why a finished folder does not match this run's settings ("" when it does): never skip it silently."""
    found = []
    fps = read_fps(frame_dir)
    if sample_fps > 0 and abs(fps - sample_fps) > 1e-6:
        found.append(f"{fps:g} fps, not {sample_fps:g}")
    first = frame_dir / FRAME_NAME.format(0)
    image = cv2.imread(str(first), cv2.IMREAD_REDUCED_GRAYSCALE_2) if height else None
    if image is not None and abs(image.shape[0] * 2 - height) > 1:
        found.append(f"about {image.shape[0] * 2} pixels high, not {height}")
    if not found:
        return ""
    return (
        f"{frame_dir}: already extracted at other settings ({'; '.join(found)}); "
        "pass --overwrite to redo it, or choose another output folder"
    )


def _run_pool(jobs: list[ExtractJob], num_workers: int, bar: _Progress) -> dict[str, ExtractResult]:
    # spawn, not fork: the parent has threads (progress bar), and forking a threaded process can deadlock.
    ctx = multiprocessing.get_context("spawn")
    progress_queue = ctx.Queue()
    results: dict[str, ExtractResult] = {}
    with ProcessPoolExecutor(
        min(num_workers, len(jobs)), mp_context=ctx, initializer=_init_worker, initargs=(progress_queue,)
    ) as pool:
        futures = {pool.submit(_run_job, job): job for job in jobs}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, timeout=0.2)
                _drain(progress_queue, bar)
                for future in done:
                    job = futures[future]
                    try:
                        results[job.video_id] = future.result()
                    except BrokenProcessPool as e:
                        error = f"{job.path}: the worker process died ({e})"
                        results[job.video_id] = ExtractResult(job.video_id, job.path, "failed", error=error)
        except BaseException:
            # Ctrl-C: drop the queued videos instead of extracting them all before exiting.
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    _drain(progress_queue, bar)
    return results


def _drain(progress_queue: Any, bar: _Progress) -> None:
    with contextlib.suppress(queue_module.Empty, EOFError, OSError):
        while True:
            bar.update(progress_queue.get_nowait())
