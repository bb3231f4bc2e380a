"""Live spotting: the events of a live feed, written within seconds of the frames (``inference_spot.py --live``).

The source is anything FFmpeg opens as a live input (``udp://``, ``srt://``, ``rtsp://``, ``rtmp://``, an HLS
playlist, ``-`` for a pipe on stdin) or a file a recorder is still writing (followed as it grows). A thread
(``read_stream``) decodes it, resamples it to the model's frame rate by the timestamp rule of step 1
(``NearestFrameSampler``) and resizes it as step 5 does; the caller's thread runs the model and writes.

How a frame's score is final (``LiveScorer``). The model's windows (``clip_len`` frames) start every ``hop``
frames and run as soon as their last frame arrives. A frame's score is the mean over the windows that end at most
``context`` frames after it, so it is final once the newest frame is ``context`` frames past it. With ``context``
at least ``clip_len`` (and ``hop`` the offline stride) these are exactly the windows offline inference averages,
the last one aligned to the end included: the scores are offline's. With less, a frame is scored by the windows that see least of its future (``hop`` shrinks
to ``context + 1`` so that each frame has one).

How an event is final (``LiveEvents``). The post-processing of the model folder (smoothing, peaks, NMS,
displacement) runs on the final scores; an event is written once no score still to come can change it
(``util.postprocess.final_events_end``): at most ``margin`` frames past it (the NMS window, the smoothing radius,
the displacement radius, and one frame for the peak), sooner where no candidate of its class is near. So the latency
budget ``--latency S`` is ``(context + margin) / fps``: S must exceed ``margin / fps``. One case needs more: a chain
of candidates of one class, each within the NMS window of the next and each higher, where a later one decides
whether the first is suppressed. At the budget such an event is written as it stands (``early_events`` counts them:
they may differ from offline's), so the budget holds, but for one wait: the first ``clip_len`` frames of a feed (and
after each gap) have no score until the first whole window has arrived.

A feed that drops (no frame for ``stall_timeout``) is opened again with backoff; its frames before the gap are
finished as at the end of a video (the last window aligned to the end), so nothing before the gap is lost and no
event is written twice. After the gap the frame numbers go on from the source's timestamps when they continued (a
live encoder's clock), else from the wall clock. When the model falls behind by more than ``max_lag_s``, the
frames waiting longer are dropped as a gap (counted and logged), looked at before each batch of windows: the delay
stays within ``max_lag_s`` + the latency + one batch. The feed is read while the model loads.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from util.io import DataError
from util.postprocess import PostProcess, final_events_end, scores_to_events

log = logging.getLogger(__name__)

DEFAULT_LATENCY_S = 4.0
DEFAULT_CONNECT_TIMEOUT_S = 30.0
DEFAULT_STALL_TIMEOUT_S = 3.0
DEFAULT_MAX_LAG_S = 10.0
# Frames of final scores the post-processing looks back over: events further back are written already.
LOOKBACK_S = 60.0
# A timestamp further than this from the next expected one starts a new stretch of frames (a jump or a reset).
JUMP_S = 1.0
RECONNECT_BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)
EVENT_FIELDS = ["frame", "time_s", "time", "label", "score", "team", "team_score", "wall_time", "delay_s"]


# ---- scores as frames arrive


class LiveScorer:
    """Per-frame scores of one unbroken stretch of a stream, final ``context`` frames behind the newest.

    ``run(windows) -> {name: (len(windows), clip_len, ...)}`` runs the model on a batch of windows (each
    ``(clip_len, H, W, 3)``). ``push(frames)`` adds frames and runs the windows they complete; ``final_end``: the
    frames ``[0, final_end)`` have their final scores; ``finish()``: the stretch ended, every score is final.
    ``origin``: the match's frame number of the stretch's first frame. The first window starts at the first frame,
    the others on the grid of ``hop`` from the match's frame 0, as offline inference's windows: after a gap, the
    scores are offline's again once the windows no longer reach back to the gap.
    """

    def __init__(self, run: Callable[[list[np.ndarray]], dict[str, np.ndarray]], clip_len: int, hop: int,
                 context: int, batch_size: int = 8, origin: int = 0) -> None:  # fmt: skip
        if hop < 1 or hop > context + 1:
            raise ValueError(f"hop {hop} must be in [1, context + 1 = {context + 1}]")
        self.run, self.clip_len, self.hop, self.context = run, clip_len, hop, context
        self.origin = origin
        self.batch_size = batch_size
        self.frames: list[np.ndarray] = []  # frames [first, n)
        self.first = 0
        self.n = 0
        self.next_start = 0
        self.last_end = 0
        self.sums: dict[str, np.ndarray] = {}
        self.count = np.zeros(0, np.int32)
        self.finished = False

    @property
    def final_end(self) -> int:
        if self.finished:
            return self.n
        return max(0, self.n - self.context) if self.last_end else 0

    def push(self, frames: np.ndarray | list[np.ndarray]) -> None:
        self.frames.extend(frames)
        self.n += len(frames)
        ready = []
        while self.next_start + self.clip_len <= self.n:
            ready.append(self.next_start)
            following = self.next_start + self.hop
            self.next_start = following - (self.origin + following) % self.hop
        for i in range(0, len(ready), self.batch_size):
            self._add(ready[i : i + self.batch_size])
        keep_from = min(self.next_start, self.n - self.clip_len)
        if keep_from > self.first:
            del self.frames[: keep_from - self.first]
            self.first = keep_from

    def _window(self, start: int) -> np.ndarray:
        return np.stack(self.frames[start - self.first : start - self.first + self.clip_len])

    def _add(self, starts: list[int], num_valid: int | None = None, tail: bool = False) -> None:
        if num_valid is not None:  # a stretch shorter than a window: padded with zeros, as offline
            frames = np.stack(self.frames)
            pad = np.zeros((self.clip_len - len(frames), *frames.shape[1:]), frames.dtype)
            windows = [np.concatenate([frames, pad])]
        else:
            windows = [self._window(s) for s in starts]
        outputs = self.run(windows)
        for i, start in enumerate(starts):
            end = start + (num_valid or self.clip_len)
            # A window adds to the frames it ends at most `context` after (the first, to all of its frames: they
            # have no other); at the end of the stream, to every frame not final yet.
            lo = max(start, self.final_end) if tail else max(start, end - 1 - self.context) if start else 0
            self._grow(end)
            for name, values in outputs.items():
                part = values[i, lo - start : end - start]
                if name not in self.sums:
                    self.sums[name] = np.zeros((len(self.count), *part.shape[1:]), np.float64)
                self.sums[name][lo:end] += part
            self.count[lo:end] += 1
            self.last_end = max(self.last_end, end)

    def _grow(self, end: int) -> None:
        if end <= len(self.count):
            return
        size = max(end, 2 * len(self.count), 256)
        self.count = np.concatenate([self.count, np.zeros(size - len(self.count), np.int32)])
        for name, values in self.sums.items():
            self.sums[name] = np.concatenate([values, np.zeros((size - len(values), *values.shape[1:]))])

    def finish(self) -> None:
        """The stretch ended: a last window aligned to its end, as offline inference adds."""
        if self.finished or self.n == 0:
            self.finished = True
            return
        if self.n < self.clip_len:
            self._add([0], num_valid=self.n, tail=True)
        elif self.last_end < self.n:
            self._add([self.n - self.clip_len], tail=True)
        self.finished = True

    def scores(self, lo: int, hi: int) -> dict[str, np.ndarray]:
        """The mean outputs of frames ``[lo, hi)`` (``scores``, and ``team`` / ``displacement`` when present)."""
        count = np.maximum(self.count[lo:hi], 1)
        return {name: (values[lo:hi] / count.reshape(-1, *([1] * (values.ndim - 1)))).astype(np.float32)
                for name, values in self.sums.items()}  # fmt: skip


def event_margin(post: PostProcess, fps: float, displacement: int = 0) -> int:
    """Frames past an event whose scores can still change it: NMS window, smoothing radius, displacement radius,
    and the next frame (a peak is higher than both neighbours)."""
    options = post.event_options(fps)
    nms = max([options["nms_window"], *(options.get("class_windows") or {}).values()])
    sigma = options["sigma"]
    smoothing = max(1, math.ceil(4 * sigma)) if sigma > 0 else 0
    return nms + smoothing + int(displacement) + 1


class LiveEvents:
    """The events of a ``LiveScorer``'s final scores, each given once, as soon as nothing can change it.

    An event is given when no score still to come can change it (``final_events_end``), and at the latest
    ``margin`` frames after it: one still in an open chain of NMS candidates then is counted in ``early``.
    ``thresholds``: per class, the lowest score of the events wanted (the display thresholds): the lower
    candidates cannot change those, so they are not waited for (the events below are given too, not final)."""

    def __init__(self, scorer: LiveScorer, classes: list[str], post: PostProcess, fps: float,
                 displacement: int = 0, thresholds: dict[str, float] | None = None) -> None:  # fmt: skip
        self.scorer, self.classes, self.post, self.fps = scorer, classes, post, fps
        self.thresholds = thresholds
        self.displacement = int(displacement)
        self.margin = event_margin(post, fps, displacement)
        self.lookback = max(round(LOOKBACK_S * fps), 4 * self.margin)
        self.done = 0  # events before this frame have been given
        self.looked = 0  # final_end when last looked
        self.early = 0  # events written before their NMS chain closed (they may differ from offline's)

    def new_events(self, every: int = 1) -> list[dict]:
        """Events that became final since the last call, in frame order; nothing until ``every`` more frames
        have final scores (the post-processing runs over ``LOOKBACK_S`` of scores), or the stretch ended."""
        end = self.scorer.final_end
        if end - self.looked < (1 if self.scorer.finished else every):
            return []
        self.looked = end
        lo = max(0, self.done - self.lookback)
        arrays = self.scorer.scores(lo, end)
        if "scores" not in arrays:
            return []
        options = self.post.event_options(self.fps)
        displacement = arrays.get("displacement")
        if self.scorer.finished:
            settled = exact = end
        else:
            exact = lo + final_events_end(arrays["scores"], self.classes, self.fps, displacement=displacement,
                                          displacement_radius=self.displacement, min_scores=self.thresholds,
                                          team_scores=arrays.get("team"), **options)  # fmt: skip
            # The budget holds: an event still in an open chain ``margin`` frames on is written as it stands.
            settled = max(exact, end - self.margin)
        if settled <= self.done:
            return []
        events = scores_to_events(
            arrays["scores"], self.classes, self.fps, team_scores=arrays.get("team"),
            displacement=displacement, **options,
        )  # fmt: skip
        found = []
        for event in events:
            frame = event["frame"] + lo
            if self.done <= frame < settled:
                found.append({**event, "frame": frame})
                wanted = self.thresholds is None or event["score"] >= self.thresholds[event["label"]]
                self.early += int(frame >= exact and wanted)
        self.done = settled
        return found


# ---- the stream: frames, their match time, gaps


@dataclass
class Arrival:
    """A frame at the model's rate: its frame number in the match, the image, when it arrived (time.monotonic),
    and the stretch of the stream it belongs to (a new one after each gap)."""

    frame: int
    image: np.ndarray
    arrived: float
    stretch: int


@dataclass
class StreamEnd:
    reason: str  # "ended" (the source said so), or an error message
    error: bool = False


@dataclass
class StreamBreak:
    """The feed stopped: the frames before are finished now, not when it comes back."""

    reason: str


@dataclass
class StreamStats:
    connections: int = 0
    gaps: list[dict] = field(default_factory=list)  # {after_s, seconds, reason}
    decoded: int = 0


def is_network(source: str) -> bool:
    return "://" in source and not source.startswith("file:")


def open_options(source: str) -> dict[str, str]:
    """FFmpeg input options for a live source: a short probe, UDP's overruns survived."""
    # (Not fflags nobuffer: it drops the packets read while probing, the feed's first second.)
    options = {"probesize": "1000000", "analyzeduration": "1000000"}
    if source.startswith("udp://"):
        options.update({"overrun_nonfatal": "1", "fifo_size": "500000"})
    if source.startswith("rtsp://"):
        options["rtsp_transport"] = "tcp"
    return options


