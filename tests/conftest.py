"""Shared pytest fixtures. Add fixtures below; do not rewrite others' sections."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from util.io import store_json


def pytest_configure(config):
    """Under pytest-xdist, each test process gets its share of the cores for torch's (OpenMP) threads, and so do the
    scripts the tests start (they inherit OMP_NUM_THREADS); an explicit OMP_NUM_THREADS wins. The tests' models are
    toys of hundreds of tiny ops, where threads mostly wait for each other: two workers of two threads on a 2-core
    machine made the learning test (test_train.py) take 185 CPU s and 185 s against 58 and 59 with one thread."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers < 1 or "OMP_NUM_THREADS" in os.environ:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = max(1, cores // workers)
    os.environ["OMP_NUM_THREADS"] = str(threads)  # read by torch when it first starts its threads
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


# The longest tests and their CPU seconds here (one thread, as under xdist): under pytest-xdist they head the workers'
# shares, the longest first, each to the share whose heads add up to the least so far.
LONGEST_FIRST = {
    "tests/test_demo.py::test_shrunken_demo_end_to_end_beats_trivial_baselines": 165,
    "tests/test_train.py::test_training_learns_the_visible_cues_of_class_and_team": 55,
    "tests/test_gpu_check.py::test_every_step_runs_on_the_cpu_at_toy_sizes": 50,
    "tests/test_benchmarks.py::test_every_benchmark_runs_in_quick_mode": 45,
}


@pytest.hookimpl(trylast=True)  # after -m / -k have deselected theirs
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist, the tests of ``LONGEST_FIRST`` head the workers' shares. ``--dist worksteal`` gives each
    worker a contiguous share of the collection and later moves tests from the end of a busy worker's queue to an
    idle one: a long test in the middle of a share (the demo's sat behind 180 s of app and benchmark tests on the
    first worker) decides when the run ends. Every worker collects, so every worker reorders, alike. Simulated
    with the durations of a one-process run: 339 s for two workers in file order, 311 s so (617 s in all)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    by_id = {item.nodeid: item for item in items}
    longest = sorted((n for n in LONGEST_FIRST if n in by_id), key=LONGEST_FIRST.get, reverse=True)
    if workers < 2 or not longest:
        return
    heads: list[list[str]] = [[] for _ in range(workers)]
    for name in longest:
        min(heads, key=lambda h: sum(LONGEST_FIRST[n] for n in h)).append(name)
    rest = [item for item in items if item.nodeid not in LONGEST_FIRST]
    ordered, pending = [], len(items)
    # The shares worksteal's first distribution makes: what is left // the workers left, in order.
    for share in range(workers):
        size = pending // (workers - share)
        first = [by_id[n] for n in heads[share]]
        fill = max(0, size - len(first))
        ordered += first + rest[:fill]
        rest = rest[fill:]
        pending -= size
    items[:] = ordered + rest


@pytest.fixture(scope="session", autouse=True)
def _video_index_cache(tmp_path_factory):
    """Video indices (util.video_index) go to this run's temporary folder, never the user's cache; the scripts the
    tests start inherit it."""
    from util.video_index import INDEX_CACHE_ENV

    old = os.environ.get(INDEX_CACHE_ENV)
    os.environ[INDEX_CACHE_ENV] = str(tmp_path_factory.mktemp("video-index-cache"))
    yield
    if old is None:
        os.environ.pop(INDEX_CACHE_ENV, None)
    else:
        os.environ[INDEX_CACHE_ENV] = old


# ---- videos whose frames show their own index (frame extraction, video reading)

INDEX_BITS = 10  # frame index modulo 1024, drawn as 10 black/white vertical stripes (bit 0 leftmost)


