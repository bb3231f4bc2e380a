"""Prediction shared out by frame ranges (every rank predicts an equal share of the windows, ``shard_windows``):
the shares, merged, are the one-process scores; a frame range reads back exactly its frames from any source."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dataset.feature import FeatureSource
from dataset.source import FrameSource, JpegDirSource, VideoFileSource, iter_windows
from model.predict import ScoreSums, predict_range, predict_scores, shard_windows, window_spans
from tests.conftest import write_index_video, write_video_frames
from util.io import DataError

CLASSES = ["PASS", "DRIVE"]


class ArraySource(FrameSource):
    """Frames held in memory, read in order only (the default ``iter_range``)."""

    def __init__(self, frames: np.ndarray):
        self.frames, self.num_frames, self.fps, self.name = frames, len(frames), 25.0, "array"

    def iter_chunks(self, chunk_len: int):
        for i in range(0, len(self.frames), chunk_len):
            yield self.frames[i : i + chunk_len]


class Bright(nn.Module):
    """Logits from each frame's brightness and its place in the clip (so a window read at the wrong offset, or
    counted twice, changes the mean), a team logit from the same."""

    def forward(self, clips: torch.Tensor) -> dict:
        mean = clips.mean(dim=(2, 3, 4))  # (B, T)
        place = torch.linspace(0, 1, clips.shape[1])[None]
        logits = torch.stack([mean * 3, place * 2 - mean, mean * place * 5], -1)
        return {"logits": logits, "team": mean - place}


@pytest.mark.parametrize("clip_len,stride", [(8, 4), (8, 8), (8, 2), (5, 3)])
def test_window_spans_are_the_windows_iter_windows_reads(clip_len, stride):
    for n in range(0, 40):
        frames = np.arange(n)[:, None]
        read = [
            (s, s + valid) for s, _, valid in iter_windows(iter(np.array_split(frames, 3)), clip_len, stride)
        ]
        assert window_spans(n, clip_len, stride) == read, n


@pytest.mark.parametrize("num_shards", [1, 2, 3, 5, 8])
def test_merged_shares_are_the_one_process_scores(num_shards):
    rng = np.random.default_rng(num_shards)
    lengths = [37, 5, 0, 60, 8]  # shorter than a window, empty, exactly one window
    videos = [rng.integers(0, 256, (n, 4, 6, 3), dtype=np.uint8) for n in lengths]
    config = {"clip_len": 8, "classes": CLASSES, "fps": 25.0, "team": True}
    shards = shard_windows(lengths, 8, 4, num_shards)
    sizes = [sum(len(window_spans(hi - lo, 8, 4)) for _, lo, hi in shard) for shard in shards]
    assert max(sizes) - min(sizes) <= 1 + num_shards  # equal shares, to a window (a cut window is read twice)
    assert sum(len(window_spans(n, 8, 4)) for n in lengths) == len(
        [s for n in lengths for s in window_spans(n, 8, 4)]
    )
    for index, frames in enumerate(videos):
        whole = ScoreSums(len(frames), len(CLASSES) + 1)
        for shard in shards:
            for video, lo, hi in shard:
                if video == index:
                    whole.merge(predict_range(Bright(), config, ArraySource(frames), lo, hi, device="cpu"))
        alone = predict_scores(Bright(), config, ArraySource(frames), device="cpu")
        merged = whole.result(len(frames))
        assert merged[0].shape == alone[0].shape == (len(frames), 3)
        np.testing.assert_allclose(merged[0], alone[0], atol=1e-6)
        assert (merged[1] is None) == (alone[1] is None) == (len(frames) == 0)  # no window: no team output
        if len(frames):
            np.testing.assert_allclose(merged[1], alone[1], atol=1e-6)


def test_one_long_video_is_shared_by_every_rank():
    shards = shard_windows([1000], 100, 50, 8)
    assert all(len(shard) == 1 for shard in shards)
    covered = sorted((lo, hi) for shard in shards for _, lo, hi in shard)
    assert covered[0][0] == 0 and covered[-1][1] == 1000
    assert all(a[1] > b[0] for a, b in zip(covered, covered[1:], strict=False))  # windows overlap across cuts


def test_a_range_reads_its_frames_from_every_kind_of_source(tmp_path):
    write_video_frames(tmp_path / "frames", 23)
    folder = JpegDirSource(tmp_path / "frames")
    every = np.concatenate(list(folder.iter_chunks(4)))
    for lo, hi in ((0, 23), (5, 17), (20, 23), (7, 7)):
        got = list(folder.iter_range(lo, hi, 4))
        assert all(len(c) <= 4 for c in got)
        np.testing.assert_array_equal(np.concatenate(got) if got else every[:0], every[lo:hi])
        default = list(FrameSource.iter_range(folder, lo, hi, 4))  # the sequential reading of any source
        np.testing.assert_array_equal(np.concatenate(default) if default else every[:0], every[lo:hi])
    with pytest.raises(DataError, match="fewer than the 30 expected"):
        list(FrameSource.iter_range(folder, 20, 30, 4))

    features = np.random.default_rng(0).normal(size=(19, 6)).astype(np.float32)
    np.save(tmp_path / "f.npy", features)
    source = FeatureSource(tmp_path / "f.npy", 25.0)
    np.testing.assert_array_equal(np.concatenate(list(source.iter_range(3, 14, 5))), features[3:14])


def test_a_video_files_range_is_the_frames_of_a_decode_from_the_start(tmp_path):
    from tests.conftest import SEEKING_X264
    from util.video_index import VideoFrames

    path = tmp_path / "v.mp4"  # a keyframe every 10 frames, B-frames
    write_index_video(path, fps=25.0, seconds=3.0, size=(64, 36), options=SEEKING_X264)
    source = VideoFileSource(path, fps=12.5, size=(64, 36))
    every = np.concatenate(list(source.iter_chunks(7)))
    assert len(every) == 38
    for lo, hi in ((0, 38), (11, 29), (31, 38), (37, 38)):
        chunks = list(source.iter_range(lo, hi, 7))
        assert [len(c) for c in chunks[:-1]] == [7] * (len(chunks) - 1)
        np.testing.assert_array_equal(np.concatenate(chunks), every[lo:hi])
    frames = VideoFrames(path, 12.5, size=(64, 36))
    list(frames.iter_range(30, 38, 7))
    assert (
        frames.decoded <= 20
    )  # one seek, to the keyframe before source frame 60: not a decode from the start
    with pytest.raises(DataError, match="v.mp4: 38 frames at 12.5 fps, fewer than the 40 expected"):
        list(source.iter_range(30, 40, 7))


def test_a_seek_that_lands_late_falls_back_to_reading_by_range(tmp_path, monkeypatch):
    from tests.conftest import SEEKING_X264
    from util.video_index import VideoFrames, VideoIndex

    path = tmp_path / "v.mp4"
    write_index_video(path, fps=25.0, seconds=2.0, size=(64, 36), options=SEEKING_X264)
    every = np.concatenate(list(VideoFileSource(path, fps=25.0, size=(64, 36)).iter_chunks(8)))
    late = VideoIndex.keyframe_before

    def keyframe_after(self, source_frame):  # the keyframe after the one needed: its first frame is too late
        return late(self, min(source_frame + 10, len(self.pts) - 1))

    frames = VideoFrames(path, 25.0, size=(64, 36))
    monkeypatch.setattr(VideoIndex, "keyframe_before", keyframe_after)
    chunks = list(frames.iter_range(13, 41, 8))
    monkeypatch.undo()
    assert [len(c) for c in chunks] == [8, 8, 8, 4]
    np.testing.assert_array_equal(np.concatenate(chunks), every[13:41])