class GrowingFile(io.RawIOBase):
    """A file a recorder is still writing, read as it grows: at its end, ``read`` waits for more, and gives the
    end of file once the file has not grown for ``idle_s`` (the recording stopped) or ``stop`` is set."""

    def __init__(self, path: Path, idle_s: float, stop: threading.Event) -> None:
        self.f = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.idle_s, self.stop = idle_s, stop

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:  # an MP4 is read by seeking (its index may be at the end)
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.f.seek(offset, whence)

    def tell(self) -> int:
        return self.f.tell()

    def readinto(self, buffer: Any) -> int:
        waited = 0.0
        while True:
            n = self.f.readinto(buffer)
            if n:
                return n
            if waited >= self.idle_s or self.stop.is_set():
                return 0
            time.sleep(0.05)
            waited += 0.05

    def close(self) -> None:
        self.f.close()
        super().close()


class StreamReader:
    """Reads ``source`` in a thread into ``queue``: ``Arrival`` per frame at ``fps``, ``StreamEnd`` last.

    ``convert(frame) -> image`` resizes a decoded PyAV frame for the model. ``connect_timeout_s``: the first frame
    must come by then (else a clear error); ``stall_timeout_s``: a network source silent that long is opened
    again, with backoff, until ``stop``. A file or a pipe ends at its end.
    """

    def __init__(self, source: str, fps: float, convert: Callable[[Any], np.ndarray], *,
                 connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
                 stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S) -> None:  # fmt: skip
        self.source, self.fps, self.convert = source, float(fps), convert
        self.connect_timeout_s, self.stall_timeout_s = connect_timeout_s, stall_timeout_s
        self.queue: queue.Queue = queue.Queue()
        self.stop = threading.Event()
        self.stats = StreamStats()
        self.info: dict[str, Any] = {}  # width, height, sample_aspect_ratio of the first connection
        self.thread = threading.Thread(target=self._run, name="live-reader", daemon=True)
        # The stream's clock: match time of frames, carried across gaps.
        self._last_match_s: float | None = None
        self._last_source_s: float | None = None
        self._last_arrival: float | None = None
        self._stretch = -1
        self._got = False

    def start(self) -> StreamReader:
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)

    def _open(self, timeout_s: float) -> Any:
        import av

        if self.source == "-":
            import sys

            return av.open(sys.stdin.buffer, mode="r", timeout=(timeout_s, self.stall_timeout_s))
        path = Path(self.source)
        if not is_network(self.source):
            if not path.is_file():
                raise DataError(
                    f"{self.source}: no such file, and not a stream address (udp://, srt://, ...)"
                )
            growing = GrowingFile(path, self.stall_timeout_s, self.stop)
            return av.open(growing, mode="r")
        return av.open(self.source, mode="r", options=open_options(self.source),
                       timeout=(timeout_s, self.stall_timeout_s))  # fmt: skip

    def _run(self) -> None:
        import av

        started = time.monotonic()
        attempt = 0
        while not self.stop.is_set():
            first = self.stats.connections == 0
            timeout = self.connect_timeout_s - (time.monotonic() - started) if first else self.stall_timeout_s
            try:
                if first and timeout <= 0:
                    raise TimeoutError
                container = self._open(max(timeout, 0.1))
            except DataError as e:
                self.queue.put(StreamEnd(str(e), error=True))
                return
            except (av.error.FFmpegError, OSError, TimeoutError) as e:
                if first and time.monotonic() - started >= self.connect_timeout_s:
                    self.queue.put(StreamEnd(self._no_frame(e), error=True))
                    return
                if not is_network(self.source):
                    self.queue.put(StreamEnd(f"{self.source}: cannot read it ({e})", error=True))
                    return
                time.sleep(RECONNECT_BACKOFF_S[min(attempt, len(RECONNECT_BACKOFF_S) - 1)])
                attempt += 1
                continue
            self._got = False
            try:
                self._read(container)
            except (av.error.FFmpegError, OSError) as e:
                if is_network(self.source):
                    log.warning(
                        "%s: the feed stopped (%s: %s); opening it again", self.source, type(e).__name__, e
                    )
                    if self._got:
                        self.queue.put(StreamBreak(str(e)))
                else:
                    self.queue.put(StreamEnd(f"{self.source}: {e}", error=not self._got))
                    return
            finally:
                container.close()
            got = self._got
            if got:
                attempt = 0
                self.stats.connections += 1
            if not is_network(self.source):
                break
            if first and not got and time.monotonic() - started >= self.connect_timeout_s:
                self.queue.put(StreamEnd(self._no_frame(None), error=True))
                return
        self.queue.put(StreamEnd("ended"))

    def _no_frame(self, error: Exception | None) -> str:
        why = f" ({error})" if error and str(error) else ""
        return (f"{self.source}: no video frame in {self.connect_timeout_s:g} s{why}; check the address and that "
                "the feed is on (--connect_timeout sets the wait)")  # fmt: skip

    def _read(self, container: Any) -> None:
        from util.video import NearestFrameSampler

        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if not self.info:
            ctx = stream.codec_context
            sar = stream.sample_aspect_ratio or ctx.sample_aspect_ratio
            self.info = {
                "width": ctx.width,
                "height": ctx.height,
                "sample_aspect_ratio": float(sar) if sar else 1.0,
            }
        sampler = None
        rate = stream.average_rate or stream.guessed_rate
        frame_s = 1.0 / float(rate) if rate else 1.0 / self.fps
        for frame in self._frames(container, stream):
            if self.stop.is_set():
                break
            arrived = time.monotonic()
            source_s = frame.time
            if source_s is None or not math.isfinite(source_s):  # no timestamp (frames flushed at a stall)
                source_s = (self._last_source_s or 0.0) + frame_s
            match_s = self._match_time(source_s, arrived)
            if sampler is None or match_s is None:  # a new stretch: a new connection, a jump or a reset
                match_s = self._new_stretch(source_s, arrived)
                # On the grid of the match's frame 0, from the first frame time at or after this one: the frames
                # are those offline inference of the whole match reads, and the frames before were lost.
                sampler = NearestFrameSampler(
                    self.fps, start_s=0.0, first_k=math.ceil(match_s * self.fps - 1e-6)
                )
            self._last_match_s, self._last_source_s, self._last_arrival = match_s, source_s, arrived
            self._got = True
            self.stats.decoded += 1
            for k, picked in sampler.push(match_s, frame):
                self.queue.put(Arrival(k, self.convert(picked), arrived, self._stretch))

    @staticmethod
    def _frames(container: Any, stream: Any) -> Iterator[Any]:
        """The decoded frames; when the feed stalls, the frames the decoder still holds (B-frame reordering),
        then the error."""
        import av

        try:
            for packet in container.demux(stream):
                yield from packet.decode()
        except av.error.FFmpegError:
            with contextlib.suppress(av.error.FFmpegError):
                yield from stream.decode(None)
            raise

    def _match_time(self, source_s: float, arrived: float) -> float | None:
        """The match time of a frame in the current stretch, or None when its timestamp jumped."""
        if self._last_source_s is None or self._last_match_s is None:
            return None
        step = source_s - self._last_source_s
        if not -0.5 / self.fps < step <= JUMP_S:
            return None
        return self._last_match_s + max(step, 0.0)

    def _new_stretch(self, source_s: float, arrived: float) -> float:
        self._stretch += 1
        if self._last_match_s is None:
            return 0.0
        wall = arrived - (self._last_arrival or arrived)
        step = source_s - (self._last_source_s or 0.0)
        # The source's clock kept running through the gap (a live encoder): trust it. Else the wall clock.
        gap = step if 0 < step <= wall + 2.0 else max(wall, 1.0 / self.fps)
        match_s = self._last_match_s + gap
        self.stats.gaps.append({"after_s": round(self._last_match_s, 3), "seconds": round(gap, 3),
                                "clock": "source" if gap == step else "wall"})  # fmt: skip
        log.warning("%s: gap of %.1f s after %.1f s (timestamps from the %s clock)", self.source, gap,
                    self._last_match_s, "source's" if gap == step else "wall")  # fmt: skip
        return match_s


