"""Step 1: frame extraction (util/video.py, frames_as_jpg_soccernet_ball.py) and library discovery."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

import frames_as_jpg_soccernet_ball as script
from tests.conftest import read_index, sample_times, write_index_video
from util.extract import extract_video
from util.frame_folder import FPS_FILE, partial_dir, read_fps
from util.io import DataError
from util.soccernet import VideoEntry, find_videos, parse_shard, take_shard
from util.video import VideoReader, output_size, probe_video, read_frames

REPO = Path(__file__).resolve().parents[1]
NTSC = Fraction(30000, 1001)


def nearest(times_s: list[float], target_s: float) -> int:
    """Brute force: the source frame nearest to target_s (the earlier one on a tie)."""
    distances = [abs(t - target_s) for t in times_s]
    return distances.index(min(distances))


def frame_sources(frame_dir: Path) -> list[int]:
    """Which source frame each JPEG of a frame folder shows, in order; checks the names are 000000.jpg ... ."""
    names = sorted(p.name for p in frame_dir.glob("*.jpg"))
    assert names == [f"{k:06d}.jpg" for k in range(len(names))]
    return [read_index(cv2.imread(str(frame_dir / name))) for name in names]


def run_script(argv: list[str]) -> int:
    return script.main(script.get_args(argv))


# ---- resampling and sizes (pure)


def test_output_size_keeps_aspect_with_even_width():
    assert output_size(1280, 720, 224) == (398, 224)
    assert output_size(398, 224, 224) == (398, 224)
    assert output_size(1920, 1080, 448) == (796, 448)
    assert output_size(720, 576, 224, sar=16 / 11) == (408, 224)  # anamorphic PAL: display aspect
    assert output_size(1280, 720) == (1280, 720)
    assert output_size(1280, 720, 100, 200) == (200, 100)


@pytest.mark.parametrize(
    ("source_fps", "sample_fps"), [(25, 25), (25, 2), (NTSC, 25), (50, 25), (10, 25), (24, 30)]
)
def test_sampler_picks_the_nearest_source_frame(source_fps, sample_fps):
    times = [float(i / Fraction(source_fps)) for i in range(97)]
    end = float(97 / Fraction(source_fps))
    picks = sample_times(times, sample_fps, end)
    assert abs(len(picks) - round(end * sample_fps)) <= 1
    assert picks == [nearest(times, k / sample_fps) for k in range(len(picks))]


def test_sampler_50_to_25_takes_even_frames_and_keep_all_keeps_every_frame():
    times = [i / 50 for i in range(100)]
    assert sample_times(times, 25, 2.0) == list(range(0, 100, 2))
    assert sample_times(times, 0, 2.0) == list(range(100))


def test_sampler_on_variable_frame_rate():
    rng = np.random.default_rng(0)
    times = list(np.cumsum(rng.uniform(0.005, 0.09, 300)) + 7.0)  # starts at 7 s: times count from frame 0
    picks = sample_times(times, 25, times[-1] + 0.04)
    rel = [t - times[0] for t in times]
    assert picks == [nearest(rel, k / 25) for k in range(len(picks))]
    assert abs(len(picks) - round((rel[-1] + 0.04) * 25)) <= 1


# ---- reading and extracting real videos


@pytest.mark.parametrize(
    ("source_fps", "sample_fps", "ext"),
    [(25, 2, ".mp4"), (25, 25, ".mkv"), (NTSC, 25, ".mp4"), (50, 25, ".mkv"), (25, 0, ".mp4")],
)
def test_extract_resamples_by_timestamp(tmp_path, source_fps, sample_fps, ext):
    video = tmp_path / f"v{ext}"
    times = write_index_video(video, fps=source_fps, seconds=3)
    duration = float(len(times) / Fraction(source_fps))
    reader = extract_video(video, tmp_path / "frames", sample_fps=sample_fps, height=90)
    sources = frame_sources(tmp_path / "frames")
    if sample_fps == 0:
        assert sources == list(range(len(times)))
        assert read_fps(tmp_path / "frames") == pytest.approx(float(source_fps))
    else:
        assert abs(len(sources) - round(duration * sample_fps)) <= 1
        assert sources == [nearest(times, k / sample_fps) for k in range(len(sources))]
        assert read_fps(tmp_path / "frames") == sample_fps
    assert reader.num_frames == len(sources)
    assert cv2.imread(str(tmp_path / "frames" / "000000.jpg")).shape == (90, 160, 3)


def _jpeg_sampling(path: Path) -> list[int]:
    """The (horizontal << 4 | vertical) sampling factor of each component, from the JPEG's SOF0 header."""
    data = path.read_bytes()
    sof = data.index(b"\xff\xc0")
    components = data[sof + 9]
    return [data[sof + 10 + 3 * i + 1] for i in range(components)]


