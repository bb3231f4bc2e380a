"""Training clips, targets, augmentation, mixup, inference windows and frame sources (dataset/)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dataset import transform
from dataset.feature import FeatureClipDataset
from dataset.frame import ClipSampler, EpochSampler, FrameClipDataset, VideoEvents, clip_targets, video_events
from dataset.source import JpegDirSource, iter_windows, open_frame_source, read_jpeg
from dataset.transform import ClipAugment, center_crop, mixup_clips, swap_team, to_clips
from tests.conftest import (
    CLASSES,
    HEIGHT,
    WIDTH,
    event,
    frame_value,
    make_library,
    window_starts,
)
from util.io import DataError

# ---- targets


def test_targets_dilation_nearest_event_wins_and_team():
    events = video_events(
        {"video": "v", "num_frames": 100, "events": [event(10, "DRIVE", "right"), event(13, "PASS", "left")]},
        CLASSES,
    )
    labels, team, mask = clip_targets(events, start=5, clip_len=12, dilate_len=2)
    # DRIVE (2) at clip frame 5 covers 3..7, PASS (1) at 8 covers 6..10; frame 6 is nearer DRIVE, 7 nearer PASS.
    assert labels.tolist() == [0, 0, 0, 2, 2, 2, 2, 1, 1, 1, 1, 0]
    assert team.tolist() == [0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0]
    assert mask.tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0]


def test_targets_without_dilation_and_at_clip_edges():
    events = video_events({"video": "v", "num_frames": 30, "events": [event(0), event(29, "DRIVE")]}, CLASSES)
    # A clip reaching 3 frames before the video: the event at frame 0 is clip frame 3.
    labels, _, mask = clip_targets(events, start=-3, clip_len=8)
    assert labels.tolist() == [0, 0, 0, 1, 0, 0, 0, 0]
    # Dilation reaches into the clip from an event just outside it.
    labels, _, _ = clip_targets(events, start=22, clip_len=6, dilate_len=2)
    assert labels.tolist() == [0, 0, 0, 0, 0, 2]
    labels, _, mask = clip_targets(events, start=5, clip_len=8, dilate_len=1)
    assert labels.sum() == 0 and mask.sum() == 0


def test_unknown_team_is_masked_and_unknown_label_is_an_error():
    events = video_events(
        {"video": "v", "num_frames": 10, "events": [{"frame": 4, "label": "PASS"}]}, CLASSES
    )
    labels, _, mask = clip_targets(events, 0, 10)
    assert labels[4] == 1 and mask.sum() == 0
    with pytest.raises(DataError, match="SHOT"):
        video_events({"video": "v", "num_frames": 10, "events": [event(1, "SHOT")]}, CLASSES)


# ---- clip sampling


def _videos(lengths, events_at=()):
    return [
        VideoEvents(
            n, np.array(events_at, np.int64), np.ones(len(events_at), np.int64), np.zeros(len(events_at))
        )
        for n in lengths
    ]


def test_sampler_padding_bounds_and_determinism():
    sampler = ClipSampler(_videos([50, 7]), clip_len=16, pad_len=5, seed=3)
    draws = [sampler.sample(0, i) for i in range(2000)]
    assert draws == [sampler.sample(0, i) for i in range(2000)]
    assert draws != [sampler.sample(1, i) for i in range(2000)]
    for video, start in draws:
        n = [50, 7][video]
        assert -5 <= start <= max(-5, n - 16 + 5)
    starts = [s for v, s in draws if v == 0]
    assert min(starts) == -5 and max(starts) == 50 - 16 + 5  # padding is reached at both ends
    # Videos are picked in proportion to their length.
    share = np.mean([v == 0 for v, _ in draws])
    assert abs(share - 50 / 57) < 0.03


def test_foreground_upsampling_always_contains_an_event():
    sampler = ClipSampler(_videos([1000], events_at=[3, 500, 998]), clip_len=20, fg_upsample=1.0)
    for i in range(300):
        _, start = sampler.sample(0, i)
        assert any(start <= f < start + 20 for f in (3, 500, 998))
        assert -5 <= start <= 1000 - 20 + 5
    uniform = ClipSampler(_videos([1000], events_at=[500]), clip_len=20, fg_upsample=0.0)
    hits = sum(480 < uniform.sample(0, i)[1] <= 500 for i in range(300))
    assert hits < 30  # without up-sampling, clips around the event are rare


def test_class_balanced_foreground_sampling():
    """With fg_balance, clips drawn around events pick the class first: a class with 1 event in 20 is drawn as
    often as the class with the other 19."""
    frames = np.arange(10, 2000, 100)
    labels = np.array([2] + [1] * (len(frames) - 1))
    video = VideoEvents(2100, frames, labels, np.zeros(len(frames)))

    def share_of_rare(balance: bool) -> float:
        sampler = ClipSampler([video], clip_len=20, fg_upsample=1.0, fg_balance=balance)
        return np.mean([sampler.sample(0, i)[1] <= 10 for i in range(1000)])  # clips that hold frame 10

    assert share_of_rare(True) == pytest.approx(0.5, abs=0.06)
    assert share_of_rare(False) == pytest.approx(1 / 20, abs=0.03)


def test_epoch_sampler_shards_are_disjoint_and_equal():
    shards = [list(EpochSampler(10, rank=r, world_size=3, epoch=2)) for r in range(3)]
    assert all(len(s) == 3 for s in shards)
    keys = [k for s in shards for k in s]
    assert len(set(keys)) == 9 and all(e == 2 for e, _ in keys)


# ---- frame clips


@pytest.fixture
def library(tmp_path):
    return make_library(
        tmp_path,
        {
            "train": [
                {"video": "league/season/game", "num_frames": 30, "events": [event(2), event(20, "DRIVE")]}
            ]
        },
    )


def test_frame_clips_read_the_right_frames_with_black_padding(library):
    frame_dir, _ = library
    videos = [{"video": "league/season/game", "num_frames": 30, "events": [event(2), event(20, "DRIVE")]}]
    data = FrameClipDataset(frame_dir, videos, CLASSES, clip_len=12, num_clips=64, dilate_len=1, seed=1)
    assert data.frame_size == (WIDTH, HEIGHT)
    seen_padding = False
    for i in range(64):
        item = data[(0, i)]
        frames, start = item["frames"], item["start"]
        assert frames.shape == (12, HEIGHT, WIDTH, 3) and frames.dtype == torch.uint8
        for t in range(12):
            level = frames[t].float().mean().item()
            if 0 <= start + t < 30:
                assert abs(level - frame_value(start + t)) < 2
            else:
                seen_padding = True
                assert level == 0
        expected, _, _ = clip_targets(data.events[0], start, 12, 1)
        assert item["labels"].tolist() == expected.tolist()
    assert seen_padding
    assert torch.equal(data[(0, 5)]["frames"], data[(0, 5)]["frames"])


def test_missing_or_corrupt_frame_names_the_file(library):
    frame_dir, _ = library
    videos = [{"video": "league/season/game", "num_frames": 30, "events": []}]
    data = FrameClipDataset(frame_dir, videos, CLASSES, clip_len=30, num_clips=4, pad_len=0)
    missing = frame_dir / "league/season/game/000007.jpg"
    missing.unlink()
    with pytest.raises(DataError, match="000007.jpg"):
        data[(0, 0)]
    missing.write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DataError, match="000007.jpg.*not a readable JPEG"):
        read_jpeg(missing)
    with pytest.raises(DataError, match="no frame folder"):
        FrameClipDataset(frame_dir, [{"video": "other", "num_frames": 5}], CLASSES, clip_len=4, num_clips=1)


def test_feature_clips(tmp_path):
    features = np.arange(40, dtype=np.float32).reshape(20, 2)
    (tmp_path / "a").mkdir()
    np.save(tmp_path / "a" / "v.npy", features)
    videos = [{"video": "a/v", "num_frames": 20, "events": [event(5)]}]
    data = FeatureClipDataset(tmp_path, videos, CLASSES, clip_len=8, num_clips=50)
    assert data.dim == 2
    for i in range(50):
        item = data[(0, i)]
        start = item["start"]
        for t in range(8):
            row = item["features"][t].numpy()
            expected = features[start + t] if 0 <= start + t < 20 else np.zeros(2)
            assert np.array_equal(row, expected)
    with pytest.raises(DataError, match="b.npy"):
        FeatureClipDataset(tmp_path, [{"video": "a/b", "num_frames": 3}], CLASSES, clip_len=4, num_clips=1)


# ---- augmentation and mixup


def test_augment_crop_flip_and_determinism():
    clips = torch.rand(6, 4, 3, 20, 30)
    plain = ClipAugment(crop_hw=(16, 16), flip_p=0.5, jitter_p=0.0, blur_p=0.0)
    out, flipped = plain(clips, torch.Generator().manual_seed(0))
    again, flipped_again = plain(clips, torch.Generator().manual_seed(0))
    assert out.shape == (6, 4, 3, 16, 16) and torch.equal(out, again) and torch.equal(flipped, flipped_again)
    # Every output is a crop of its own clip (flipped where flagged), the same window for all its frames.
    for b in range(6):
        source = clips[b].flip(-1) if flipped[b] else clips[b]
        found = [
            (t, left)
            for t in range(5)
            for left in range(15)
            if torch.equal(source[..., t : t + 16, left : left + 16], out[b])
        ]
        assert found
    full = ClipAugment(jitter_p=1.0, blur_p=1.0)
    jittered, _ = full(clips.clone(), torch.Generator().manual_seed(1))
    assert jittered.shape == clips.shape and jittered.min() >= 0 and jittered.max() <= 1
    assert not torch.allclose(jittered, clips)


@pytest.mark.parametrize("op", ["sat", "bri", "con"])
def test_colour_jitter_is_torchvisions(op):
    """Saturation, brightness and contrast are torchvision's (v2.functional.adjust_*), one factor per clip, the
    contrast's mean gray taken per frame as torchvision takes it per image. Factors beyond ClipAugment's range and
    bright and dark frames make the clamps work."""
    from torchvision.transforms.v2 import functional as TF

    reference = {"sat": TF.adjust_saturation, "bri": TF.adjust_brightness, "con": TF.adjust_contrast}[op]
    clips = torch.rand(4, 3, 3, 6, 8, generator=torch.Generator().manual_seed(0))
    # A dark frame and a bright one: their contrast means differ from the clip's.
    clips[:, 1], clips[:, 2] = clips[:, 1] ** 4, clips[:, 2] ** 0.25
    factors = torch.tensor([0.3, 0.7, 1.2, 1.8])
    expected = torch.stack([reference(clip, float(f)) for clip, f in zip(clips, factors, strict=True)])
    ours = transform._adjust(clips.clone(), factors[:, None, None, None, None], op)
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)


# RGB -> YIQ (NTSC): Y is the luma, (I, Q) the chroma plane.
YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def test_hue_jitter_keeps_luma_and_turns_the_chroma_plane():
    """ClipAugment's hue jitter turns each clip's chroma (YIQ's I, Q) by one angle within its range and keeps the
    luma. It is not compared with torchvision's adjust_hue, which shifts the hue in HSV and so changes the luma (it
    turns a dark blue into an equally saturated, much brighter green): the two agree only at angle 0 and a full
    turn, and differ in between by design."""
    only_hue = dict(flip_p=0, jitter_p=1, saturation=(1, 1), brightness=(1, 1), contrast=(1, 1), blur_p=0)
    g = torch.Generator().manual_seed(0)
    # Colours well inside the RGB cube, so that no turn leaves it and nothing is clamped.
    clips = 0.35 + 0.3 * torch.rand(6, 2, 3, 5, 6, generator=g)
    out, _ = ClipAugment(hue=0.2, **only_hue)(clips, g)
    assert out.min() > 0 and out.max() < 1
    before, after = (torch.einsum("ij,ntjhw->ntihw", YIQ, x) for x in (clips, out))
    torch.testing.assert_close(after[:, :, 0], before[:, :, 0], atol=1e-5, rtol=0)  # the luma is kept
    i, q, i2, q2 = (c.flatten(1) for c in (before[:, :, 1], before[:, :, 2], after[:, :, 1], after[:, :, 2]))
    angle = torch.atan2((i * q2 - q * i2).sum(1), (i * i2 + q * q2).sum(1))  # each clip's turn, fitted
    cos, sin = torch.cos(angle)[:, None], torch.sin(angle)[:, None]
    torch.testing.assert_close(i2, cos * i - sin * q, atol=1e-5, rtol=0)  # every pixel turned by that angle
    torch.testing.assert_close(q2, sin * i + cos * q, atol=1e-5, rtol=0)
    assert (angle.abs() <= 0.2 * 2 * math.pi + 1e-4).all() and angle.abs().max() > 0.3 and angle.std() > 0.1
    # Angle 0 leaves any clip as it was; saturated colours stay in [0, 1] at any angle.
    clips = torch.rand(3, 2, 3, 5, 6, generator=g)
    red, blue = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 1.0])
    clips[..., 0, 0], clips[..., 0, 1] = red, blue
    same, _ = ClipAugment(hue=0.0, **only_hue)(clips, g)
    torch.testing.assert_close(same, clips, atol=1e-6, rtol=0)
    out, _ = ClipAugment(hue=0.5, **only_hue)(clips, g)
    assert out.min() >= 0 and out.max() <= 1 and not torch.allclose(out, clips, atol=0.01)


def test_flip_swaps_team():
    team = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert swap_team(team, torch.tensor([True, False])).tolist() == [[0.0, 1.0], [1.0, 0.0]]


def test_mixup_soft_targets_sum_to_one():
    g = torch.Generator().manual_seed(0)
    clips = torch.rand(4, 5, 3, 8, 8)
    labels = torch.arange(4)[:, None].expand(4, 5)  # clip b is all class b, unlike its neighbour
    targets = torch.nn.functional.one_hot(labels, 4).float()
    team = torch.randint(0, 2, (4, 5)).float()
    team_mask = torch.randint(0, 2, (4, 5)).float()
    mixed, soft, mixed_team, mixed_mask = mixup_clips(clips, targets, team, team_mask, g)
    assert torch.allclose(soft.sum(-1), torch.ones(4, 5))
    for b in range(4):
        other = (b + 1) % 4
        lam = soft[b, 0, b]
        assert 0 <= lam <= 1 and torch.allclose(soft[b, :, other], 1 - lam.expand(5))
        # The clip is mixed with the same weight as its targets.
        assert torch.allclose(mixed[b], lam * clips[b] + (1 - lam) * clips[other], atol=1e-6)
        expected_mask = lam * team_mask[b] + (1 - lam) * team_mask[other]
        assert torch.allclose(mixed_mask[b], expected_mask, atol=1e-6)
    assert ((mixed_team >= 0) & (mixed_team <= 1)).all()
    # A single clip has nothing to mix with.
    alone = mixup_clips(clips[:1], targets[:1], team[:1], team_mask[:1], g)
    assert torch.equal(alone[0], clips[:1]) and torch.equal(alone[1], targets[:1])


def test_to_clips_and_centre_crop():
    frames = torch.randint(0, 256, (2, 3, 10, 12, 3), dtype=torch.uint8)
    clips = to_clips(frames)
    assert clips.shape == (2, 3, 3, 10, 12) and clips.max() <= 1
    assert torch.equal(clips[1, 2, :, 4, 5], frames[1, 2, 4, 5].float() / 255)
    cropped = center_crop(clips, (6, 6))
    assert torch.equal(cropped, clips[..., 2:8, 3:9])
    assert center_crop(clips, None) is clips


# ---- inference windows and frame sources


@pytest.mark.parametrize("total", [1, 7, 8, 9, 16, 17, 40])
@pytest.mark.parametrize("chunk", [1, 5, 8, 100])
def test_windows_cover_every_frame_in_order(total, chunk):
    frames = np.arange(total).reshape(total, 1, 1, 1)
    chunks = (frames[s : s + chunk] for s in range(0, total, chunk))
    windows = list(iter_windows(chunks, clip_len=8, stride=4))
    assert [w[0] for w in windows] == window_starts(total, 8, 4)
    covered = set()
    for start, window, valid in windows:
        assert window.shape[0] == 8
        assert window[:valid, 0, 0, 0].tolist() == list(range(start, start + valid))
        assert (window[valid:] == 0).all()
        covered.update(range(start, start + valid))
    assert covered == set(range(total))


def test_jpeg_source_streams_frames_and_checks_fps(library):
    frame_dir, _ = library
    folder = frame_dir / "league/season/game"
    source = JpegDirSource(folder, num_threads=2)
    assert source.num_frames == 30 and source.fps == 25.0
    chunks = list(source.iter_chunks(8))
    assert [len(c) for c in chunks] == [8, 8, 8, 6]
    levels = np.concatenate(chunks).mean(axis=(1, 2, 3))
    assert np.allclose(levels, [frame_value(i) for i in range(30)], atol=2)
    resized = open_frame_source(folder, fps=25.0, size=(56, 32))
    assert next(resized.iter_chunks(4)).shape == (4, 32, 56, 3)
    with pytest.raises(DataError, match="--sample_fps 10"):
        open_frame_source(folder, fps=10.0)


def test_video_file_source_decodes_at_the_model_rate(tmp_path):
    av = pytest.importorskip("av")
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=50)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for i in range(100):  # 2 s at 50 fps
            image = np.full((HEIGHT, WIDTH, 3), frame_value(i), np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    source = open_frame_source(path, fps=25.0, size=(56, 32))
    frames = np.concatenate(list(source.iter_chunks(16)))
    assert abs(len(frames) - 50) <= 1 and frames.shape[1:] == (32, 56, 3)
    # Frame k is the source frame nearest k / 25 s, i.e. source frame 2k.
    levels = frames.mean(axis=(1, 2, 3))
    assert np.allclose(levels[:20], [frame_value(2 * k) for k in range(20)], atol=4)