# ---- writing events


class EventLog:
    """``events.jsonl`` and ``events.csv`` in ``folder``, one line per final event, flushed as written."""

    def __init__(self, folder: Path, fps: float) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.fps = fps
        self.jsonl = open(folder / "events.jsonl", "w", encoding="utf-8")  # noqa: SIM115
        self.csv_file = open(folder / "events.csv", "w", encoding="utf-8", newline="")  # noqa: SIM115
        self.csv = csv.writer(self.csv_file, lineterminator="\n")
        self.csv.writerow(EVENT_FIELDS)
        self.csv_file.flush()
        self.written: list[dict] = []

    def write(self, event: dict, arrived: float | None) -> dict:
        now = time.monotonic()
        time_s = event["frame"] / self.fps
        row = {
            "frame": int(event["frame"]),
            "time_s": round(time_s, 3),
            "time": f"{int(time_s // 60):02d}:{time_s % 60:05.2f}",
            "label": event["label"],
            "score": round(float(event["score"]), 4),
            "team": event.get("team"),
            "team_score": None if event.get("team_score") is None else round(float(event["team_score"]), 4),
            "wall_time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "delay_s": None if arrived is None else round(now - arrived, 3),
        }
        self.jsonl.write(json.dumps(row) + "\n")
        self.jsonl.flush()
        self.csv.writerow(["" if row[k] is None else row[k] for k in EVENT_FIELDS])
        self.csv_file.flush()
        self.written.append(row)
        return row

    def close(self) -> None:
        self.jsonl.close()
        self.csv_file.close()


