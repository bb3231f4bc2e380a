"""Team as classes (``--team_encoding classes``, issue 36): 2 x C class outputs + background, (class, left) then
(class, right), instead of a separate team head; every later step reads it through the same per-frame arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dataset.transform import frame_targets, swap_team_classes
from model.common import build_model, check_config, default_config, output_count
from model.folder import ModelFolder
from model.predict import predict_scores
from model.transfer import init_from
from tests.conftest import CLASSES, event, make_library, write_tiny_model
from tests.test_levers import ArraySource
from util.io import DataError, load_json
from util.postprocess import PostProcess, nms_events, scores_to_events

C = len(CLASSES)


# ---- the network and its config


def test_classes_encoding_has_2c_plus_1_outputs_and_no_team_head():
    torch.manual_seed(0)
    clip = torch.rand(2, 8, 3, 32, 48)
    for encoding, outputs in (("head", C + 1), ("classes", 2 * C + 1)):
        config = default_config(
            pretrained=False, clip_len=8, classes=CLASSES, team=True, team_encoding=encoding
        )
        assert output_count(config) == outputs
        model = build_model(config).eval()
        with torch.no_grad():
            out = model(clip)
        assert out["logits"].shape == (2, 8, outputs)
        assert ("team" in out) == (encoding == "head")
        assert (model.team_head is None) == (encoding == "classes")
    assert output_count(default_config(classes=CLASSES)) == C + 1  # no team at all


def test_an_older_config_is_a_team_head_and_the_encoding_is_checked():
    old = {"feature_arch": "rny002", "temporal_arch": "gru", "clip_len": 8, "classes": CLASSES, "team": True}
    assert check_config(old)["team_encoding"] == "head"
    with pytest.raises(DataError, match="team_encoding classes needs a team"):
        check_config({**old, "team": False, "team_encoding": "classes"})
    with pytest.raises(DataError, match="unknown team_encoding 'pairs'"):
        check_config({**old, "team_encoding": "pairs"})


def test_training_team_as_classes_needs_a_team(tmp_path, capsys):
    from tests.test_train import run, train_argv

    frame_dir, data_dir = _library(tmp_path)
    assert run(train_argv(tmp_path, frame_dir, data_dir, "--team_encoding", "classes")) == 2
    assert "--team_encoding classes needs --team" in capsys.readouterr().err
    assert run(train_argv(tmp_path, frame_dir, data_dir, "--team_nms", "class")) == 2
    assert "--team_nms needs --team" in capsys.readouterr().err
    assert not (tmp_path / "model").exists()


# ---- training targets: the flip swaps the two halves


def test_targets_put_each_event_in_its_team_half_and_a_flip_swaps_the_halves():
    labels = torch.tensor([[0, 1, 2, 1], [2, 0, 1, 1]])
    team = torch.tensor([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 1.0]])
    mask = torch.tensor([[0.0, 1.0, 1.0, 0.0], [1.0, 0.0, 1.0, 1.0]])  # (0, 3): a PASS of unknown team
    plain, _ = frame_targets(labels, team, mask, None, C, team_classes=True)
    assert plain.shape == (2, 4, 2 * C + 1)
    # columns: background, (PASS, left), (DRIVE, left), (PASS, right), (DRIVE, right)
    assert plain[0].tolist() == [[1, 0, 0, 0, 0], [0, 0, 0, 1, 0], [0, 0, 1, 0, 0], [0, 0.5, 0, 0.5, 0]]
    assert plain[1].tolist() == [[0, 0, 0, 0, 1], [1, 0, 0, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 1, 0]]
    flipped = torch.tensor([True, False])
    mirrored, mirrored_team = frame_targets(labels, team, mask, flipped, C, team_classes=True)
    # A horizontally flipped clip's targets are its own with the left and right halves swapped; the others stay.
    assert torch.equal(mirrored, swap_team_classes(plain, flipped))
    assert mirrored[0, 1].tolist() == [0, 1, 0, 0, 0] and torch.equal(mirrored[1], plain[1])
    assert mirrored_team[0].tolist() == [1.0, 0.0, 1.0, 1.0] and torch.equal(mirrored_team[1], team[1])
    # The team head's targets are unchanged: one-hot over C + 1 outputs.
    head, _ = frame_targets(labels, team, mask, flipped, C)
    assert head.shape == (2, 4, C + 1) and head[0, 1].tolist() == [0, 1, 0]


# ---- prediction: scores (T, C + 1) and the joint p(class, right) (T, C)


class TeamClassModel(nn.Module):
    """Background | (PASS, left), (DRIVE, left) | (PASS, right), (DRIVE, right): the right half of the image
    drives (PASS, right), the left half (PASS, left)."""

    def forward(self, clips: torch.Tensor) -> dict:
        width = clips.shape[-1]
        left = clips[..., : width // 2].mean(dim=(2, 3, 4))  # clips in [0, 1]
        right = clips[..., width // 2 :].mean(dim=(2, 3, 4))
        logits = torch.zeros(*clips.shape[:2], 2 * C + 1)
        logits[..., 1] = 4 * left
        logits[..., 1 + C] = 4 * right
        return {"logits": logits}


def test_predict_turns_the_2c_plus_1_softmax_into_class_scores_and_the_joint_right_score():
    frames = np.zeros((6, 8, 8, 3), np.uint8)
    frames[:, :, 4:] = 255  # the right half is white
    config = {"clip_len": 6, "classes": CLASSES, "fps": 25.0, "team": True, "team_encoding": "classes"}
    scores, team, _ = predict_scores(TeamClassModel(), config, ArraySource(frames), device="cpu")
    total = 4 + np.exp(4)  # four outputs at logit 0, (PASS, right) at 4
    assert scores.shape == (6, C + 1) and team.shape == (6, C)
    np.testing.assert_allclose(
        scores[:, 1], (1 + np.exp(4)) / total, atol=1e-5
    )  # (PASS, left) + (PASS, right)
    np.testing.assert_allclose(scores[:, 0], 1 / total, atol=1e-5)
    np.testing.assert_allclose(team[:, 0], np.exp(4) / total, atol=1e-5)  # p(PASS, right)
    np.testing.assert_allclose(team[:, 1], 1 / total, atol=1e-5)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, atol=1e-5)
    # The mirror sees the white half on its left: its (PASS, left) is the true (PASS, right), so the flip's mean
    # agrees with the plain view (without the swap, p(PASS, right) would fall to the mean of both halves).
    flip = predict_scores(TeamClassModel(), {**config, "tta": "flip"}, ArraySource(frames), device="cpu")
    np.testing.assert_allclose(flip[0], scores, atol=1e-5)
    np.testing.assert_allclose(flip[1], team, atol=1e-5)


# ---- post-processing: the team of each event, NMS per class or per (class, team)


def _two_sided(num_frames: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """PASS at frame 20 split 0.3 left / 0.4 right, DRIVE at 40 all left (0.6)."""
    scores = np.zeros((num_frames, C + 1))
    right = np.zeros((num_frames, C))
    scores[20, 1], right[20, 0] = 0.7, 0.4
    scores[40, 2] = 0.6
    scores[:, 0] = 1 - scores[:, 1:].sum(axis=1)
    return scores, right


def test_events_read_the_team_from_the_joint_scores_per_class_or_per_class_and_team():
    scores, right = _two_sided()
    per_class = scores_to_events(scores, CLASSES, 25.0, nms_window=5, team_scores=right)
    assert [(e["frame"], e["label"], e["team"]) for e in per_class] == [
        (20, "PASS", "right"),
        (40, "DRIVE", "left"),
    ]
    assert per_class[0]["score"] == pytest.approx(0.7) and per_class[0]["team_score"] == pytest.approx(
        0.4 / 0.7
    )
    assert per_class[1]["team_score"] == pytest.approx(1.0)
    per_team = scores_to_events(scores, CLASSES, 25.0, nms_window=5, team_scores=right, per_team=True)
    assert [(e["frame"], e["label"], e["team"], round(e["score"], 6)) for e in per_team] == [
        (20, "PASS", "left", 0.3),
        (20, "PASS", "right", 0.4),
        (40, "DRIVE", "left", 0.6),
    ]
    # A team head's P(right) (T,) gives the same joint scores: per (class, team) NMS works for it too.
    p_right = np.where(scores[:, 1] > 0, right[:, 0] / np.maximum(scores[:, 1], 1e-9), 0.0)
    head = scores_to_events(scores, CLASSES, 25.0, nms_window=5, team_scores=p_right, per_team=True)
    assert [(e["label"], e["team"]) for e in head] == [("PASS", "left"), ("PASS", "right"), ("DRIVE", "left")]


def test_nms_per_class_and_team_is_recorded_with_the_post_processing():
    post = PostProcess(nms_window_s=0.5, nms_per_team=True)
    assert post.event_options(25.0)["per_team"] is True and "per class and team" in post.describe()
    assert PostProcess.from_dict(post.to_dict()) == post
    # Files written before (and per-class NMS) stay as they were: no key, per class.
    assert "nms_per_team" not in PostProcess().to_dict() and "per_team" not in PostProcess().event_options(
        25.0
    )
    assert PostProcess.from_dict({"nms_window_s": 1.0}).nms_per_team is False
    events = [
        {"frame": 10, "label": "PASS", "score": 0.9, "team": "left"},
        {"frame": 12, "label": "PASS", "score": 0.5, "team": "right"},
        {"frame": 13, "label": "PASS", "score": 0.4, "team": "right"},
    ]
    assert nms_events(events, 5) == events[:1]
    assert nms_events(events, 5, per_team=True) == events[:2]


def test_a_classes_model_without_a_selection_uses_nms_per_class_and_team(tmp_path):
    classes = write_tiny_model(tmp_path / "classes", classes=CLASSES, team_encoding="classes")
    head = write_tiny_model(tmp_path / "head")
    assert ModelFolder(classes).selection["postprocess"].nms_per_team is True
    assert ModelFolder(head).selection["postprocess"].nms_per_team is False


# ---- transfer from a model of either encoding


@pytest.mark.parametrize("head", ["gru", "mstcn"])
def test_a_team_head_model_starts_a_classes_model_with_the_same_class_scores(tmp_path, head):
    source_dir = write_tiny_model(tmp_path / "head", classes=CLASSES, temporal_arch=head)
    source, _, _ = __import__("model.common", fromlist=["load_model"]).load_model(source_dir)
    torch.manual_seed(3)
    config = default_config(
        pretrained=False, clip_len=8, classes=CLASSES, team=True, team_encoding="classes", temporal_arch=head,
        frame_height=64, frame_width=112,
    )  # fmt: skip
    model = build_model(config)
    done = init_from(model, config, str(source_dir))
    assert set(done.unused) == {"team_head.weight", "team_head.bias"} and not done.reinitialised
    assert any("left and right" in why for why in done.split.values()) and "split" in done.describe()
    clip = torch.rand(1, 8, 3, 64, 112)
    with torch.no_grad():
        want = torch.softmax(source(clip)["logits"], -1)
        got = torch.softmax(model.eval()(clip)["logits"], -1)
    # Each class's score is split evenly between its two teams: the class scores are the source's.
    np.testing.assert_allclose(got[..., 1 : C + 1], got[..., C + 1 :], atol=1e-6)
    np.testing.assert_allclose(got[..., 1 : C + 1] + got[..., C + 1 :], want[..., 1:], atol=1e-5)
    np.testing.assert_allclose(got[..., 0], want[..., 0], atol=1e-5)


def test_a_classes_model_starts_a_team_head_model_with_fresh_class_outputs(tmp_path):
    source_dir = write_tiny_model(tmp_path / "classes", classes=CLASSES, team_encoding="classes")
    torch.manual_seed(3)
    config = default_config(pretrained=False, clip_len=8, classes=CLASSES, team=True)
    model = build_model(config)
    fresh = model.head.fc.weight.clone()
    done = init_from(model, config, str(source_dir))
    assert set(done.reinitialised) == {"head.fc.weight", "head.fc.bias"}
    assert "team-as-classes" in done.reinitialised["head.fc.weight"] and torch.equal(
        model.head.fc.weight, fresh
    )
    assert set(done.new) == {"team_head.weight", "team_head.bias"}
    assert any(name.startswith("backbone.") for name in done.loaded)


# ---- every step with a classes model


def _library(root):
    def video(name, n, events):
        return {"video": name, "num_frames": n, "events": events}

    return make_library(
        root,
        {
            "train": [
                video("lg/s/a", 40, [event(10), event(25, "DRIVE", "right")]),
                video("lg/s/b", 24, [event(5, "DRIVE"), event(15, "PASS", "right")]),
            ],
            "val": [video("lg/s/c", 24, [event(8, "PASS", "right"), event(16, "DRIVE")])],
            "test": [video("lg/s/d", 20, [event(7, "DRIVE"), event(12, "PASS", "right")])],
        },
    )


@pytest.mark.slow
def test_a_classes_model_trains_evaluates_with_team_map_and_infers_events_with_a_team(tmp_path):
    import eval_soccernet_ball
    from model.inference import run_inference
    from tests.test_train import run, train_argv
    from util.cli import run_main
    from util.postprocess import load_scores

    frame_dir, data_dir = _library(tmp_path)
    flags = ("--team", "--team_encoding", "classes", "--num_epochs", "1", "--start_val_epoch", "0")
    assert run(train_argv(tmp_path, frame_dir, data_dir, *flags)) == 0
    model = tmp_path / "model"
    config = load_json(model / "config.json")
    assert (config["team"], config["team_encoding"], config["team_nms"]) == (True, "classes", "class_team")
    selection = load_json(model / "selection.json")
    assert selection["criterion"] == "team_map" and selection["postprocess"]["nms_per_team"] is True
    (npz,) = model.glob("pred-test.*.score.npz")
    ((_, (scores, team, _)),) = load_scores(npz).items()
    assert scores.shape == (20, C + 1) and team.shape == (20, C) and np.all(team <= scores[:, 1:] + 1e-6)
    # Step 4: mAP and Team mAP, and SoccerNet's results_spotting.json with each event's team.
    results, eval_dir = tmp_path / "r.json", tmp_path / "eval"
    argv = [str(data_dir), str(frame_dir), str(model), "-s", "test", "--results_json", str(results)]
    argv += ["--eval_dir", str(eval_dir)]
    assert run_main(eval_soccernet_ball.main, eval_soccernet_ball.get_args(argv)) == 0
    metrics = load_json(results)
    assert 0 <= metrics["at1"]["mAP"] <= 1 and 0 <= metrics["team_at1"]["mAP"] <= 1
    (spotting,) = eval_dir.rglob("results_spotting.json")
    rows = load_json(spotting)["predictions"]
    assert rows and all(r["team"] in ("left", "right") for r in rows)
    # NMS per class instead (the A/B's other arm), from the same per-frame scores: a left and a right event of one
    # class no longer both stay within the window.
    per_class = tmp_path / "eval-per-class"
    argv = [*argv[:-1], str(per_class), "--team_nms", "class"]
    assert run_main(eval_soccernet_ball.main, eval_soccernet_ball.get_args(argv)) == 0
    (spotting,) = per_class.rglob("results_spotting.json")
    assert 0 < len(load_json(spotting)["predictions"]) < len(rows)
    # Step 5: events with their team.
    result = run_inference(model, tmp_path / "out", frame_dir=frame_dir / "lg/s/d", score_threshold=0.0)
    assert result["team"] is True and result["events"]
    assert all(e["team"] in ("left", "right") and 0 <= e["team_score"] <= 1 for e in result["events"])


@pytest.mark.parametrize("soft", [False, True])
def test_live_finality_follows_each_teams_series_under_nms_per_class_and_team(soft):
    from util.postprocess import final_events_end

    rng = np.random.default_rng(0)
    n = 120
    scores = rng.random((n, C + 1)) ** 4
    scores /= scores.sum(axis=1, keepdims=True)
    right = scores[:, 1:] * rng.random((n, C))
    options = dict(threshold=0.01, nms_window=4, soft=soft, team_scores=None, per_team=True)
    full = scores_to_events(scores, CLASSES, 25.0, **{**options, "team_scores": right})
    for cut in range(10, n, 7):
        end = final_events_end(scores[:cut], CLASSES, 25.0, **{**options, "team_scores": right[:cut]})
        early = scores_to_events(scores[:cut], CLASSES, 25.0, **{**options, "team_scores": right[:cut]})
        assert [e for e in early if e["frame"] < end] == [e for e in full if e["frame"] < end], cut
