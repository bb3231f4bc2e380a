"""Joint training on two datasets (``--joint DATASET2 FRAME_DIR2``, issue 36): one backbone and temporal head, a
second class head over the second dataset's classes, batches holding clips of both; validation, selection and
every later step on the first dataset and its head."""

from __future__ import annotations

import pytest
import torch

from model.common import build_model, check_config, default_config, load_config
from model.train.loss import joint_loss, spot_loss
from model.transfer import init_from
from tests.conftest import CLASSES, event, make_library, write_tiny_model
from tests.test_team_classes import _library
from util.io import DataError, load_json, store_json

V2 = ["Goal", "Corner", "Foul"]  # the second dataset's classes (SoccerNet-v2-like)


def _v2(root, size=(96, 48)):
    """A second dataset: other classes, a train split only (no val: it is never validated on), smaller frames
    drawn brighter (the clips of a batch tell the datasets apart)."""

    def video(name, n, events):
        return {"video": name, "num_frames": n, "events": events}

    def draw(image, frame, video):
        image[:] = 250

    splits = {
        "train": [
            video("v2/s/x/1", 30, [event(6, "Goal", "home"), event(20, "Corner", "away")]),
            video("v2/s/x/2", 30, [event(12, "Foul", "home")]),
        ]
    }
    frame_dir, data_dir = make_library(root, splits, draw=draw, size=size)
    (data_dir / "class.txt").write_text("\n".join(V2) + "\n")
    return frame_dir, data_dir


def _argv(tmp_path, frame_dir, data_dir, v2_frames, v2_data, *extra):
    from tests.test_train import train_argv

    return train_argv(tmp_path, frame_dir, data_dir, "--joint", str(v2_data), str(v2_frames), *extra)


# ---- the network, its config and the loss


def test_a_joint_model_has_a_second_class_head_used_in_training_only():
    torch.manual_seed(0)
    config = default_config(pretrained=False, clip_len=8, classes=CLASSES, team=True, joint_classes=V2)
    model = build_model(config)
    clip = torch.rand(3, 8, 3, 32, 48)
    out = model.train()(clip)
    assert out["logits"].shape == (3, 8, len(CLASSES) + 1) and out["joint_logits"].shape == (
        3,
        8,
        len(V2) + 1,
    )
    assert "team" in out
    with torch.no_grad():
        assert "joint_logits" not in model.eval()(clip)  # eval, inference and the app: the first head only
    assert build_model(default_config(pretrained=False, clip_len=8)).joint_head is None
    with pytest.raises(DataError, match="joint_classes must be null or a non-empty list"):
        check_config({**config, "joint_classes": []})


def test_the_joint_loss_puts_each_datasets_clips_on_its_own_head():
    torch.manual_seed(0)
    rows, more, t, c, k = 2, 3, 5, len(CLASSES) + 1, len(V2) + 1
    output = {
        "logits": torch.randn(rows + more, t, c),
        "joint_logits": torch.randn(rows + more, t, k),
        "team": torch.randn(rows + more, t),
    }
    targets = torch.softmax(torch.randn(rows, t, c), -1)
    joint_targets = torch.softmax(torch.randn(more, t, k), -1)
    team, team_mask = torch.rand(rows, t).round(), torch.ones(rows, t)
    weights, joint_weights = torch.ones(c), torch.ones(k)
    loss = joint_loss(
        output, targets, weights, joint_targets, joint_weights, 0.5, team=team, team_mask=team_mask
    )
    first = {"logits": output["logits"][:rows], "team": output["team"][:rows]}
    expected = spot_loss(first, targets, weights, team=team, team_mask=team_mask)
    second = torch.nn.functional.cross_entropy(
        output["joint_logits"][rows:].reshape(-1, k), joint_targets.reshape(-1, k), weight=joint_weights
    )
    assert loss.item() == pytest.approx((expected + 0.5 * second).item(), rel=1e-6)
    # The first rows of the second head and the last rows of the first are not used.
    output["joint_logits"][:rows] += 100.0
    output["logits"][rows:] += 100.0
    again = joint_loss(
        output, targets, weights, joint_targets, joint_weights, 0.5, team=team, team_mask=team_mask
    )
    assert again.item() == pytest.approx(loss.item(), rel=1e-6)