def draw_index(index: int, width: int, height: int) -> np.ndarray:
    """An RGB frame showing ``index`` in binary as stripes; survives H.264, resizing and JPEG."""
    img = np.zeros((height, width, 3), np.uint8)
    for bit in range(INDEX_BITS):
        if index >> bit & 1:
            img[:, bit * width // INDEX_BITS : (bit + 1) * width // INDEX_BITS] = 255
    return img


def read_index(img: np.ndarray) -> int:
    """The index drawn by ``draw_index`` in an HxW or HxWx3 image of any size."""
    gray = img.mean(axis=2) if img.ndim == 3 else img
    height, width = gray.shape
    index = 0
    for bit in range(INDEX_BITS):
        x0, x1 = bit * width // INDEX_BITS, (bit + 1) * width // INDEX_BITS
        centre = gray[height // 4 : 3 * height // 4, x0 + (x1 - x0) // 4 : x1 - (x1 - x0) // 4]
        if centre.mean() > 128:
            index |= 1 << bit
    return index


def write_index_video(
    path: Path,
    fps: float = 25.0,
    seconds: float = 2.0,
    times_s: Sequence[float] | None = None,
    size: tuple[int, int] = (160, 90),
    options: dict[str, str] | None = None,
) -> list[float]:
    """Write an H.264 video (.mp4 or .mkv) whose frame i shows i; returns the frames' times in seconds.

    Constant rate ``fps`` for ``seconds``, or exactly ``times_s`` (variable frame rate, millisecond precision).
    ``options`` are x264's (default: ultrafast, so no B-frames, one keyframe every 250 frames).
    """
    import av

    rate = Fraction(fps).limit_denominator(1001)
    if times_s is None:
        times_s = [i / rate for i in range(round(seconds * fps))]
        time_base = 1 / rate
    else:
        time_base = Fraction(1, 1000)
    width, height = size
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.time_base = time_base
        stream.options = options or {"preset": "ultrafast", "crf": "18"}
        for i, t in enumerate(times_s):
            frame = av.VideoFrame.from_ndarray(draw_index(i, width, height), format="rgb24")
            frame.pts, frame.time_base = round(Fraction(t) / time_base), time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return [float(t) for t in times_s]


@pytest.fixture
def make_index_video() -> Callable[..., list[float]]:
    """``make_index_video(path, fps=25, seconds=2, times_s=None, size=(160, 90)) -> frame times``."""
    return write_index_video


# ---- a tiny untrained model directory and a short synthetic match (the app, inference and one-truth tests)


def write_tiny_model(model_dir: Path, sharpen: float = 1.0, **config_overrides) -> Path:
    """A real (untrained) model directory: config.json + checkpoint_000.pt, small and fast on a CPU, with a
    team head. ``sharpen`` scales the classifier (an untrained one gives near-uniform scores)."""
    import torch

    from model.common import build_model, default_config, save_checkpoint, save_config

    torch.manual_seed(0)
    config = default_config(
        **{
            "pretrained": False,
            "clip_len": 8,
            "frame_height": 64,
            "frame_width": 112,
            "source_width": 114,
            "source_height": 64,
            "fps": 5.0,
            "team": True,
            **config_overrides,
        }
    )
    model = build_model(config)
    if sharpen != 1.0:
        with torch.no_grad():
            model.head.fc.weight.mul_(sharpen)
    model_dir.mkdir(parents=True, exist_ok=True)
    save_config(model_dir, config)
    save_checkpoint(model_dir, 0, model)
    return model_dir


def render_match(root: Path, seconds: float = 4) -> Path:
    """A short synthetic match (398x224, 25 fps, H.264 .mp4)."""
    from synthetic.library import render_library

    render_library(root, games=1, seconds=seconds)
    (video,) = root.rglob("224p.mp4")
    return video


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """``write_tiny_model`` with its defaults, written once per test run (read-only: copy it to change it)."""
    return write_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def match_video(tmp_path_factory) -> Path:
    """A 4-second synthetic match (``render_match``), rendered once per test run (read-only)."""
    return render_match(tmp_path_factory.mktemp("match"))


@pytest.fixture(scope="session")
def match_video_6s(tmp_path_factory) -> Path:
    """A 6-second synthetic match, rendered once per test run (read-only)."""
    return render_match(tmp_path_factory.mktemp("match-6s"), seconds=6)


def make_app(model_dir: Path, jobs_dir: Path, **config):
    """The Flask app on ``model_dir`` with its jobs under ``jobs_dir`` (call ``.extensions["spot_jobs"].shutdown()``
    when done)."""
    from app.app import create_app

    return create_app({"MODEL_DIR": model_dir, "JOBS_DIR": jobs_dir, "TESTING": True, **config})


# ---- reference definitions the tests check the library against


def sample_times(source_times_s: Sequence[float], sample_fps: float, end_s: float) -> list[int]:
    """Index of the source frame each output frame comes from (the sampler on a list of timestamps)."""
    from util.video import NearestFrameSampler

    sampler = NearestFrameSampler(sample_fps)
    picks = []
    for i, t in enumerate(source_times_s):
        picks += sampler.push(t, i)
    picks += sampler.finish(end_s)
    return [i for _, i in picks]


def window_starts(num_frames: int, clip_len: int, stride: int) -> list[int]:
    """Starts of windows of ``clip_len`` every ``stride`` frames covering ``[0, num_frames)``; the last window is
    aligned to the end of the video (a video shorter than a clip gets one window at 0, padded)."""
    if num_frames <= clip_len:
        return [0]
    starts = list(range(0, num_frames - clip_len + 1, stride))
    if starts[-1] + clip_len < num_frames:
        starts.append(num_frames - clip_len)
    return starts


# ---- toy libraries of flat JPEG frames with parsed labels (dataset and training tests)

HEIGHT, WIDTH = 64, 112
CLASSES = ["PASS", "DRIVE"]  # the toy libraries' classes


def frame_value(frame: int) -> int:
    """Grey level of frame ``frame`` in the fixtures (flat images survive JPEG almost exactly)."""
    return 20 + (frame * 5) % 200


def write_video_frames(
    folder: Path, num_frames: int, fps: float = 25.0, draw=None, size: tuple[int, int] = (WIDTH, HEIGHT)
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(num_frames):
        image = np.full((size[1], size[0], 3), frame_value(i), np.uint8)
        if draw is not None:
            draw(image, i)
        cv2.imwrite(str(folder / f"{i:06d}.jpg"), image)
    (folder / "fps.txt").write_text(f"{fps}\n")


# x264 settings of the fixtures' video files: B-frames and a keyframe every 10 frames, so reading a clip seeks.
SEEKING_X264 = {
    "preset": "veryfast",
    "crf": "12",
    "x264-params": "keyint=10:min-keyint=10:bframes=3:scenecut=0",
}


def write_video_file(
    path: Path, num_frames: int, fps: float = 25.0, draw=None, size: tuple[int, int] = (WIDTH, HEIGHT)
) -> None:
    """The frames ``write_video_frames`` writes, as an H.264 video file (``SEEKING_X264``) at ``fps``."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.options = SEEKING_X264
        for i in range(num_frames):
            image = np.full((size[1], size[0], 3), frame_value(i), np.uint8)
            if draw is not None:
                draw(image, i)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def make_library(
    root: Path,
    splits: dict[str, list[dict]],
    fps: float = 25.0,
    draw=None,
    size: tuple[int, int] = (WIDTH, HEIGHT),
    as_video: Sequence[str] = (),
) -> tuple[Path, Path]:
    """A frame directory and a parsed-label folder (DESIGN.md formats) for ``splits``: {split: [video entry]}.

    ``draw(image, frame, video)`` may paint on each frame (BGR, as written). The videos of ``as_video`` (ids) are
    written as files of a library in the frame directory (``<id>/224p.mp4``) instead of frame folders, as step 2
    parses them against the library (their entries name the file)."""
    frame_dir, data_dir = root / "frames", root / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "class.txt").write_text("\n".join(CLASSES) + "\n")
    for split, videos in splits.items():
        for v in videos:
            v.setdefault("fps", fps)
            v.setdefault("width", size[0])
            v.setdefault("height", size[1])
            paint = None if draw is None else (lambda image, i, v=v: draw(image, i, v))
            if v["video"] in as_video:
                v["video_file"] = f"{v['video']}/224p.mp4"
                write_video_file(frame_dir / v["video_file"], v["num_frames"], fps, paint, size)
            else:
                write_video_frames(frame_dir / v["video"], v["num_frames"], fps, paint, size)
        store_json(data_dir / f"{split}.json", videos)
    return frame_dir, data_dir


def event(frame: int, label: str = "PASS", team: str = "left") -> dict:
    return {"frame": frame, "label": label, "team": team, "visibility": "visible"}


# ---- a SoccerNet-v2-style synthetic library (v2 parsing and the v2 library's tests)


@pytest.fixture(scope="session")
def v2_library(tmp_path_factory) -> tuple[Path, dict[str, list[str]]]:
    """``(root, splits)`` of a synthetic SoccerNet-v2-style library (``label_format="v2"``: Labels-v2.json, two
    games in halves of 8 s at 25 fps, seed 0), rendered once per test run (read-only)."""
    from synthetic.library import render_library

    root = tmp_path_factory.mktemp("syn-v2")
    return root, render_library(root, games=2, seconds=8, seed=0, label_format="v2")


# ---- frozen features (extract_features.py; train_e2e.py on a feature folder)


def feature_library(root: Path) -> tuple[Path, Path]:
    """A toy library for feature tests (frame dir, data dir): train a (40 frames), b (24), val c (24), test d (20)
    at 25 fps, 112x64 flat grey frames, with PASS / DRIVE events of both teams."""

    def video(name: str, n: int, events: list[dict]) -> dict:
        return {"video": name, "num_frames": n, "events": events}

    splits = {
        "train": [
            video("lg/s/a", 40, [event(10), event(25, "DRIVE", "right")]),
            video("lg/s/b", 24, [event(5, "DRIVE"), event(16, "PASS", "right")]),
        ],
        "val": [video("lg/s/c", 24, [event(12, "PASS", "right"), event(4, "DRIVE")])],
        "test": [video("lg/s/d", 20, [event(7, "DRIVE")])],
    }
    return make_library(root, splits)


def feature_train_argv(data_dir: Path, feature_dir: Path, save_dir: Path, *extra: str) -> list[str]:
    """train_e2e.py flags of a few-second run on a feature folder (GRU head, clips of 8, 3 epochs, CPU)."""
    return [
        str(data_dir), str(feature_dir), "-t", "gru", "-s", str(save_dir), "--clip_len", "8", "--batch_size", "2",
        "--num_epochs", "3", "--warm_up_epochs", "1", "--epoch_num_frames", "32", "--start_val_epoch", "1",
        "--device", "cpu", "-j", "0", *extra,
    ]  # fmt: skip


# ---- live feeds (the web app's live tests: test_app_live.py, test_app_live_browser.py)


def free_udp_port() -> int:
    """A loopback UDP port nothing listens on now."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def live_model_dir(tmp_path_factory) -> Path:
    """``write_tiny_model`` with a sharpened classifier: peaked scores, so a few seconds of feed give events."""
    return write_tiny_model(tmp_path_factory.mktemp("live-model"), sharpen=30.0)


def keyframes_every_half_second(video: Path, out: Path, crf: int = 23) -> Path:
    """``video`` encoded again with a keyframe every half second (12 frames at 25 fps): a reader that joins a feed
    late, or again after a drop, decodes it from the next keyframe (the library's videos have one keyframe)."""
    import av

    with av.open(str(video)) as source, av.open(str(out), "w") as sink:
        stream = sink.add_stream("libx264", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = 398, 224, "yuv420p"
        stream.options = {
            "preset": "veryfast",
            "crf": str(crf),
            "x264-params": "keyint=12:min-keyint=12:scenecut=0",
        }
        for frame in source.decode(video=0):
            rgb = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
            sink.mux(stream.encode(rgb))
        sink.mux(stream.encode())
    return out


@pytest.fixture(scope="session")
def live_feed_video(tmp_path_factory) -> Path:
    """A 10-second synthetic match with a keyframe every half second."""
    root = tmp_path_factory.mktemp("live-feed")
    return keyframes_every_half_second(render_match(root / "match", seconds=10), root / "feed.mp4")


def send_feed(video: Path, url: str, stop: threading.Event) -> threading.Thread:
    """A thread sending ``video`` to ``url`` in real time (``util.live_send``), again and again until ``stop``."""
    from util.live_send import send_video

    def loop() -> None:
        while not stop.is_set():
            send_video(video, url, stop=stop)

    thread = threading.Thread(target=loop, name="live-feed", daemon=True)
    thread.start()
    return thread