@pytest.mark.parametrize(("chroma", "factors"), [("420", [0x22, 0x11, 0x11]), ("444", [0x11, 0x11, 0x11])])
def test_chroma_subsampling_of_the_jpegs(tmp_path, chroma, factors):
    video = tmp_path / "v.mp4"
    write_index_video(video, fps=25, seconds=1)
    assert run_script([str(video), "-o", str(tmp_path / "f"), "--sample_fps", "5", "--chroma", chroma]) == 0
    (first,) = sorted((tmp_path / "f").rglob("000000.jpg"))
    assert _jpeg_sampling(first) == factors


def _colour_bars(path: Path, matrix: str, frames: int = 5, size: tuple[int, int] = (160, 90)) -> np.ndarray:
    """Saturated colour bars as H.264 in the YUV of ``matrix`` (bt709 or bt470bg, tagged); returns the RGB."""
    import av

    width, height = size
    colours = [(30, 200, 40), (220, 30, 30), (40, 60, 210), (240, 220, 40), (128, 128, 128)]
    rgb = np.zeros((height, width, 3), np.uint8)
    for i, colour in enumerate(colours):
        rgb[:, i * width // len(colours) : (i + 1) * width // len(colours)] = colour
    space = {"bt709": "ITU709", "bt470bg": "ITU601"}[matrix]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "10", "x264-params": f"colormatrix={matrix}"}
        for _ in range(frames):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
                format="yuv420p", dst_colorspace=space
            )
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return rgb