# ---- the batches


def test_a_joint_batch_holds_clips_of_both_datasets(tmp_path):
    from model.train.dist import Dist
    from model.train.inputs import build_loaders, choose_inputs
    from model.train.run_config import load_dataset, load_joint
    from tests.test_train import train_argv
    from train_e2e import get_args

    frame_dir, data_dir = _library(tmp_path / "ball")
    v2_frames, v2_data = _v2(tmp_path / "v2")
    argv = train_argv(tmp_path, frame_dir, data_dir, "--joint", str(v2_data), str(v2_frames))
    args = get_args([*argv[: argv.index("--batch_size") + 1], "4", *argv[argv.index("--batch_size") + 2 :]])
    args.epoch_num_frames = 64  # 8 clips of 8: 2 steps of 4 clips, 2 of each dataset
    _, classes, splits = load_dataset(args.dataset)
    joint = load_joint(args, classes)
    assert joint.classes == V2 and [v["video"] for v in joint.train] == ["v2/s/x/1", "v2/s/x/2"]
    dist = Dist(device=torch.device("cpu"))
    loaders = build_loaders(args, choose_inputs(frame_dir), classes, splits, dist, joint)
    assert loaders.num_train_batches() == 2 and loaders.micro_batch == 4
    loaders.set_epoch(0)
    pairs = list(loaders.train_batches())
    assert len(pairs) == 2
    for first, second in pairs:
        # 2 clips of each, the second's frames read at the first's size (96x48 -> 112x64).
        assert first["frames"].shape == second["frames"].shape == (2, 8, 64, 112, 3)
        frames = [f.flatten(0, 1) for f in (first["frames"], second["frames"])]
        shown = [f[f.flatten(1).amax(1) > 0] for f in frames]  # frames past a video's end are black
        assert shown[0].max() < 225 < shown[1].min()  # grey levels 20-219 here, 250 there
        assert first["labels"].max() <= len(CLASSES) and second["labels"].max() <= len(V2)


def test_joint_flags_are_checked(tmp_path, capsys):
    from tests.test_train import run

    frame_dir, data_dir = _library(tmp_path / "ball")
    v2_frames, v2_data = _v2(tmp_path / "v2")
    assert run(_argv(tmp_path, frame_dir, data_dir, v2_frames, v2_data, "--joint_fraction", "0.2")) == 2
    assert "--joint_fraction 0.2 of a batch of 2 clips" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run(_argv(tmp_path, frame_dir, data_dir, v2_frames, v2_data, "--joint_fraction", "1.0"))
    assert "--joint_fraction must be in (0, 1)" in capsys.readouterr().err
    assert run(_argv(tmp_path, frame_dir, data_dir, frame_dir, data_dir)) == 2
    assert "that is DATASET itself" in capsys.readouterr().err
    (v2_data / "train.json").unlink()
    assert run(_argv(tmp_path, frame_dir, data_dir, v2_frames, v2_data)) == 2
    assert f"{v2_data}/train.json: missing" in capsys.readouterr().err


# ---- end to end