# ---- the loop


@dataclass
class LiveSettings:
    latency_s: float = DEFAULT_LATENCY_S
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S
    max_lag_s: float = DEFAULT_MAX_LAG_S
    batch_size: int = 8
    # The model's autocast type: None, the device's default (bf16 on a CPU with native bf16, as offline inference);
    # torch.float32 for none. (In bf16 a window run alone and in a batch of 8 differ by about 1e-3.)
    precision: Any = None


def live_geometry(clip_len: int, stride: int, latency_frames: int, margin: int) -> tuple[int, int]:
    """(context, hop) in frames for a latency budget: the context is what the budget leaves after the
    post-processing's margin, the hop the offline stride or less, so that every final frame has a window."""
    context = latency_frames - margin
    if context < 0:
        raise DataError(f"a latency of {latency_frames} frames is below the post-processing's margin of {margin} "
                        "frames (its NMS window and smoothing); ask for a longer --latency")  # fmt: skip
    return context, max(1, min(stride, context + 1))


@dataclass
class LiveRun:
    """What a live run did (``live_summary.json``)."""

    source: str
    events: int = 0
    frames: int = 0
    stretches: int = 0
    skipped_frames: int = 0
    early_events: int = 0  # written at the latency budget before their NMS chain closed: may differ offline
    gaps: list[dict] = field(default_factory=list)
    delays_s: list[float] = field(default_factory=list)
    model_s: float = 0.0
    wall_s: float = 0.0
    ended: str = ""

    def summary(self, fps: float, latency_s: float, context: int, hop: int, margin: int) -> dict[str, Any]:
        delays = np.asarray(self.delays_s) if self.delays_s else None
        stream_s = self.frames / fps
        return {
            "source": self.source,
            "ended": self.ended,
            "latency_s": latency_s,
            "context_frames": context,
            "hop_frames": hop,
            "margin_frames": margin,
            "frames": self.frames,
            "stream_s": round(stream_s, 3),
            "events": self.events,
            "stretches": self.stretches,
            "gaps": self.gaps,
            "skipped_frames": self.skipped_frames,
            "early_events": self.early_events,
            "delay_s": None if delays is None else {
                "median": round(float(np.median(delays)), 3), "p95": round(float(np.percentile(delays, 95)), 3),
                "max": round(float(delays.max()), 3)},
            "model_s": round(self.model_s, 3),
            # Model time per second of stream: below 1 keeps up.
            "model_load": round(self.model_s / stream_s, 3) if stream_s else None,
            "wall_s": round(self.wall_s, 3),
        }  # fmt: skip


