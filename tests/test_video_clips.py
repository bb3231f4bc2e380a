"""Training straight from the videos: random access to step 1's frames (util/video_index.py), FRAME_DIR as the video
library (util/frame_dir.py) in parsing, training clips, prediction and inference, and the errors of bad files."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dataset.frame import FrameClipDataset
from dataset.source import read_jpeg, resolve_input
from tests.conftest import CLASSES, SEEKING_X264, event, make_library, read_index, write_index_video
from util.extract import extract_video
from util.frame_dir import VIDEO_FILE, FrameDir
from util.io import DataError
from util.parse import parse_library
from util.video import VideoReader
from util.video_index import INDEX_CACHE_ENV, VideoFrames, VideoFramesCache, VideoIndex


def reference_frames(path: Path, fps: float, height: int | None) -> np.ndarray:
    """Every frame step 1 writes for ``path``, before JPEG (the sequential reader, RGB)."""
    return np.stack([image for _, image in VideoReader(path, fps, height=height)])


# Sources of every kind step 1 resamples: constant rates above, at and below the output rate, 29.97 fps, a
# variable frame rate, .mp4 and .mkv; with B-frames and a keyframe every 10 frames, so reads seek.
SOURCES = {
    "25 fps mp4 -> 25": ("a.mp4", dict(fps=25, seconds=3), 25.0),
    "50 fps mkv -> 25": ("b.mkv", dict(fps=50, seconds=2), 25.0),
    "29.97 fps -> 25": ("c.mp4", dict(fps=30000 / 1001, seconds=3), 25.0),
    "10 fps -> 25 (repeats frames)": ("d.mp4", dict(fps=10, seconds=3), 25.0),
    "MPEG-TS, whose seeks land late -> 25": ("f.ts", dict(fps=25, seconds=3), 25.0),
    "variable rate -> 5": ("e.mkv", dict(times_s=[i * 0.04 + (0.013 if i % 7 == 3 else 0) for i in range(70)]), 5.0),
}  # fmt: skip


@pytest.mark.parametrize("case", list(SOURCES))
def test_random_clips_are_the_frames_step_1_writes(tmp_path, case):
    name, spec, fps = SOURCES[case]
    path = tmp_path / name
    write_index_video(path, options=SEEKING_X264, **spec)
    reference = reference_frames(path, fps, height=64)
    video = VideoFrames(path, fps, height=64)
    assert video.num_frames == len(reference) == len(VideoIndex.build(path).sample(fps))
    assert video.size == (reference.shape[2], reference.shape[1])
    rng = np.random.default_rng(0)
    spans = [(0, 4), (len(reference) - 3, len(reference)), (5, 5)]
    spans += [(int(s), int(s) + 6) for s in rng.integers(0, len(reference) - 6, size=12)]
    for start, stop in spans:
        # Bit for bit: the same decoder output and the same conversion as step 1, not merely similar.
        np.testing.assert_array_equal(
            video.read(start, stop), reference[start:stop], err_msg=f"{case} {start}"
        )
    # Frames nothing references are skipped unless used: the same spans decoded without skipping give the same
    # frames from strictly more decoded ones (B-frames that no frame references, between the keyframe and a span).
    plain = VideoFrames(path, fps, height=64, skip_unused=False)
    for start, stop in spans:
        np.testing.assert_array_equal(
            plain.read(start, stop), reference[start:stop], err_msg=f"{case} {start}"
        )
    assert video.used == plain.used > 0
    assert video.decoded < plain.decoded, (case, video.decoded, plain.decoded)
    with pytest.raises(IndexError):
        video.read(len(reference) - 1, len(reference) + 1)


def test_frames_equal_step_1s_jpegs_up_to_jpeg_error(tmp_path, match_video):
    frames = tmp_path / "frames"
    extract_video(match_video, frames, sample_fps=5, height=112, chroma="444")
    video = VideoFrames(match_video, 5.0, height=112)
    jpegs = sorted(frames.glob("*.jpg"))
    assert video.num_frames == len(jpegs) == 20
    decoded = video.read(0, video.num_frames)
    written = np.stack([read_jpeg(p) for p in jpegs])
    error = np.abs(decoded.astype(np.int16) - written)
    assert error.mean() < 4 and np.percentile(error, 99) <= 16, (error.mean(), np.percentile(error, 99))
    # The difference is JPEG's alone: compressing the decoded frames as step 1 does gives its files' pixels.
    params = [
        cv2.IMWRITE_JPEG_QUALITY,
        90,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444,
    ]
    for frame, jpeg in zip(decoded, written, strict=True):
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params)
        np.testing.assert_array_equal(
            cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), jpeg
        )


def test_step_2_counts_the_frames_of_the_video_library_as_of_step_1s_folders(tmp_path, v2_library):
    root, splits = v2_library
    frames = tmp_path / "frames"
    for video_id, path in FrameDir(root).library().items():
        extract_video(path, frames / video_id, sample_fps=10, height=112)
    classes, from_frames, _ = parse_library(root, frames, splits, label_format="v2")
    seen = []
    _, from_videos, _ = parse_library(
        root, root, splits, label_format="v2", sample_fps=10, height=112, progress=seen.append
    )
    assert seen == [g for split in splits.values() for g in split]
    for split, videos in from_frames.items():
        assert len(videos) == len(from_videos[split])
        for jpeg, video in zip(videos, from_videos[split], strict=True):
            assert video[VIDEO_FILE] == f"{jpeg['video'][:-2]}/{jpeg['video'][-1]}_224p.mkv"
            assert {k: v for k, v in video.items() if k != VIDEO_FILE} == jpeg  # halves, counts, events alike


def clip_library(root: Path, as_video: tuple[str, ...], fps: float = 25.0) -> tuple[Path, list[dict]]:
    def draw(image, i, video):  # each frame shows its index; a second video shows it shifted by 500
        image[:] = 0
        offset = 500 if video["video"].endswith("b") else 0
        for bit in range(10):
            if (i + offset) >> bit & 1:
                image[:, bit * image.shape[1] // 10 : (bit + 1) * image.shape[1] // 10] = 255

    videos = [
        {"video": "lg/s/a", "num_frames": 47, "events": [event(10), event(30, "DRIVE", "right")]},
        {"video": "lg/s/b", "num_frames": 33, "events": [event(5, "DRIVE")]},
    ]
    frame_dir, _ = make_library(root, {"train": videos}, fps=fps, draw=draw, as_video=as_video)
    return frame_dir, videos


def test_training_clips_from_videos_are_the_clips_from_frames(tmp_path):
    jpeg_dir, videos = clip_library(tmp_path / "jpeg", ())
    video_dir, video_labels = clip_library(tmp_path / "video", ("lg/s/a", "lg/s/b"))
    kwargs = dict(clip_len=12, num_clips=24, fg_upsample=0.5, seed=3, displacement=4)
    from_jpeg = FrameClipDataset(jpeg_dir, videos, CLASSES, **kwargs)
    from_video = FrameClipDataset(video_dir, video_labels, CLASSES, **kwargs)
    assert from_video.is_video == [True, True] and from_video.frame_size == from_jpeg.frame_size
    for key in [(0, i) for i in range(24)] + [(5, 3)]:
        a, b = from_jpeg[key], from_video[key]
        assert (a["video_index"], a["start"]) == (b["video_index"], b["start"])
        for name in ("labels", "team", "team_mask", "displacement", "displacement_mask"):
            assert torch.equal(a[name], b[name]), name
        # Each frame shows its index in both, black padding where the clip passes the ends.
        for i, (x, y) in enumerate(zip(a["frames"].numpy(), b["frames"].numpy(), strict=True)):
            frame = a["start"] + i
            inside = 0 <= frame < videos[a["video_index"]]["num_frames"]
            offset = 500 if a["video_index"] == 1 else 0
            assert read_index(y) == (frame + offset if inside else 0) == read_index(x), (key, i)
            if not inside:
                assert not y.any()


def test_video_clips_are_a_pure_function_of_the_key_in_any_worker(tmp_path):
    """What makes resume and DDP exact: a fresh dataset (a resumed run, another rank, a DataLoader worker) reads
    the same clip for the same (epoch, index), whatever was read before."""
    video_dir, videos = clip_library(tmp_path, ("lg/s/a", "lg/s/b"))
    kwargs = dict(clip_len=10, num_clips=16, seed=1)
    first = FrameClipDataset(video_dir, videos, CLASSES, **kwargs)
    order = [(0, i) for i in range(16)] + [(1, i) for i in range(16)]
    seen = {key: first[key]["frames"] for key in order}
    fresh = FrameClipDataset(video_dir, videos, CLASSES, **kwargs)
    for key in reversed(order):
        assert torch.equal(fresh[key]["frames"], seen[key]), key
    from torch.utils.data import DataLoader

    from dataset.frame import EpochSampler

    sampler = EpochSampler(16, epoch=1)
    loader = DataLoader(fresh, batch_size=4, sampler=sampler, num_workers=2, multiprocessing_context="fork")
    batches = torch.cat([batch["frames"] for batch in loader])
    assert torch.equal(batches, torch.stack([seen[(1, i)] for i in range(16)]))


def test_predictions_and_inference_read_the_library(tmp_path, tiny_model_dir):
    from model.common import load_model
    from model.predict import predict_videos

    net, config, _ = load_model(tiny_model_dir)
    video_dir, videos = clip_library(tmp_path / "video", ("lg/s/a",), fps=float(config["fps"]))
    results = predict_videos(net, config, video_dir, videos, device="cpu")
    assert {v: len(r[0]) for v, r in results.items()} == {"lg/s/a": 47, "lg/s/b": 33}
    item = resolve_input(None, video_dir, "lg/s/a", None)  # inference's --frame_dir LIB --video_name ID
    assert item.is_file and item.path == video_dir / "lg/s/a/224p.mp4" and item.video_id == "lg/s/a"
    with pytest.raises(DataError, match="frame folder not found"):
        resolve_input(None, video_dir, "lg/s/zz", None)


def test_bad_video_files_are_errors_naming_the_file(tmp_path):
    video_dir, videos = clip_library(tmp_path, ("lg/s/a", "lg/s/b"))
    path = video_dir / "lg/s/a/224p.mp4"
    kwargs = dict(clip_len=10, num_clips=8)
    # Labels that promise more frames than the file holds: refused before training, never padded.
    longer = [dict(videos[0], num_frames=60), videos[1]]
    with pytest.raises(
        DataError, match=r"lg/s/a/224p.mp4: 47 frames at 25 fps, but the parsed labels .* say 60"
    ):
        FrameClipDataset(video_dir, longer, CLASSES, **kwargs)
    # A truncated .mkv (its header still declares the whole length) and a file of garbage.
    mkv = tmp_path / "cut.mkv"
    write_index_video(mkv, fps=25, seconds=8, options=SEEKING_X264)
    data = mkv.read_bytes()
    mkv.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match=r"cut.mkv: truncated or damaged video"):
        VideoIndex.build(mkv)
    path.write_bytes(b"\0" * 4096)
    with pytest.raises(DataError, match=r"lg/s/a/224p.mp4: not a readable video file"):
        FrameClipDataset(video_dir, videos, CLASSES, **kwargs)
    # A file gone missing: the video is named among the missing ones.
    shutil.rmtree(video_dir / "lg/s/a")
    with pytest.raises(DataError, match=r"no frame folder for 1 video\(s\), e.g. lg/s/a"):
        FrameClipDataset(video_dir, videos, CLASSES, **kwargs)


def test_a_video_damaged_after_indexing_is_an_error_at_the_read(tmp_path):
    path = tmp_path / "v.mp4"
    write_index_video(path, fps=25, seconds=4, options=SEEKING_X264)
    cache = VideoFramesCache(max_open=1)
    video = cache.get(path, 25.0, (160, 90))
    assert read_index(video.read(60, 61)[0]) == 60
    assert cache.get(path, 25.0, (160, 90)) is video  # kept open between reads
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) // 2]))  # the second half of the file is gone
    video.close()
    with pytest.raises(DataError, match=r"v.mp4: (damaged video|not a readable video file)"):
        video.read(90, 95)


def test_indices_are_kept_on_disk_for_the_same_file_only(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv(INDEX_CACHE_ENV, str(cache))
    path = tmp_path / "v.mkv"
    write_index_video(path, fps=25, seconds=2, options=SEEKING_X264)
    first = VideoIndex.load(path)
    assert len(list(cache.glob("*.npz"))) == 1
    built, build = [], VideoIndex.build
    monkeypatch.setattr(VideoIndex, "build", classmethod(lambda cls, p: built.append(p) or build(p)))
    again = VideoIndex.load(path)  # read back, not demuxed
    assert built == [] and again.path == path
    for name in ("pts", "keyframe"):
        np.testing.assert_array_equal(getattr(again, name), getattr(first, name))
    for name in ("time_base", "end_s", "width", "height", "sample_aspect_ratio"):
        assert getattr(again, name) == getattr(first, name), name
    write_index_video(path, fps=25, seconds=3, options=SEEKING_X264)  # another file at the same path
    assert len(VideoIndex.load(path).pts) == 75 and built == [path]
    (damaged,) = cache.glob("*.npz")
    damaged.write_bytes(b"not an index")
    assert len(VideoIndex.load(path).pts) == 75 and len(built) == 2
    monkeypatch.setenv(INDEX_CACHE_ENV, "off")
    shutil.rmtree(cache)
    VideoIndex.load(path)
    assert not cache.exists() and len(built) == 3


def test_the_library_skips_frame_folders_and_refuses_two_files_of_one_id(tmp_path):
    write_index_video(tmp_path / "lg/s/a/224p.mp4", fps=25, seconds=1)
    frames = tmp_path / "lg/s/b"
    frames.mkdir(parents=True)
    (frames / "fps.txt").write_text("25.0\n")
    write_index_video(frames / "stray.mp4", fps=25, seconds=1)  # inside a frame folder: never listed
    library = FrameDir(tmp_path)
    assert set(library.library()) == {"lg/s/a"} and library.locate("lg/s/b") == frames
    write_index_video(tmp_path / "lg/s/a/224p.mkv", fps=25, seconds=1)
    (tmp_path / "lg/s/a/224p.mp4").rename(tmp_path / "lg/s/a/clip.mp4")
    (tmp_path / "lg/s/clip.mp4").write_bytes((tmp_path / "lg/s/a/clip.mp4").read_bytes())
    (tmp_path / "lg/s/a/clip.mp4").rename(tmp_path / "lg/s/a.mp4")  # id lg/s/a twice: a folder's and a file's
    with pytest.raises(DataError, match="video ids name several files"):
        FrameDir(tmp_path).locate("lg/s/a")


def test_a_video_smaller_than_the_labels_frames_is_upscaled_with_a_warning(tmp_path, caplog):
    video_dir, videos = clip_library(tmp_path, ("lg/s/a", "lg/s/b"))
    larger = [dict(v, width=224, height=128) for v in videos]  # labels made at twice the file's 64 rows
    data = FrameClipDataset(video_dir, larger, CLASSES, clip_len=4, num_clips=2)
    assert data[(0, 0)]["frames"].shape == (4, 128, 224, 3)
    assert "lg/s/a/224p.mp4: 64 px high, decoded and upscaled to the labels' 128 px" in caplog.text
