"""Frame extraction: frames_as_jpg_soccernet_ball.py against the plain ffmpeg CLI on the same videos.

Test videos (made once, cached under bench-out/extract/): 720p and 224p H.264 at 25 fps, about 1.4 Mbit/s at
720p like SoccerNet's files, with textured moving content. Baseline: imageio-ffmpeg's ffmpeg binary doing the same
work, ``ffmpeg -i V -vf fps=25,scale=-2:224:flags=bilinear -q:v Q OUT/%06d.jpg``: the same scaler as ours (swscale's
bilinear) and the JPEG quality Q whose mean file size on the 720p video is closest to ours (both sizes are
printed); ours: the script's ``main`` in this process (``--sample_fps 25``, height 224, quality 90) with ``-j 1`` on
one video and ``-j 2`` on two 720p videos (against one ffmpeg run, so 2x means two videos in the time ffmpeg takes
for one). Each variant runs ``--rounds`` times, interleaved; the best wall time counts (the machine may be shared),
and CPU seconds per frame are shown too. ``python -m benchmarks.bench_extract --seconds 60 --rounds 3`` for steadier
figures.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import numpy as np
from tabulate import tabulate

CACHE = Path("bench-out") / "extract"
SIZES = {"720p": (1280, 720), "224p": (398, 224)}
FPS = 25


def make_video(path: Path, width: int, height: int, seconds: float, seed: int = 0) -> Path:
    """Textured, moving content (scrolling 8x8 blocks and a sweeping bar) as H.264 at 25 fps."""
    import av

    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 216, (height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    base = base.repeat(8, 0).repeat(8, 1)[:height, :width]
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23"}
        for i in range(round(seconds * FPS)):
            img = np.roll(base, 3 * i, axis=1)
            x = (7 * i) % max(1, width - 24)
            img[:, x : x + 24] = 255
            container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        container.mux(stream.encode())
    os.replace(tmp, path)
    return path


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _timed(fn: Callable[[], None]) -> tuple[float, float]:
    cpu, wall = _cpu_s(), time.perf_counter()
    fn()
    return time.perf_counter() - wall, _cpu_s() - cpu


def _fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def ffmpeg_cli(videos: list[Path], out: Path, quality: int = 2) -> None:
    """The baseline: one ffmpeg process per video, all at once (``-q:v quality``, bilinear scaling)."""
    import imageio_ffmpeg

    exe = imageio_ffmpeg.get_ffmpeg_exe()
    processes = []
    for i, video in enumerate(videos):
        folder = _fresh(out / f"ffmpeg{i}")
        command = [exe, "-hide_banner", "-loglevel", "error", "-i", str(video)]
        command += [
            "-vf",
            f"fps={FPS},scale=-2:224:flags=bilinear",
            "-q:v",
            str(quality),
            str(folder / "%06d.jpg"),
        ]
        processes.append(subprocess.Popen(command))
    if any(p.wait() for p in processes):
        raise RuntimeError("ffmpeg failed")


def ours(video_dir: Path, out: Path, workers: int) -> None:
    import frames_as_jpg_soccernet_ball as script

    args = script.get_args([str(video_dir), "-o", str(_fresh(out / "ours")), "--sample_fps", str(FPS)])
    args.num_workers = workers
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        if script.main(args) != 0:
            raise RuntimeError("extraction failed")


def mean_kib(folder: Path) -> float:
    sizes = [p.stat().st_size for p in folder.rglob("*.jpg")]
    return sum(sizes) / max(len(sizes), 1) / 1024


FFMPEG_QUALITIES = (2, 3, 4, 5, 6, 8, 10)


def matching_quality(video_dir: Path, video: Path, out: Path) -> tuple[int, float, dict[int, float]]:
    """(ffmpeg's -q:v whose mean JPEG size is closest to ours, our mean KiB, {q: ffmpeg's mean KiB})."""
    ours(video_dir, out, 1)
    our_kib = mean_kib(out / "ours")
    theirs = {}
    for q in FFMPEG_QUALITIES:
        ffmpeg_cli([video], out, q)
        theirs[q] = mean_kib(out / "ffmpeg0")
    best = min(theirs, key=lambda q: abs(theirs[q] - our_kib))
    return best, our_kib, theirs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each test video (default 20)")
    parser.add_argument("--rounds", type=int, default=2, help="repetitions of each variant; best counts")
    parser.add_argument("--quick", action="store_true", help="1-second videos, one round (a smoke test)")
    args = parser.parse_args(argv if argv is not None else [])
    if args.quick:
        args.seconds, args.rounds = 1.0, 1

    frames = round(args.seconds * FPS)
    folders = {}
    for name, (width, height) in SIZES.items():
        folders[name] = CACHE / f"{name}-{args.seconds:g}s"
        make_video(folders[name] / f"{name}.mp4", width, height, args.seconds)
    two = CACHE / f"2x720p-{args.seconds:g}s"
    for i in range(2):
        make_video(two / f"720p_{i}.mp4", *SIZES["720p"], args.seconds, seed=0)
    out = CACHE / "out"
    q, our_kib, sizes = matching_quality(folders["720p"], folders["720p"] / "720p.mp4", out)
    listed = ", ".join(f"-q:v {k}: {v:.1f}" for k, v in sizes.items())
    print(f"JPEG size per frame (720p -> 224 rows): ours (quality 90) {our_kib:.1f} KiB; ffmpeg {listed} KiB")
    print(f"baseline: ffmpeg -q:v {q} ({sizes[q]:.1f} KiB, the closest to ours), bilinear scaling as ours")
    variants = {
        ("720p", "ffmpeg"): lambda: ffmpeg_cli([folders["720p"] / "720p.mp4"], out, q),
        ("720p", "ours"): lambda: ours(folders["720p"], out, 1),
        ("224p", "ffmpeg"): lambda: ffmpeg_cli([folders["224p"] / "224p.mp4"], out, q),
        ("224p", "ours"): lambda: ours(folders["224p"], out, 1),
        ("2x720p", "ffmpeg"): lambda: ffmpeg_cli(sorted(two.glob("*.mp4")), out, q),
        ("2x720p", "ours"): lambda: ours(two, out, 2),
    }
    best: dict[tuple[str, str], tuple[float, float]] = {}
    for _ in range(args.rounds):
        for key, fn in variants.items():
            wall, cpu = _timed(fn)
            if key not in best or wall < best[key][0]:
                best[key] = (wall, cpu)
    shutil.rmtree(out, ignore_errors=True)
    _report(best, frames)


def _report(best: dict[tuple[str, str], tuple[float, float]], frames: int) -> None:
    rows = []
    ff_single = frames / best[("720p", "ffmpeg")][0]
    for case, n_videos, note in [
        ("720p", 1, "-j 1"),
        ("224p", 1, "-j 1"),
        ("2x720p", 2, "-j 2 vs one ffmpeg"),
        ("2x720p", 2, "-j 2 vs two ffmpeg at once"),
    ]:
        ff_wall, ff_cpu = best[(case, "ffmpeg")]
        our_wall, our_cpu = best[(case, "ours")]
        total = n_videos * frames
        baseline = ff_single if note == "-j 2 vs one ffmpeg" else total / ff_wall
        rows.append(
            [
                case,
                note,
                round(baseline),
                round(total / our_wall),
                f"{total / our_wall / baseline:.2f}x",
                f"{1000 * ff_cpu / total:.2f}",
                f"{1000 * our_cpu / total:.2f}",
            ]
        )
    headers = [
        "videos",
        "ours",
        "ffmpeg frames/s",
        "ours frames/s",
        "ratio",
        "ffmpeg CPU ms/frame",
        "ours CPU ms/frame",
    ]
    print(tabulate(rows, headers=headers))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print(f"{frames} frames per video at {FPS} fps, height 224; {os.cpu_count()} CPUs, load average {load}")


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
