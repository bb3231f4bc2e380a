"""Step 1: videos -> JPEG frame folders, resampled by timestamp and resized, in a pool of processes.

``extract_video`` reads one video through ``util.video.VideoReader`` (the reader inference uses too), decoding
stretches between keyframes on several threads (``util.video_stretches``: the same frames, faster), and writes
``util.frame_folder``'s layout into a hidden ``.<name>.partial`` folder, renamed into place once complete, so an
interrupted run leaves nothing half-written in place. ``extract_videos`` runs many in worker processes with one
progress bar, skips finished folders (re-extracting those written with other settings) and reports each result.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue as queue_module
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import simplejpeg

from util.frame_folder import (
    FPS_FILE,
    FRAME_NAME,
    _old_dir,
    clean_stale,
    count_frames,
    is_extracted,
    partial_dir,
    read_fps,
)
from util.io import DataError
from util.video import DEFAULT_HEIGHT, VideoInfo, VideoReader, error_reason, probe_video
from util.video_stretches import decode_unordered

log = logging.getLogger(__name__)

DEFAULT_QUALITY = 90


# JPEG chroma subsampling: "420" (half-resolution colour, as ffmpeg and most JPEGs) or "444" (full-resolution
# colour: keeps the colour detail of small objects such as the ball, for ~30 % larger files).
# (OpenCV's constant, by name: step 1 imports OpenCV only for 4:4:4, as the command starts 0.05 s sooner without it.)
CHROMA_SAMPLING = {"420": "IMWRITE_JPEG_SAMPLING_FACTOR_420", "444": "IMWRITE_JPEG_SAMPLING_FACTOR_444"}
DEFAULT_CHROMA = "420"
# What each chroma setting compresses. 4:2:0 (the default): swscale's resized YUV planes, in JPEG's YCbCr,
# with libjpeg-turbo (simplejpeg), as the ffmpeg CLI does with its own encoder: no RGB on the way (a real 720p
# H.264 stream: 12 % less CPU than resizing to BGR and compressing that; the files' size is the same). Their
# pixels differ from the frames the readers give (util.video, util.video_index) by JPEG's error, on average
# 2.9 levels (2.5 compressing BGR). 4:4:4: the readers' BGR frames themselves, with OpenCV, so compressing a
# frame a reader gives reproduces step 1's JPEG bit for bit.
PIXEL_FORMAT = {"420": "yuvj420p", "444": "bgr24"}


def _write_file(path: str, data: Any) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _write_jpeg(path_pattern: str, quality: int, chroma: str = DEFAULT_CHROMA) -> Callable[[int, Any], int]:
    """``write(k, image)``: frame k as ``path_pattern.format(k)``; the image is ``PIXEL_FORMAT[chroma]``'s."""
    if chroma not in CHROMA_SAMPLING:
        raise ValueError(f"chroma must be one of {sorted(CHROMA_SAMPLING)}, not {chroma!r}")
    if PIXEL_FORMAT[chroma] == "yuvj420p":

        def write_planes(k: int, planes: tuple[np.ndarray, np.ndarray, np.ndarray]) -> int:
            data = simplejpeg.encode_jpeg_yuv_planes(*planes, quality=int(quality))
            _write_file(path_pattern.format(k), data)
            return len(data)

        return write_planes
    import cv2

    params = [
        cv2.IMWRITE_JPEG_QUALITY,
        int(quality),
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
        getattr(cv2, CHROMA_SAMPLING[chroma]),
    ]

    def write(k: int, bgr: np.ndarray) -> int:
        ok, data = cv2.imencode(".jpg", bgr, params)
        if not ok:
            raise OSError(f"JPEG encoding failed for frame {k}")
        _write_file(path_pattern.format(k), data)
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
    info: VideoInfo | None = None,
) -> VideoReader:
    """Write ``frame_dir/000000.jpg ...`` and ``fps.txt``, replacing ``frame_dir`` only once complete.

    ``on_frames(n)`` reports progress; ``info`` is the video's ``probe_video`` when the caller has it. The video
    is decoded by stretches on ``decode_threads`` threads (0: one per CPU); one thread decodes it in one pass,
    with ``threads`` more converting. Returns the finished reader (num_frames, fps, duration_s).
    """
    frame_dir = Path(frame_dir)
    tmp = partial_dir(frame_dir)
    if tmp.exists():
        shutil.rmtree(tmp)
    if chroma not in PIXEL_FORMAT:
        raise ValueError(f"chroma must be one of {sorted(PIXEL_FORMAT)}, not {chroma!r}")
    reader = VideoReader(
        path,
        sample_fps,
        height=height or None,
        pixel_format=PIXEL_FORMAT[chroma],
        threads=threads,
        decode_threads=decode_threads,
        info=info,
    )
    tmp.mkdir(parents=True)
    try:
        write = _write_jpeg(str(tmp / FRAME_NAME), quality, chroma)
        unreported = 0
        stretch_threads = decode_threads if decode_threads > 0 else (os.cpu_count() or 1)
        for _ in decode_unordered(reader, write, stretch_threads):
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
    info: VideoInfo | None = None  # probe_video's, from extract_videos


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
            info=job.info,
        )
    except KeyboardInterrupt:
        _interrupted = True
        raise
    except (DataError, av.error.FFmpegError, OSError) as e:
        reason = str(e) if isinstance(e, DataError) else f"{job.path}: {error_reason(e)}"
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
                video_id, str(path), str(frame_dir), sample_fps, height, quality, decode_threads, chroma, info
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
    try:
        first_height = simplejpeg.decode_jpeg_header(first.read_bytes())[0] if height else None
    except (OSError, ValueError):  # unreadable: the folder's own check (is_extracted) judged it complete
        first_height = None
    if first_height is not None and first_height != height:
        found.append(f"{first_height} pixels high, not {height}")
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