@pytest.mark.slow
def test_joint_training_validates_selects_and_predicts_on_the_first_dataset_only(tmp_path, caplog):
    import eval_soccernet_ball
    from model.inference import run_inference
    from tests.test_train import run, train_argv
    from util.cli import run_main

    frame_dir, data_dir = _library(tmp_path / "ball")
    v2_frames, v2_data = _v2(tmp_path / "v2")
    caplog.set_level("INFO")
    flags = ("--team", "--start_val_epoch", "1", "--joint_weight", "0.5")
    assert run(_argv(tmp_path, frame_dir, data_dir, v2_frames, v2_data, *flags)) == 0
    model = tmp_path / "model"
    config = load_config(model)
    assert config["classes"] == CLASSES and config["joint_classes"] == V2
    assert (
        config["train"]["joint"] == [str(v2_data), str(v2_frames)] and config["train"]["joint_weight"] == 0.5
    )
    assert "joint training with" in caplog.text and "resized to 112x64" in caplog.text
    state = torch.load(model / "checkpoint_000.pt", weights_only=True)
    assert state["joint_head.weight"].shape[0] == len(V2) + 1  # the folder keeps both heads
    # Validation, the best epoch and the predictions: the first dataset's videos, its classes.
    history = load_json(model / "loss.json")
    assert [h["val_mAP"] is not None for h in history] == [False, True, True]
    selection = load_json(model / "selection.json")
    epoch = selection["epoch"]
    assert {p["video"] for p in load_json(model / f"pred-val.{epoch}.json")} <= {"lg/s/c"}
    assert {p["video"] for p in load_json(model / f"pred-test.{epoch}.json")} <= {"lg/s/d"}
    # The val metric the epoch was chosen by is the first dataset's, recomputed from its predictions.
    from model.select import validation_metrics
    from util.postprocess import load_scores

    scores = load_scores(model / f"pred-val.{epoch}.score.npz")
    again = validation_metrics(scores, load_json(data_dir / "val.json"), config)
    assert again["val_mAP"] == pytest.approx(history[epoch]["val_mAP"])
    # Eval and inference read the first head.
    results = tmp_path / "r.json"
    argv = [str(data_dir), str(frame_dir), str(model), "-s", "test", "--results_json", str(results)]
    assert run_main(eval_soccernet_ball.main, eval_soccernet_ball.get_args(argv)) == 0
    assert set(load_json(results)["at1"]["per_class"]) == set(CLASSES)
    result = run_inference(model, tmp_path / "out", frame_dir=frame_dir / "lg/s/d", score_threshold=0.0)
    assert {e["label"] for e in result["events"]} <= set(CLASSES)
    # --init_from keeps the second head with --joint over the same classes, drops it without.
    kept = tmp_path / "kept"
    more = ("--init_from", str(model), "-s", str(kept), "--num_epochs", "1", "--start_val_epoch", "0")
    caplog.clear()
    assert run([*_argv(tmp_path, frame_dir, data_dir, v2_frames, v2_data, "--team"), *more]) == 0
    assert "joint_head" not in caplog.text  # loaded: neither re-initialised, new nor unused
    tuned = torch.load(kept / "checkpoint_000.pt", weights_only=True)
    assert tuned["joint_head.weight"].shape == state["joint_head.weight"].shape
    dropped = tmp_path / "dropped"
    caplog.clear()
    argv = train_argv(tmp_path, frame_dir, data_dir, "--team", "--init_from", str(model), "-s", str(dropped))
    assert run([*argv, "--num_epochs", "1", "--start_val_epoch", "0"]) == 0
    assert "unused (only in the source): joint_head.weight, joint_head.bias" in caplog.text
    assert load_config(dropped)["joint_classes"] is None


def test_init_from_keeps_the_second_head_only_over_the_same_second_classes(tmp_path):
    source_dir = write_tiny_model(tmp_path / "joint", classes=CLASSES, joint_classes=V2)
    source = torch.load(source_dir / "checkpoint_000.pt", weights_only=True)
    for joint, kept in ((V2, True), (["Goal", "Corner", "Offside"], False), (None, None)):
        torch.manual_seed(1)
        config = default_config(pretrained=False, clip_len=8, classes=CLASSES, joint_classes=joint)
        model = build_model(config)
        fresh = {k: v.clone() for k, v in model.state_dict().items()}
        done = init_from(model, config, str(source_dir))
        state = model.state_dict()
        if kept is None:
            assert {"joint_head.weight", "joint_head.bias"} <= set(done.unused)
        elif kept:
            assert "joint_head.weight" in done.loaded
            assert torch.equal(state["joint_head.weight"], source["joint_head.weight"])
        else:
            assert done.reinitialised["joint_head.weight"] == "second head over other classes"
            assert torch.equal(state["joint_head.weight"], fresh["joint_head.weight"])


