"""util.video_stretches: a video decoded by stretches between keyframes on several threads gives the sequential
reader's frames exactly, or falls back to it."""

from __future__ import annotations

import hashlib
import threading
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import util.video_stretches as stretches
from tests.conftest import read_index, write_index_video
from util.extract import extract_video
from util.video import VideoReader

NTSC = Fraction(30000, 1001)
# B-frames and a keyframe every 10 frames: stretches of a few keyframes each, and frames reordered at every cut.
X264 = {"preset": "veryfast", "crf": "20", "x264-params": "keyint=10:min-keyint=10:bframes=3:scenecut=0"}
OPEN_GOP = {**X264, "x264-params": X264["x264-params"] + ":open-gop=1"}
SIZE = (64, 36)


@pytest.fixture(autouse=True)
def short_stretches(monkeypatch):
    """Stretches of a second or more, so a 6-second video is cut into several."""
    monkeypatch.setattr(stretches, "MIN_STRETCH_S", 1.0)


def _digest(k: int, image) -> tuple[int, str]:
    arrays = image if isinstance(image, tuple) else (image,)
    digest = hashlib.sha1(b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)).hexdigest()
    return read_index(arrays[0] if arrays[0].ndim == 3 else np.stack([arrays[0]] * 3, -1)), digest


def _reader(video: Path, sample_fps: float, pixel_format: str = "yuvj420p") -> VideoReader:
    return VideoReader(video, sample_fps, height=SIZE[1], pixel_format=pixel_format)


def _sequential(video: Path, sample_fps: float, pixel_format: str = "yuvj420p") -> tuple[dict, tuple]:
    reader = _reader(video, sample_fps, pixel_format)
    frames = dict(reader.frames(_digest))
    return frames, (reader.num_frames, reader.decoded_frames, reader.duration_s)


def _by_stretches(video: Path, sample_fps: float, threads: int = 3, pixel_format: str = "yuvj420p"):
    reader = _reader(video, sample_fps, pixel_format)
    seen = []
    frames = {}
    for k, value in stretches.decode_unordered(reader, _digest, threads):
        assert k not in frames, f"frame {k} yielded twice"
        frames[k] = value
        seen.append(k)
    return frames, (reader.num_frames, reader.decoded_frames, reader.duration_s), seen


def _no_fallback(monkeypatch):
    def refuse(self, fn=None):
        raise AssertionError("fell back to the sequential reader")

    monkeypatch.setattr(VideoReader, "frames", refuse)


@pytest.mark.parametrize(
    ("source_fps", "sample_fps", "ext", "options"),
    [
        (25, 25, ".mp4", X264),
        (25, 12.5, ".mkv", X264),
        (NTSC, 25, ".mp4", X264),
        (50, 25, ".mkv", X264),
        (25, 2, ".mp4", X264),
        (25, 29.97, ".mp4", X264),
        (25, 25, ".mp4", OPEN_GOP),
        (25, 25, ".mkv", OPEN_GOP),
    ],
)
def test_stretches_give_the_sequential_readers_frames(
    tmp_path, monkeypatch, source_fps, sample_fps, ext, options
):
    video = tmp_path / f"v{ext}"
    write_index_video(video, fps=source_fps, seconds=6.0, size=SIZE, options=options)
    expected, expected_counts = _sequential(video, sample_fps)
    cut = stretches.plan(_reader(video, sample_fps), 3)
    assert cut is not None and len(cut.cuts) >= 3
    _no_fallback(monkeypatch)
    frames, counts, _ = _by_stretches(video, sample_fps)
    assert frames == expected
    assert counts == pytest.approx(expected_counts)


def test_variable_frame_rate_and_a_late_first_frame(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.uniform(0.02, 0.06, 160)) + 1.5  # 25 fps on average, from 1.5 s
    video = tmp_path / "vfr.mkv"
    write_index_video(video, times_s=[round(t, 3) for t in times], size=SIZE, options=X264)
    expected, expected_counts = _sequential(video, 25.0, "bgr24")
    _no_fallback(monkeypatch)
    frames, counts, _ = _by_stretches(video, 25.0, pixel_format="bgr24")
    assert frames == expected
    assert counts == pytest.approx(expected_counts)