def run_live(
    model_dir: str | Path,
    source: str,
    output_dir: str | Path,
    settings: LiveSettings | None = None,
    *,
    device: str | None = None,
    aspect: str | None = None,
    score_threshold: float | None = None,
    nms_window: int | None = None,
    nms_window_s: float | None = None,
    on_event: Callable[[dict], None] | None = None,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """Spot the actions of a live ``source`` until it ends, ``stop`` is set or Ctrl-C; events go to
    ``output_dir``'s events.jsonl / events.csv as they become final (and to ``on_event``). Returns the summary
    (also written to live_summary.json). ``nms_window`` (frames) or ``nms_window_s``: the NMS window instead of the
    model's (a shorter one leaves more of a short latency budget to the model's context)."""
    import torch

    from dataset.source import FrameFit, VideoInput
    from model.common import load_model
    from model.folder import ModelFolder
    from model.inference import _device, display_thresholds, frame_geometry
    from model.predict import _run_batch, window_stride
    from util.cli import DEFAULT_ASPECT
    from util.io import store_json
    from util.video import _convert

    settings = settings or LiveSettings()
    output_dir = Path(output_dir)
    folder = ModelFolder.of(model_dir)
    device = _device(device)
    config = dict(folder.config)
    model = epoch = (
        None  # loaded once the feed is being read: a UDP feed's first packets are not lost meanwhile
    )
    fps, classes = float(config["fps"]), list(config["classes"])
    post: PostProcess = folder.selection["postprocess"].with_overrides(nms_window, nms_window_s, fps)
    thresholds = display_thresholds(folder.selection, classes, score_threshold)
    clip_len, stride = int(config["clip_len"]), window_stride(config)
    margin = event_margin(post, fps, int(config.get("displacement") or 0))
    context, hop = live_geometry(clip_len, stride, round(settings.latency_s * fps), margin)
    log.info("live: latency %.1f s = %d frames of context + %d of post-processing; windows every %d frames",
             settings.latency_s, context, margin, hop)  # fmt: skip

    geometry: dict[str, Any] = {}

    def convert(frame: Any) -> np.ndarray:
        if "size" not in geometry:  # the first frame: the stream's size decides the fit, with a note
            item = VideoInput("live", Path(source), True, fps, 0)
            item.width, item.height = frame.width, frame.height
            item.sample_aspect_ratio = reader.info.get("sample_aspect_ratio", 1.0)
            notes: list[str] = []
            size, fit = frame_geometry(config, item, aspect or DEFAULT_ASPECT, notes)
            geometry.update(size=size, fit=fit, notes=notes)
            for note in notes:
                log.warning("%s", note)
        fit: FrameFit | None = geometry["fit"]
        read = fit.inner if fit is not None else geometry["size"]
        width, height = read if read is not None else (frame.width, frame.height)
        image = _convert(frame, width, height, "rgb24")
        return fit.apply(image[None])[0] if fit is not None else image

    def run(windows: list[np.ndarray]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            return _run_batch(model, windows, config, torch.device(device), precision=settings.precision)

    reader = StreamReader(source, fps, convert, connect_timeout_s=settings.connect_timeout_s,
                          stall_timeout_s=settings.stall_timeout_s)  # fmt: skip
    stop = stop or threading.Event()
    result = LiveRun(source)
    events_log = EventLog(output_dir, fps)
    started = time.monotonic()
    scorer = events = None
    offset = 0
    arrivals: dict[int, float] = {}
    stretch = None
    every = max(1, round(0.2 * fps))  # events are looked for every 0.2 s of stream

    def emit(found: list[dict]) -> None:
        for event in found:
            if event["score"] < thresholds[event["label"]]:
                continue
            frame = event["frame"] + offset
            row = events_log.write({**event, "frame": frame}, arrivals.get(frame))
            result.events += 1
            if row["delay_s"] is not None:
                result.delays_s.append(row["delay_s"])
            if on_event is not None:
                on_event(row)

    def close_stretch() -> None:
        nonlocal scorer, events
        if scorer is not None:
            t = time.perf_counter()
            scorer.finish()
            emit(events.new_events())
            result.model_s += time.perf_counter() - t
            result.early_events += events.early
        scorer = events = None
        arrivals.clear()

    reader.start()
    try:
        model, config, epoch = load_model(folder, device=device)
        carry = None
        while not stop.is_set():
            item, carry = carry, None
            if item is None:
                try:
                    item = reader.queue.get(timeout=0.2)
                except queue.Empty:
                    continue
            if isinstance(item, StreamBreak):
                close_stretch()
                continue
            if isinstance(item, StreamEnd):
                result.ended = item.reason
                close_stretch()
                if item.error:
                    raise DataError(item.reason)
                break
            batch, pending = [item], None
            while True:  # what else waits: run it in one go
                try:
                    more = reader.queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(more, StreamEnd | StreamBreak):
                    pending = more  # handled once this batch is in
                    break
                batch.append(more)
            while batch:
                # Fallen behind: the frames that arrived more than max_lag ago are skipped, as a gap (the frame
                # numbers jump: a new stretch). Looked at before each batch of windows, so a batch's own time
                # cannot let the delay grow.
                late = time.monotonic() - settings.max_lag_s
                if batch[0].arrived < late:
                    dropped = next((i for i, a in enumerate(batch) if a.arrived >= late), len(batch))
                    result.skipped_frames += dropped
                    log.warning("live: more than %.1f s behind the feed; skipped %d frames (%.1f s)",
                                settings.max_lag_s, dropped, dropped / fps)  # fmt: skip
                    batch = batch[dropped:]
                    if not batch:
                        break
                arrival = batch[0]
                if arrival.stretch != stretch or (scorer is not None and arrival.frame != offset + scorer.n):
                    close_stretch()
                    stretch, offset = arrival.stretch, arrival.frame
                    scorer = LiveScorer(run, clip_len, hop, context, settings.batch_size, origin=offset)
                    events = LiveEvents(
                        scorer, classes, post, fps, int(config.get("displacement") or 0), thresholds
                    )
                    result.stretches += 1
                # The frames that follow on in this stretch go in together: their windows run in batches.
                size, most = 1, min(len(batch), settings.batch_size * hop)  # one batch of windows at most
                while (
                    size < most
                    and batch[size].stretch == stretch
                    and batch[size].frame == arrival.frame + size
                ):
                    size += 1
                group, batch = batch[:size], batch[size:]
                for a in group:
                    arrivals[a.frame] = a.arrived
                t = time.perf_counter()
                scorer.push([a.image for a in group])
                result.frames += len(group)
                emit(events.new_events(every))
                result.model_s += time.perf_counter() - t
            if events is not None:
                for frame in [f for f in arrivals if f < offset + events.done - 1]:
                    del arrivals[frame]
            carry = pending  # the feed stopped or ended after these frames: next turn, before anything newer
        else:
            if stop.is_set():  # stopped by the caller: no more frames for this run, so every score is final
                result.ended = "stopped"
                close_stretch()
    except KeyboardInterrupt:
        result.ended = "interrupted (Ctrl-C): the events written are final"
    finally:
        if events is not None:  # interrupted in a stretch
            result.early_events += events.early
        reader.close()
        events_log.close()
        result.gaps = reader.stats.gaps
        result.wall_s = time.monotonic() - started
        summary = result.summary(fps, settings.latency_s, context, hop, margin)
        summary.update(epoch=epoch, notes=geometry.get("notes", []))
        store_json(output_dir / "live_summary.json", summary)
    return summary


def iter_events(path: str | Path) -> Iterator[dict]:
    """The events of an ``events.jsonl``, written so far (a line still being written is left for the next read)."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.endswith("\n") and line.strip():
                yield json.loads(line)