def test_a_model_folder_from_before_joint_training_loads_without_a_second_head(tmp_path):
    from model.common import load_model

    folder = write_tiny_model(tmp_path / "old")
    config = load_json(folder / "config.json")
    config.pop("joint_classes", None)
    store_json(folder / "config.json", config)
    model, loaded, _ = load_model(folder)
    assert model.joint_head is None and loaded["joint_classes"] is None


# ---- the A/B runner (python -m synthetic.ab_demo)


def test_every_arm_of_the_demo_ab_is_the_demos_training_at_the_same_compute(tmp_path, monkeypatch):
    import train_e2e
    from synthetic import ab_demo

    monkeypatch.setattr(ab_demo, "prepare_v2", lambda out, python: None)
    monkeypatch.setattr(
        ab_demo, "pretrain_v2", lambda out, seed, python: out / "models" / f"v2-pretrain-s{seed}"
    )
    frames = {}
    assert {base for base, _, _ in ab_demo.PREDICT_ARMS.values()} <= set(ab_demo.ARMS) - set(
        ab_demo.PREDICT_ARMS
    )
    for arm in [a for a in ab_demo.ARMS if a not in ab_demo.PREDICT_ARMS]:
        argv = ab_demo.arm_argv(tmp_path, arm, 1, "python")
        assert argv[:2] == ["python", "train_e2e.py"]
        args = train_e2e.get_args([*argv[2:], "-s", str(tmp_path / arm)])
        assert (args.feature_arch, args.temporal_arch, args.clip_len) == ("rny002", "gru", 20) and args.team
        share = 1 - args.joint_fraction if args.joint else 1.0
        frames[arm] = args.num_epochs * args.epoch_num_frames * share  # the demo dataset's frames
        assert args.epoch_num_frames == 4000 and args.start_val_epoch == args.num_epochs - 3
        assert args.criterion == "map" and args.team_nms is None  # the demo as it was before the A/B
        if arm == "classes":
            assert args.team_encoding == "classes"
        if arm == "sequential":
            assert args.init_from == str(
                tmp_path / "models" / "v2-pretrain-s0"
            )  # one pretraining for all seeds
    # The same compute everywhere: 12 epochs of the demo, or 12 shared with the v2-style library.
    assert frames == {"head": 48000, "classes": 48000, "joint": 24000, "sequential": 24000}
    runs = [{"mAP@1": 0.9, "Team mAP@1": v} for v in (0.70, 0.72, 0.74)]
    text = ab_demo.table({"head": runs})
    assert "| **0.720** ± 0.050 (0.700, 0.720, 0.740) |" in text  # t(2) = 4.303: 4.303 x 0.02 / sqrt(3)


def test_a_resume_takes_the_second_dataset_by_name_or_path_and_its_frames_moved(tmp_path):
    import shutil

    from model.train.options import older_config_keys, older_flags
    from model.train.run_config import check_resume_config

    _library(tmp_path / "ball")
    v2_frames, v2_data = _v2(tmp_path / "v2")
    config = {
        **older_config_keys(),
        **default_config(pretrained=False, clip_len=8, classes=CLASSES, joint_classes=V2),
    }

    def run_of(data, frames):
        return {**config, "train": {**older_flags(), "joint": [str(data), str(frames)]}}

    saved = run_of(v2_data, v2_frames)
    moved = tmp_path / "scratch"
    shutil.copytree(v2_frames, moved)
    check_resume_config(saved, run_of(v2_data, moved), tmp_path)
    (moved / "v2/s/x/2/000029.jpg").unlink()  # not the frames trained on
    with pytest.raises(DataError, match="--joint FRAME_DIR2 .* does not hold the frames trained on"):
        check_resume_config(saved, run_of(v2_data, moved), tmp_path)
    with pytest.raises(DataError, match="another second dataset"):
        check_resume_config(saved, run_of(tmp_path / "ball" / "data", v2_frames), tmp_path)
