"""One video decoded on several threads at once, a stretch between two keyframes per thread.

FFmpeg's frame threads (``VideoReader``'s default) hand every frame from thread to thread and cost about 10 %
more CPU than one decoder; on a real 720p H.264 stream with 2 cores they keep step 1 below the ffmpeg CLI. Here
the video is cut at keyframes into stretches of about equal duration, and each thread decodes, converts and
writes (``fn``) its stretches with a single-threaded decoder, in the order it takes them.

The frames written are the sequential reader's, exactly:

- stretch j holds the frames whose pts is in ``[cut_j, cut_{j+1})``. Its thread seeks to keyframe ``cut_j``,
  skips what comes out before it (an open GOP's leading frames, which only the stretch before decodes right),
  and decodes past its end to the first frame of the next stretch, which settles the output times between its
  last frame and the next stretch's first;
- every stretch resamples with ``NearestFrameSampler`` from the video's first frame time, starting at the first
  output time that the sequential sampler would settle after pushing the stretch's first frame.

Anything the sequential reader handles by its rules (a seek that does not land on the keyframe, frames without
timestamps or out of order, undecodable packets, a stretch that ends before the next keyframe) raises
``Fallback`` in the stretch; ``decode_unordered`` then decodes the whole video sequentially, yielding only the
frames not yielded yet.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

from util.video import _EPS_S, NearestFrameSampler, VideoReader, _open

# Stretches per thread: two, so the threads end together: they take the longest stretches first, and a thread
# whose stretches decode fast (real matches are uneven: replays, crowd shots) takes another. Each stretch costs
# a seek, and the frames decoded past its end until the next stretch's keyframe comes out of the reordering
# (about 10 ms at 720p): 12 stretches on 2 threads took 5 % longer than 2 on a 63-second clip.
STRETCHES_PER_THREAD = 2
# Shorter stretches are not worth their seek.
MIN_STRETCH_S = 4.0
# Packets read after a seek to find the keyframe it landed on.
MAX_PACKETS_TO_KEYFRAME = 64


class Fallback(Exception):
    """A stretch cannot be decoded on its own: the caller decodes the video sequentially."""


@dataclass(frozen=True)
class Plan:
    cuts: list[int]  # pts of the keyframe that starts each stretch after the first
    time_base: Fraction
    start_s: float  # the first frame's time: output time k is start_s + k / fps
    first: int  # the first frame's pts
    end: int  # the header's end, in pts


def plan(reader: VideoReader, threads: int) -> Plan | None:
    """Where to cut ``reader``'s video for ``threads`` threads, or None when it is not worth it or not possible
    (short, no seekable keyframes, no timestamps)."""
    info = reader.info
    pieces = min(threads * STRETCHES_PER_THREAD, int(info.duration_s // MIN_STRETCH_S))
    if threads < 2 or pieces < 2 or reader.sample_fps <= 0 or reader.max_frames is not None:
        return None
    container = _open(reader.path)
    try:
        stream = container.streams.video[0]
        time_base = stream.time_base
        if not time_base:
            return None
        stream.codec_context.thread_count = 1
        first = next(container.decode(stream), None)
        if first is None or first.pts is None:
            return None
        start_s, first_pts = float(first.time), first.pts
        cuts: list[int] = []
        for j in range(1, pieces):
            target = first_pts + round(j * info.duration_s / pieces / time_base)
            pts = _keyframe_at(container, stream, target)
            if pts is not None and pts > (cuts[-1] if cuts else first_pts):
                cuts.append(pts)
    except av.error.FFmpegError:
        return None
    finally:
        container.close()
    end = first_pts + round(info.duration_s / time_base)
    return Plan(cuts, time_base, start_s, first_pts, end) if cuts else None


def _keyframe_at(container: Any, stream: Any, target: int) -> int | None:
    """The pts of the keyframe a backward seek to ``target`` lands on (None: none found)."""
    container.seek(target, stream=stream, backward=True, any_frame=False)
    for read, packet in enumerate(container.demux(stream)):
        if packet.is_keyframe and packet.pts is not None:
            return packet.pts
        if read >= MAX_PACKETS_TO_KEYFRAME:
            break
    return None


def _first_after(time_s: float, fps: float) -> int:
    """The first output frame k whose time k / fps is after ``time_s`` (the sampler's own arithmetic)."""
    k = max(0, math.floor(time_s * fps))
    while k / fps <= time_s:
        k += 1
    while k > 0 and (k - 1) / fps > time_s:
        k -= 1
    return k


class _Stretches:
    """The state shared by the threads: which stretch is next, the results, the first failure."""

    def __init__(self, reader: VideoReader, plan: Plan, fn: Callable[[int, Any], Any]) -> None:
        self.reader, self.plan, self.fn = reader, plan, fn
        # Longest first (the last stretch's length is a guess: to the header's end).
        bounds = [plan.first, *plan.cuts, max(plan.cuts[-1], plan.end)]
        self.order = sorted(range(len(bounds) - 1), key=lambda j: bounds[j] - bounds[j + 1])
        self.next = 0
        self.lock = threading.Lock()
        self.results: queue.Queue = queue.Queue(maxsize=256)
        self.stop = threading.Event()
        self.decoded = 0
        self.duration_s = 0.0

    def take(self) -> int | None:
        with self.lock:
            if self.stop.is_set() or self.next == len(self.order):
                return None
            self.next += 1
            return self.order[self.next - 1]

    def thread(self) -> None:
        container, outcome = None, ("done", None)
        try:
            while (j := self.take()) is not None:
                # The first stretch reads from the file's start, not seeked.
                if container is not None and j == 0:
                    container.close()
                    container = None
                if container is None:  # kept for the thread's next stretches: they seek
                    container = _open(self.reader.path)
                    stream = container.streams.video[0]
                    stream.thread_type = "NONE"  # one decoder per thread, single-threaded
                    stream.codec_context.thread_count = 1
                try:
                    self.decode(container, j)
                except av.error.FFmpegError as e:  # the sequential reader says what is wrong, by its rules
                    raise Fallback(f"stretch {j}: {e}") from e
        except BaseException as e:  # noqa: BLE001 - handed to the consuming thread, which raises it
            self.stop.set()
            outcome = ("error", e)
        finally:
            if container is not None:
                container.close()
            self.results.put(outcome)  # last: the consumer joins this thread once it has it

    def decode(self, container: Any, j: int) -> None:
        cuts, fps = self.plan.cuts, self.reader.sample_fps
        stream = container.streams.video[0]
        begin = cuts[j - 1] if j > 0 else None
        end = cuts[j] if j < len(cuts) else None
        sampler = NearestFrameSampler(fps)
        sampler.start_s = self.plan.start_s
        if begin is not None:
            container.seek(begin, stream=stream, backward=True, any_frame=False)
        last_pts = last_s = None
        frame_s = 0.0
        decoded = 0
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError as e:
                raise Fallback(f"undecodable packet in stretch {j}") from e
            for frame in frames:
                if self.stop.is_set():
                    return
                if frame.pts is None:
                    raise Fallback("a frame without a timestamp")
                if begin is not None and last_pts is None:
                    if frame.pts < begin:
                        continue  # an open GOP's leading frame: the stretch before decodes it
                    if frame.pts != begin:
                        raise Fallback(f"the seek to {begin} landed at {frame.pts}")
                    # What the sequential sampler settles when this frame comes is the stretch before's.
                    sampler.next_k = _first_after(float(frame.time) - self.plan.start_s + _EPS_S, fps)
                if last_pts is not None and frame.pts <= last_pts:
                    raise Fallback("frames out of order")
                owned = end is None or frame.pts < end
                if owned:
                    decoded += 1
                    time_s = float(frame.time)
                    if frame.duration and frame.time_base:
                        frame_s = float(frame.duration * frame.time_base)
                    elif last_s is not None:
                        frame_s = time_s - last_s
                    last_s = time_s
                last_pts = frame.pts
                for k, picked in sampler.push(float(frame.time), frame):
                    self.emit(k, picked)
                if not owned:
                    self.count(decoded)
                    return
        if end is not None:
            raise Fallback(f"stretch {j} ended before the keyframe at {end}")
        if last_s is None:
            raise Fallback("the last stretch has no frames")
        end_s = last_s + (frame_s or 1.0 / fps)
        for k, picked in sampler.finish(end_s):
            self.emit(k, picked)
        self.count(decoded, end_s - self.plan.start_s)

    def emit(self, k: int, frame: Any) -> None:
        result = self.fn(k, self.reader.convert(frame))
        self.results.put(("frame", (k, result)))

    def count(self, decoded: int, duration_s: float | None = None) -> None:
        with self.lock:
            self.decoded += decoded
            if duration_s is not None:
                self.duration_s = duration_s


def decode_unordered(
    reader: VideoReader, fn: Callable[[int, Any], Any], threads: int
) -> Iterator[tuple[int, Any]]:
    """Yield ``(k, fn(k, image))`` for every output frame of ``reader``, in no particular order, decoding
    stretches on ``threads`` threads; sequentially (``reader.frames(fn)``) when the video cannot be cut. Sets
    the reader's ``num_frames``, ``decoded_frames`` and ``duration_s`` as a sequential pass does."""
    cut = plan(reader, threads)
    done: set[int] = set()
    if cut is not None:
        state = _Stretches(reader, cut, fn)
        workers = [
            threading.Thread(target=state.thread, name=f"video-stretch-{i}", daemon=True)
            for i in range(min(threads, len(cut.cuts) + 1))
        ]
        for worker in workers:
            worker.start()
        running, failure = len(workers), None
        try:
            while running:
                kind, value = state.results.get()
                if kind == "frame":
                    done.add(value[0])
                    yield value
                elif kind == "done":
                    running -= 1
                else:
                    running -= 1
                    failure = failure or value
        finally:
            state.stop.set()
            while running:  # stopped early: take what the threads still put, until each has said it ended
                kind, _ = state.results.get()
                running -= kind != "frame"
            for worker in workers:
                worker.join()
        if failure is None:
            reader.num_frames = max(done) + 1 if done else 0
            reader.decoded_frames = state.decoded
            reader.duration_s = state.duration_s
            reader._check_complete()
            return
        if not isinstance(failure, Fallback):
            raise failure
    for k, result in reader.frames(fn):
        if k not in done:
            yield k, result