def test_frames_come_from_several_threads_longest_stretch_first(tmp_path, monkeypatch):
    video = tmp_path / "v.mp4"
    write_index_video(video, fps=25, seconds=6.0, size=SIZE, options=X264)
    threads = set()

    def record(k, image):
        threads.add(threading.current_thread().name)
        return _digest(k, image)

    reader = _reader(video, 25.0)
    assert dict(stretches.decode_unordered(reader, record, 2)) == _sequential(video, 25.0)[0]
    assert threads == {"video-stretch-0", "video-stretch-1"}
    cut = stretches.plan(_reader(video, 25.0), 2)
    state = stretches._Stretches(_reader(video, 25.0), cut, record)
    bounds = [cut.first, *cut.cuts, cut.end]
    lengths = [bounds[j + 1] - bounds[j] for j in state.order]
    assert lengths == sorted(lengths, reverse=True)


def test_a_cut_that_is_no_frame_falls_back_without_yielding_a_frame_twice(tmp_path, monkeypatch):
    video = tmp_path / "v.mp4"
    write_index_video(video, fps=25, seconds=6.0, size=SIZE, options=X264)
    expected, expected_counts = _sequential(video, 25.0)
    real = stretches._keyframe_at
    monkeypatch.setattr(stretches, "_keyframe_at", lambda *a: real(*a) + 1)  # between two frames' pts
    fell_back = []
    frames_of = VideoReader.frames

    def frames(self, fn=None):
        fell_back.append(True)
        return frames_of(self, fn)

    monkeypatch.setattr(VideoReader, "frames", frames)
    got, counts, seen = _by_stretches(video, 25.0)
    assert fell_back and got == expected and counts == pytest.approx(expected_counts)
    assert len(seen) == len(set(seen)) == len(expected)


def test_a_video_too_short_to_cut_is_read_sequentially(tmp_path):
    video = tmp_path / "short.mp4"
    write_index_video(video, fps=25, seconds=1.5, size=SIZE, options=X264)
    assert stretches.plan(_reader(video, 25.0), 2) is None
    assert stretches.plan(_reader(video, 0.0), 2) is None  # every frame kept: numbered as decoded
    assert stretches.plan(_reader(tmp_path / "short.mp4", 25.0), 1) is None
    frames, counts, _ = _by_stretches(video, 25.0)
    assert (frames, counts) == _sequential(video, 25.0)


def _stretch_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("video-stretch")]


def test_an_error_in_fn_is_raised_and_no_thread_is_left(tmp_path):
    video = tmp_path / "v.mp4"
    write_index_video(video, fps=25, seconds=6.0, size=SIZE, options=X264)

    def write(k, image):
        if k == 40:
            raise OSError(28, "No space left on device")
        return k

    with pytest.raises(OSError, match="No space left"):
        list(stretches.decode_unordered(_reader(video, 25.0), write, 3))
    assert _stretch_threads() == []


def test_a_consumer_that_stops_early_leaves_no_thread(tmp_path):
    video = tmp_path / "v.mp4"
    write_index_video(video, fps=25, seconds=6.0, size=SIZE, options=X264)
    frames = stretches.decode_unordered(_reader(video, 25.0), lambda k, image: k, 3)
    assert next(frames) is not None
    frames.close()
    assert _stretch_threads() == []


def test_step_1_writes_the_same_jpegs_by_stretches(tmp_path, monkeypatch):
    video = tmp_path / "v.mkv"
    write_index_video(video, fps=NTSC, seconds=6.0, size=(160, 90), options=OPEN_GOP)
    one = extract_video(video, tmp_path / "one", 25.0, 90, decode_threads=1)  # one thread: no stretches
    _no_fallback(monkeypatch)
    many = extract_video(video, tmp_path / "many", 25.0, 90, decode_threads=3)
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "many").iterdir())
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "many" / name).read_bytes(), name
    assert (one.num_frames, one.decoded_frames, one.fps) == (many.num_frames, many.decoded_frames, many.fps)
