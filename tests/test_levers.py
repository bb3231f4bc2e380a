"""The winners' levers in the shared paths: T-DEED's displacement (targets, loss, head, moving peaks), test-time
flips, the window overlap and per-class NMS windows (issue 16)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dataset.frame import VideoEvents, clip_displacement
from dataset.source import FrameSource
from dataset.transform import mixup_clips
from model.common import build_model, default_config
from model.predict import ScoreSums, predict_scores, window_stride
from model.select import per_class_windows
from model.train import displacement_loss, spot_loss
from util.postprocess import PostProcess, displace, load_scores, scores_to_events, store_scores

CLASSES = ["PASS", "DRIVE"]


def events_at(*frames: int, num_frames: int = 100) -> VideoEvents:
    n = len(frames)
    return VideoEvents(num_frames, np.array(frames, np.int64), np.ones(n, np.int64), -np.ones(n, np.int64))


# ---- displacement targets and loss


def test_displacement_targets_point_to_the_nearest_event_within_the_radius():
    offset, mask = clip_displacement(events_at(10, 16), start=4, clip_len=16, radius=3)
    frames = np.arange(4, 20)
    expected = {7: 3, 8: 2, 9: 1, 10: 0, 11: -1, 12: -2, 13: -3, 14: 2, 15: 1, 16: 0, 17: -1, 18: -2, 19: -3}
    for frame, value in zip(frames.tolist(), offset.tolist(), strict=True):
        if frame in expected:
            assert mask[frame - 4] == 1 and value == expected[frame], frame
        else:
            assert mask[frame - 4] == 0 and value == 0, frame
    # Frame 13 is 3 from both events: the earlier one wins; an event outside the clip still counts.
    offset, mask = clip_displacement(events_at(30), start=20, clip_len=8, radius=4)
    assert offset.tolist()[-2:] == [4.0, 3.0] and mask.tolist() == [0] * 6 + [1, 1]
    offset, mask = clip_displacement(events_at(30), start=20, clip_len=8, radius=0)
    assert not mask.any()


def test_displacement_loss_is_in_units_of_the_radius_and_only_where_masked():
    target = torch.tensor([[2.0, 0.0, -2.0, 9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    exact = torch.tensor([[2.0, 0.0, -2.0, -50.0]])
    assert displacement_loss(exact, target, mask, radius=2).item() == 0.0
    off_by_one = exact + torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    assert displacement_loss(off_by_one, target, mask, radius=2).item() == pytest.approx(0.25)
    assert displacement_loss(off_by_one * 2, target * 2, mask, radius=4).item() == pytest.approx(0.25)


def test_spot_loss_adds_the_displacement_term():
    logits = torch.zeros(1, 4, 3)
    targets = torch.nn.functional.one_hot(torch.tensor([[0, 1, 0, 0]]), 3).float()
    weights = torch.ones(3)
    plain = spot_loss({"logits": logits}, targets, weights)
    output = {"logits": logits, "displacement": torch.tensor([[1.0, 0.0, -1.0, 0.0]])}
    disp = torch.tensor([[1.0, 0.0, -1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    same = spot_loss(
        output, targets, weights, displacement=disp, displacement_mask=mask, displacement_radius=1
    )
    assert same.item() == pytest.approx(plain.item())
    off = spot_loss(
        output, targets, weights, displacement=disp + 1, displacement_mask=mask, displacement_radius=1
    )
    assert off.item() == pytest.approx(plain.item() + 1.0)


def test_mixup_mixes_stacked_masked_targets_like_the_team():
    g = torch.Generator().manual_seed(0)
    clips = torch.rand(3, 4, 3, 8, 8)
    targets = torch.nn.functional.one_hot(torch.randint(0, 3, (3, 4)), 3).float()
    team, team_mask = torch.rand(3, 4), (torch.rand(3, 4) > 0.5).float()
    disp, disp_mask = torch.randn(3, 4), (torch.rand(3, 4) > 0.5).float()
    _, _, alone, alone_mask = mixup_clips(clips, targets, team, team_mask, torch.Generator().manual_seed(0))
    _, _, both, both_mask = mixup_clips(
        clips, targets, torch.stack([team, disp], -1), torch.stack([team_mask, disp_mask], -1), g
    )
    torch.testing.assert_close(both[..., 0], alone)
    torch.testing.assert_close(both_mask[..., 0], alone_mask)
    assert both.shape == (3, 4, 2)


@pytest.mark.parametrize("head", ["gru", "mstcn"])
def test_the_displacement_head_outputs_frames_within_the_model(head):
    config = default_config(
        feature_arch="rny002", temporal_arch=head, clip_len=8, pretrained=False, displacement=4, team=True
    )
    model = build_model({**config, "channels_last": False}).eval()
    out = model(torch.rand(2, 8, 3, 32, 32))
    assert out["displacement"].shape == (2, 8) and out["team"].shape == (2, 8)
    plain = build_model({**config, "displacement": 0, "channels_last": False})
    assert "displacement" not in plain(torch.rand(1, 8, 3, 32, 32))
    assert set(model.state_dict()) - set(plain.state_dict()) == {
        "displacement_head.weight",
        "displacement_head.bias",
    }


# ---- the post-processing moves peaks


def test_displacement_moves_a_detected_peak_to_the_event():
    scores = np.zeros((40, 3), np.float32)
    scores[:, 0] = 1.0
    curve = np.exp(-0.5 * ((np.arange(40) - 10) / 2.0) ** 2)  # PASS peaks at frame 10, the event is at 13
    scores[:, 1] = 0.9 * curve
    displacement = np.zeros(40, np.float32)
    displacement[5:16] = 13 - np.arange(5, 16) + 0.3  # the head points to frame 13 (+ a little noise)
    plain = scores_to_events(scores, CLASSES, 25.0, threshold=0.1, nms_window=5)
    moved = scores_to_events(scores, CLASSES, 25.0, threshold=0.1, nms_window=5, displacement=displacement)
    assert [e["frame"] for e in plain] == [10] and [e["frame"] for e in moved] == [13]
    assert moved[0]["score"] == pytest.approx(plain[0]["score"])
    # Every frame as a candidate: they all land on 13, which keeps the highest score.
    every = scores_to_events(
        scores, CLASSES, 25.0, threshold=0.1, nms_window=0, peaks=False, displacement=displacement
    )
    assert [e["frame"] for e in every if e["score"] == pytest.approx(0.9)] == [13]
    assert len({e["frame"] for e in every}) == len(every)


def test_displace_keeps_frames_in_the_video_and_the_best_of_a_collision():
    frames, origins, scores = displace(
        np.array([0, 5, 7, 38]),
        np.array([0.2, 0.5, 0.7, 0.4]),
        np.array([-3.0] + [0] * 4 + [2.0, 0, 0.4] + [0] * 30 + [5.0, 0]),
        40,
    )
    assert frames.tolist() == [0, 7, 39] and origins.tolist() == [0, 7, 38]
    assert scores.tolist() == [0.2, 0.7, 0.4]


def test_the_team_is_read_where_the_model_saw_the_event():
    scores = np.zeros((20, 3), np.float32)
    scores[5, 1] = 0.8
    p_right = np.zeros(20, np.float32)
    p_right[5] = 0.9  # the team head is sure at the peak; the moved frame has p_right 0
    displacement = np.zeros(20, np.float32)
    displacement[5] = 4
    (event,) = scores_to_events(scores, CLASSES, 25.0, team_scores=p_right, displacement=displacement)
    assert event["frame"] == 9 and event["team"] == "right" and event["team_score"] == pytest.approx(0.9)


def test_scores_files_carry_the_displacement():
    scores = np.random.default_rng(0).random((6, 3)).astype(np.float32)
    team, disp = np.full(6, 0.25, np.float32), np.arange(6, dtype=np.float32)
    path = "unused"
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = f"{d}/s.score.npz"
        store_scores(path, {"a": (scores, team, disp), "b": (scores, None, None), "c": (scores, team)})
        loaded = load_scores(path)
    assert set(loaded) == {"a", "b", "c"}
    np.testing.assert_array_equal(loaded["a"][2], disp)
    assert loaded["b"][1] is None and loaded["b"][2] is None and loaded["c"][2] is None


# ---- test-time flips and the window overlap


class ArraySource(FrameSource):
    def __init__(self, frames: np.ndarray):
        self.frames = frames
        self.num_frames = len(frames)
        self.fps = 25.0

    def iter_chunks(self, chunk: int):
        for i in range(0, len(self.frames), chunk):
            yield self.frames[i : i + chunk]


class SidedModel(nn.Module):
    """PASS logit = brightness of the left half; team logit: right half brighter = "right" (a mirrored clip's
    right half is the true left half)."""

    def forward(self, clips: torch.Tensor) -> dict:
        width = clips.shape[-1]
        left = clips[..., : width // 2].mean(dim=(2, 3, 4))
        right = clips[..., width // 2 :].mean(dim=(2, 3, 4))
        logits = torch.zeros(*clips.shape[:2], 3)
        logits[..., 1] = 10 * left
        return {"logits": logits, "team": 20 * (right - left), "displacement": torch.ones(clips.shape[:2])}


def test_flip_averages_a_clip_and_its_mirror_and_swaps_the_team():
    frames = np.zeros((6, 8, 8, 3), np.uint8)
    frames[:, :, 4:] = 255  # the right half is white: team "right", PASS logit 0 unflipped, 10 mirrored
    config = {"clip_len": 6, "classes": CLASSES, "fps": 25.0, "team": True, "displacement": 2}
    plain = predict_scores(SidedModel(), config, ArraySource(frames), device="cpu")
    flip = predict_scores(SidedModel(), {**config, "tta": "flip"}, ArraySource(frames), device="cpu")
    p_plain = np.exp(0) / (2 + np.exp(0))
    p_mirror = np.exp(10) / (2 + np.exp(10))
    np.testing.assert_allclose(plain[0][:, 1], p_plain, atol=1e-5)
    np.testing.assert_allclose(flip[0][:, 1], (p_plain + p_mirror) / 2, atol=1e-5)
    # Both views agree the right team acted: P(right) stays ~1 (without the swap the mean would be 0.5).
    assert plain[1].min() > 0.99 and flip[1].min() > 0.99
    np.testing.assert_allclose(flip[2], 1.0)  # displacement is temporal: a mirror leaves it alone
    with pytest.raises(ValueError, match="tta"):
        predict_scores(SidedModel(), {**config, "tta": "rotate"}, ArraySource(frames), device="cpu")


@pytest.mark.parametrize(
    ("clip_len", "overlap", "stride"), [(8, 0.5, 4), (7, 0.5, 4), (100, 0.75, 25), (10, 0.0, 10), (4, 0.9, 1)]
)
def test_window_stride_follows_the_overlap(clip_len, overlap, stride):
    assert window_stride({"clip_len": clip_len, "window_overlap": overlap}) == stride


def test_more_overlap_sees_each_frame_more_often(monkeypatch):
    class Count(nn.Module):
        def forward(self, clips):
            return {"logits": torch.zeros(*clips.shape[:2], 3)}

    frames = np.zeros((40, 4, 4, 3), np.uint8)
    starts: list[int] = []
    original = ScoreSums.add

    def add(self, start, outputs):
        starts.append(start)
        original(self, start, outputs)

    monkeypatch.setattr(ScoreSums, "add", add)
    counts = {}
    for overlap in (0.0, 0.5, 0.75):
        starts.clear()
        config = {"clip_len": 8, "classes": CLASSES, "fps": 25.0, "window_overlap": overlap}
        predict_scores(Count(), config, ArraySource(frames), device="cpu")
        counts[overlap] = len(starts)
    assert counts == {0.0: 5, 0.5: 9, 0.75: 17}
    with pytest.raises(ValueError, match="window_overlap"):
        window_stride({"clip_len": 8, "window_overlap": 1.0})


# ---- per-class NMS windows


def test_per_class_windows_pick_each_class_its_best_window():
    def row(window, soft, pass_ap, drive_ap):
        post = PostProcess(nms_window_s=window, soft=soft)
        return {
            "postprocess": post,
            "per_class": {"PASS": pass_ap, "DRIVE": drive_ap},
            "mAP": (pass_ap + drive_ap) / 2,
        }

    rows = [
        row(0.5, False, 0.6, 0.7),
        row(1.0, False, 0.7, 0.5),
        row(2.0, False, 0.7, 0.4),
        row(1.0, True, 0.9, 0.9),
    ]
    chosen = PostProcess(nms_window_s=1.0)
    post = per_class_windows(rows, chosen, "per_class")
    # PASS keeps the chosen 1 s (a tie with 2 s keeps the chosen), DRIVE gets 0.5 s; soft NMS rows are not mixed in.
    assert post.class_windows_s == (("DRIVE", 0.5),) and post.nms_window_s == 1.0
    options = post.event_options(25.0)
    assert options["nms_window"] == 25 and options["class_windows"] == {"DRIVE": 13}
    assert PostProcess.from_dict(post.to_dict()) == post
    assert "class_windows_s" not in chosen.to_dict()  # selection.json files stay as they were without them
    # A window given by hand holds for every class.
    assert post.with_overrides(nms_window_s=2.0).class_windows_s == ()


def test_class_windows_change_only_their_class():
    scores = np.zeros((60, 3), np.float32)
    for c in (1, 2):
        scores[[10, 16], c] = [0.9, 0.6]  # two peaks 6 frames apart in each class
    both = scores_to_events(scores, CLASSES, 25.0, nms_window=10, class_windows={"DRIVE": 3})
    assert [(e["label"], e["frame"]) for e in both] == [("PASS", 10), ("DRIVE", 10), ("DRIVE", 16)]
    with pytest.raises(ValueError, match="class_windows_s"):
        PostProcess(class_windows_s=(("PASS", -1.0),))


# ---- the A/B runner (python -m synthetic.levers)


def test_every_arm_of_the_ab_runner_is_a_valid_training_command():
    import train_e2e
    from synthetic import levers

    for arm, (flags, _) in {**levers.TRAINED_ARMS, **levers.FEATURE_ARMS}.items():
        args = train_e2e.get_args(["data", "frames", *levers.TRAIN, *flags, "-s", f"models/{arm}"])
        assert args.clip_len == 50 and args.num_epochs == 8, arm
    for overrides, _, base in levers.PREDICT_ARMS.values():
        assert base in levers.TRAINED_ARMS
        config = {"clip_len": 50, "classes": CLASSES, **overrides}
        assert window_stride(config) >= 1
    runs = [
        {"mAP@1": 0.5, "frame mAP 0": 0.1, "frame mAP 1": 0.2},
        {"mAP@1": 0.3, "frame mAP 0": 0.1, "frame mAP 1": 0.4},
    ]
    text = levers.table({"baseline": runs}, {"baseline": "the reference"})
    assert "| baseline | the reference | **0.400** (0.500, 0.300) | **0.100** (0.100, 0.100) |" in text


# ---- bad settings are refused with their names


def test_bad_prediction_settings_are_refused_by_name(tmp_path, capsys, tiny_model_dir, match_video):
    import eval_soccernet_ball
    import train_e2e
    from model.inference import run_inference
    from util.io import DataError

    for argv, said in (
        (["--window_overlap", "1.0"], "--window_overlap must be in [0, 1)"),
        (["--displacement", "-1"], "--displacement R must be >= 0"),
    ):
        with pytest.raises(SystemExit):
            train_e2e.get_args(["data", "frames", "-m", "rny002", "-s", str(tmp_path / "m"), *argv])
        assert said in capsys.readouterr().err
    pred = tmp_path / "pred-test.0.json"
    pred.write_text("[]")
    for argv, said in (
        ([str(tmp_path), "--window_overlap", "-0.5"], "--window_overlap must be in [0, 1)"),
        ([str(pred), "--tta", "flip"], "give model directories, not prediction files"),
    ):
        with pytest.raises(SystemExit):
            eval_soccernet_ball.get_args(["data", "frames", *argv])
        assert said in capsys.readouterr().err
    with pytest.raises(DataError, match="window_overlap must be in"):
        run_inference(tiny_model_dir, tmp_path / "out", video=match_video, window_overlap=2.0)
    with pytest.raises(DataError, match="tta must be one of none, flip"):
        run_inference(tiny_model_dir, tmp_path / "out", video=match_video, tta="rotate")
    assert not (tmp_path / "out" / "predictions.json").exists()