@pytest.mark.parametrize("matrix", ["bt709", "bt470bg"])
def test_4_2_0_jpegs_compress_the_resized_yuv_planes_in_jpeg_colours(tmp_path, matrix):
    import simplejpeg

    video = tmp_path / "bars.mp4"
    rgb = _colour_bars(video, matrix)
    extract_video(video, tmp_path / "f", sample_fps=25, height=64)
    jpegs = sorted((tmp_path / "f").glob("*.jpg"))
    assert len(jpegs) == 5 and _jpeg_sampling(jpegs[0]) == [0x22, 0x11, 0x11]
    # Step 1's JPEG is the reader's resized YUV planes (swscale, as for BGR), compressed: no RGB on the way.
    planes = [p for _, p in VideoReader(video, 25, height=64, pixel_format="yuvj420p")]
    assert [plane.shape for plane in planes[0]] == [(64, 114), (32, 57), (32, 57)]
    for path, (y, cb, cr) in zip(jpegs, planes, strict=True):
        assert path.read_bytes() == simplejpeg.encode_jpeg_yuv_planes(y, cb, cr, quality=90)
    # In JPEG's colours (BT.601, full range) whatever the source's matrix: its pixels are the reader's to
    # JPEG's error (most of it at the bars' edges), and the bars keep their colour (a BT.709 source read as
    # BT.601, as the ffmpeg CLI writes it, would be 30 levels off in green).
    reader = next(iter(read_frames(video, 25, height=64)))[1].astype(int)
    decoded = cv2.cvtColor(cv2.imread(str(jpegs[0])), cv2.COLOR_BGR2RGB).astype(int)
    assert np.abs(decoded - reader).mean() < 5
    inner = np.concatenate([np.arange(i * 114 // 5 + 4, (i + 1) * 114 // 5 - 4) for i in range(5)])
    assert np.abs(decoded[8:-8, inner] - reader[8:-8, inner]).mean() < 2.5
    bars = cv2.resize(rgb, (114, 64), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(decoded[8:-8, inner] - bars[8:-8, inner]).max() <= 8


def test_conversion_in_the_decoding_thread_gives_the_pools_frames(tmp_path, make_index_video):
    video = tmp_path / "v.mp4"
    make_index_video(video, fps=50, seconds=1)
    for pixel_format in ("rgb24", "yuvj420p"):
        pooled = [
            (k, np.copy(a) if pixel_format == "rgb24" else [np.copy(p) for p in a])
            for k, a in VideoReader(video, 25, height=45, pixel_format=pixel_format, threads=2)
        ]
        inline = [
            (k, np.copy(a) if pixel_format == "rgb24" else [np.copy(p) for p in a])
            for k, a in VideoReader(video, 25, height=45, pixel_format=pixel_format, threads=0)
        ]
        assert [k for k, _ in inline] == [k for k, _ in pooled] == list(range(25))
        for (_, a), (_, b) in zip(inline, pooled, strict=True):
            np.testing.assert_array_equal(
                np.concatenate([np.ravel(x) for x in a]), np.concatenate([np.ravel(x) for x in b])
            )
    reader = VideoReader(video, 25, max_frames=7, threads=0)
    assert [k for k, _ in reader] == list(range(7)) and reader.num_frames == 7


def test_extract_variable_frame_rate(tmp_path, make_index_video):
    rng = np.random.default_rng(1)
    times = np.round(np.cumsum(rng.uniform(0.01, 0.08, 120)), 3)
    times = list(times - times[0])
    video = tmp_path / "vfr.mkv"
    make_index_video(video, times_s=times)
    extract_video(video, tmp_path / "frames", sample_fps=25, height=90)
    sources = frame_sources(tmp_path / "frames")
    assert sources == [nearest(times, k / 25) for k in range(len(sources))]
    assert abs(len(sources) - round(times[-1] * 25)) <= 2  # the last frame's own duration is a guess
    assert read_fps(tmp_path / "frames") == 25.0


def test_video_shorter_than_one_second(tmp_path, make_index_video):
    video = tmp_path / "short.mp4"
    make_index_video(video, fps=25, seconds=0.4)
    extract_video(video, tmp_path / "at2", sample_fps=2, height=90)
    extract_video(video, tmp_path / "at25", sample_fps=25, height=90)
    assert frame_sources(tmp_path / "at2") == [0]
    assert frame_sources(tmp_path / "at25") == list(range(10))


def test_read_frames_gives_rgb_arrays_at_the_asked_rate_and_size(tmp_path, make_index_video):
    video = tmp_path / "v.mp4"
    times = make_index_video(video, fps=50, seconds=2)
    frames = list(read_frames(video, sample_fps=25, height=45))
    assert [k for k, _ in frames] == list(range(50))
    assert all(a.shape == (45, 80, 3) and a.dtype == np.uint8 for _, a in frames)
    assert [read_index(a) for _, a in frames] == [nearest(times, k / 25) for k in range(50)]
    assert len(list(read_frames(video, sample_fps=25, max_frames=7))) == 7
    reader = VideoReader(video, 25, max_frames=7)
    assert [k for k, _ in reader] == list(range(7)) and reader.num_frames == 7
    reader = VideoReader(video, 0)
    assert sum(1 for _ in reader) == 100 and reader.fps == 50.0


def test_read_frames_channel_order(tmp_path):
    import av

    video = tmp_path / "red.mp4"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 36, "yuv420p"
        red = np.zeros((36, 64, 3), np.uint8)
        red[..., 0] = 220
        for _ in range(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(red, format="rgb24")))
        container.mux(stream.encode())
    _, rgb = next(iter(read_frames(video)))
    _, bgr = next(iter(read_frames(video, pixel_format="bgr24")))
    assert rgb[..., 0].mean() > 180 and rgb[..., 2].mean() < 40
    assert bgr[..., 2].mean() > 180


def test_probe_video(tmp_path, make_index_video):
    video = tmp_path / "v.mp4"
    make_index_video(video, fps=NTSC, seconds=2)
    info = probe_video(video)
    assert info.fps == pytest.approx(29.97, abs=0.01)
    assert info.duration_s == pytest.approx(2.0, abs=0.05)
    assert (info.width, info.height, info.num_frames, info.has_audio) == (160, 90, 60, False)


# ---- bad inputs


def _bad_videos(folder: Path, good: Path) -> dict[str, str]:
    """name -> the reason expected in its error message."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "text.mkv").write_text("this is not a video\n")
    (folder / "noise.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    data = good.read_bytes()
    (folder / "truncated.mkv").write_bytes(data[: len(data) // 3])
    return {
        "empty": "empty file",
        "text": "not a readable video",
        "noise": "not a readable video",
        "truncated": "truncated",
    }


def test_bad_files_raise_data_error_naming_the_file(tmp_path, make_index_video):
    make_index_video(tmp_path / "good.mkv", fps=25, seconds=8)
    for name, reason in _bad_videos(tmp_path / "bad", tmp_path / "good.mkv").items():
        path = next((tmp_path / "bad").glob(f"{name}.*"))
        with pytest.raises(DataError, match=reason) as error:
            extract_video(path, tmp_path / "frames" / name, sample_fps=2, height=90)
        assert str(path) in str(error.value)
        assert not (tmp_path / "frames" / name).exists()
        assert not partial_dir(tmp_path / "frames" / name).exists()
    with pytest.raises(DataError, match="not found"):
        probe_video(tmp_path / "missing.mp4")


def test_script_reports_bad_videos_and_finishes_the_others(tmp_path, make_index_video, capsys):
    lib = tmp_path / "lib"
    make_index_video(lib / "good.mkv", fps=25, seconds=8)
    bad = _bad_videos(lib, lib / "good.mkv")
    assert run_script([str(lib), "-o", str(tmp_path / "frames"), "--height", "90", "-j", "1"]) == 1
    assert len(frame_sources(tmp_path / "frames" / "good")) == 200  # 8 s at the default 25 fps
    captured = capsys.readouterr()
    assert f"{len(bad)} of {len(bad) + 1} videos failed" in captured.err
    for name, reason in bad.items():
        assert f"{name}: " in captured.err and reason in captured.err
        assert not (tmp_path / "frames" / name).exists()
    assert "failed" in captured.out and "extracted" in captured.out


# ---- libraries, resume, shards


def _library(root: Path, make) -> dict[str, Path]:
    """Both layouts: one video per game (224p + 720p) and halves (.mkv); returns video id -> expected file."""
    game = root / "england_efl" / "2019-2020" / "2019-10-01 - A - B"
    halves = root / "england_efl" / "2019-2020" / "2019-10-02 - C - D"
    make(game / "224p.mp4", fps=25, seconds=1)
    make(game / "720p.mp4", fps=25, seconds=1.2, size=(256, 144))
    make(halves / "1_224p.mkv", fps=25, seconds=1)
    make(halves / "2_224p.mkv", fps=25, seconds=1.4)
    make(halves / "2_720p.mkv", fps=25, seconds=1, size=(256, 144))
    (game / "Labels-ball.json").write_text("{}")
    return {
        "england_efl/2019-2020/2019-10-01 - A - B": game / "224p.mp4",
        "england_efl/2019-2020/2019-10-02 - C - D/1": halves / "1_224p.mkv",
        "england_efl/2019-2020/2019-10-02 - C - D/2": halves / "2_224p.mkv",
    }


def test_find_videos_both_layouts(tmp_path):
    root = tmp_path / "lib"
    for rel in [
        "a/s/g1/224p.mp4",
        "a/s/g1/720p.mp4",
        "a/s/g2/1_720p.mkv",
        "a/s/g2/2_224p.mkv",
        "a/s/g2/2_720p.mkv",
    ]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    (root / "a/s/g1/Labels-ball.json").write_text("{}")
    (root / ".hidden").mkdir()
    (root / ".hidden/224p.mp4").write_bytes(b"x")
    assert find_videos(root) == [
        VideoEntry("a/s/g1", root / "a/s/g1/224p.mp4"),
        VideoEntry("a/s/g2/1", root / "a/s/g2/1_720p.mkv", 1),  # only 720p exists for half 1
        VideoEntry("a/s/g2/2", root / "a/s/g2/2_224p.mkv", 2),
    ]
    assert [e.path.name for e in find_videos(root, "720p")] == ["720p.mp4", "1_720p.mkv", "2_720p.mkv"]
    # A game folder itself, a single file, a flat folder.
    assert [e.video_id for e in find_videos(root / "a/s/g2")] == ["g2/1", "g2/2"]
    assert find_videos(root / "a/s/g1/720p.mp4") == [VideoEntry("720p", root / "a/s/g1/720p.mp4")]
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in ["match one.mp4", "b.MKV", "notes.txt"]:
        (flat / name).write_bytes(b"x")
    assert [e.video_id for e in find_videos(flat)] == ["b", "match one"]


def test_find_videos_errors(tmp_path):
    with pytest.raises(DataError, match="no such"):
        find_videos(tmp_path / "missing")
    with pytest.raises(DataError, match="no videos found"):
        find_videos(tmp_path)
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "a.mkv").write_bytes(b"x")
    with pytest.raises(DataError, match="'a'"):
        find_videos(tmp_path)


def test_script_extracts_both_layouts_and_skips_finished_videos(tmp_path, make_index_video, capsys):
    expected = _library(tmp_path / "lib", make_index_video)
    out = tmp_path / "frames"
    argv = [str(tmp_path / "lib"), "-o", str(out), "--sample_fps", "25", "--height", "90", "-j", "2"]
    assert run_script(argv) == 0
    for video_id, path in expected.items():
        sources = frame_sources(out / video_id)
        assert sources == list(range(len(sources))) and len(sources) == probe_video(path).num_frames
        assert (out / video_id / FPS_FILE).read_text().strip() == "25.0"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob(FPS_FILE)) == sorted(
        f"{v}/{FPS_FILE}" for v in expected
    )
    assert re.search(r"^extracted\s+3\s", capsys.readouterr().out, re.MULTILINE)

    stamp = (out / next(iter(expected)) / "000000.jpg").stat().st_mtime_ns
    assert run_script(argv) == 0
    assert re.search(r"^skipped \(done\)\s+3\s", capsys.readouterr().out, re.MULTILINE)
    assert (out / next(iter(expected)) / "000000.jpg").stat().st_mtime_ns == stamp
    assert run_script([*argv, "--overwrite", "--resolution", "720p"]) == 0
    assert cv2.imread(str(out / next(iter(expected)) / "000000.jpg")).shape == (90, 160, 3)
    assert len(frame_sources(out / next(iter(expected)))) == 30  # the 1.2 s 720p file this time


def test_rerun_finishes_after_a_kill(tmp_path, make_index_video):
    video = tmp_path / "lib" / "long.mp4"
    make_index_video(video, fps=25, seconds=8)
    out = tmp_path / "frames"
    # A slow disk (each frame write sleeps) leaves time to kill the run mid-video, as a crash would.
    slow = (
        "import sys, time, runpy, util.extract as v\n"
        "make = v._write_jpeg\n"
        "def slow(*a):\n"
        "    write = make(*a)\n"
        "    return lambda k, img: (time.sleep(0.02), write(k, img))[1]\n"
        "v._write_jpeg = slow\n"
        "sys.argv = sys.argv[1:]\n"
        "runpy.run_path(sys.argv[0], run_name='__main__')\n"
    )
    argv = [str(REPO / "frames_as_jpg_soccernet_ball.py"), str(video), "-o", str(out), "--sample_fps", "25"]
    process = subprocess.Popen([sys.executable, "-c", slow, *argv, "--height", "90", "-j", "1"], cwd=REPO)
    partial = partial_dir(out / "long")
    deadline = time.monotonic() + 60
    while not (partial.is_dir() and len(list(partial.glob("*.jpg"))) >= 5):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "long").exists()  # nothing that looks finished
    assert partial.is_dir()

    assert run_script([str(video), "-o", str(out), "--sample_fps", "25", "--height", "90"]) == 0
    assert frame_sources(out / "long") == list(range(200))
    assert not partial.exists()
    # A folder left without fps.txt (an older tool, a manual copy) is redone too.
    (out / "long" / FPS_FILE).unlink()
    (out / "long" / "000150.jpg").unlink()
    assert run_script([str(video), "-o", str(out), "--sample_fps", "25", "--height", "90"]) == 0
    assert frame_sources(out / "long") == list(range(200))


def test_rerun_at_other_settings_is_not_skipped_silently(tmp_path, make_index_video, capsys):
    video = tmp_path / "v.mp4"
    make_index_video(video, fps=25, seconds=2)
    out = tmp_path / "frames"
    assert run_script([str(video), "-o", str(out), "--sample_fps", "2", "--height", "90"]) == 0
    assert len(frame_sources(out / "v")) == 4
    capsys.readouterr()
    for other in (["--height", "90"], ["--sample_fps", "2", "--height", "224"]):  # the default is 25 fps
        assert run_script([str(video), "-o", str(out), *other]) == 1
        assert "already extracted at other settings" in capsys.readouterr().err
        assert len(frame_sources(out / "v")) == 4
    assert (
        run_script([str(video), "-o", str(out), "--sample_fps", "25", "--height", "90", "--overwrite"]) == 0
    )
    assert len(frame_sources(out / "v")) == 50


def test_shards_partition_the_library(tmp_path, make_index_video):
    entries = [VideoEntry(f"v{i}", Path(f"v{i}.mp4")) for i in range(11)]
    for num_shards in (1, 2, 3, 4, 11, 13):
        shards = [take_shard(entries, k, num_shards) for k in range(num_shards)]
        assert sorted(e.video_id for s in shards for e in s) == sorted(e.video_id for e in entries)
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "-1/2", "a/b", "3"):
        with pytest.raises(ValueError):
            parse_shard(bad)

    lib = tmp_path / "lib"
    for name in ("a", "b", "c"):
        make_index_video(lib / f"{name}.mp4", fps=25, seconds=0.5)
    for k in range(2):
        argv = [str(lib), "-o", str(tmp_path / f"shard{k}"), "--height", "90", "--shard", f"{k}/2"]
        assert run_script(argv) == 0
    done = [sorted(p.parent.name for p in (tmp_path / f"shard{k}").rglob(FPS_FILE)) for k in range(2)]
    assert done == [["a", "c"], ["b"]]


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit):
        script.get_args(["--help"])
    text = capsys.readouterr().out
    for flag in (
        "video_dir",
        "--out_dir",
        "--sample_fps",
        "--num_workers",
        "--height",
        "--quality",
        "--resolution",
        "--overwrite",
        "--shard",
    ):
        assert flag in text
    with pytest.raises(SystemExit):
        script.get_args(["lib", "-o", "out", "--shard", "2/2"])


def test_extracts_a_synthetic_library(tmp_path):
    synthetic = pytest.importorskip("synthetic.library")
    for layout in ("game", "halves"):
        synthetic.render_library(tmp_path / layout, games=1, seconds=1, seed=0, layout=layout)
        out = tmp_path / f"frames-{layout}"
        assert run_script([str(tmp_path / layout), "-o", str(out), "--sample_fps", "25"]) == 0
        folders = sorted(p.parent.relative_to(out).as_posix() for p in out.rglob(FPS_FILE))
        assert folders == sorted(e.video_id for e in find_videos(tmp_path / layout))
        assert len(folders) == (1 if layout == "game" else 2)
        for folder in folders:
            assert len(list((out / folder).glob("*.jpg"))) == 25
            assert cv2.imread(str(out / folder / "000000.jpg")).shape[0] == 224
