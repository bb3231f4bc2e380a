"""Frozen features: extract_features.py, the feature folder (dataset.feature) and train_e2e.py on it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import extract_features
import train_e2e
from dataset.feature import (
    FeatureClipDataset,
    FeatureSource,
    load_backbone_state,
    load_feature_info,
    load_features,
)
from dataset.source import JpegDirSource
from dataset.transform import center_crop, to_clips
from model.common import build_model, default_config, load_model
from model.predict import predict_scores, predict_videos
from tests.conftest import CLASSES, feature_library, feature_train_argv, write_tiny_model
from util.cli import run_main
from util.io import DataError, load_json
from util.postprocess import load_scores

VIDEOS = {"lg/s/a": 40, "lg/s/b": 24, "lg/s/c": 24, "lg/s/d": 20}


def extract(data_dir: Path, frame_dir: Path, out_dir: Path, *flags: str) -> int:
    argv = [str(data_dir), str(frame_dir), "-o", str(out_dir), "--device", "cpu", *flags]
    return run_main(extract_features.main, extract_features.get_args(argv))


def train(argv: list[str]) -> int:
    return run_main(train_e2e.main, train_e2e.get_args(argv))


@pytest.fixture(scope="module")
def extracted(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(frame dir, data dir, feature dir) of rny002 with random weights over ``feature_library`` (read-only)."""
    root = tmp_path_factory.mktemp("features")
    frame_dir, data_dir = feature_library(root)
    assert extract(data_dir, frame_dir, root / "features", "-m", "rny002", "--no_pretrained") == 0
    return frame_dir, data_dir, root / "features"


def reference_features(backbone: str, feature_dir: Path, frames: np.ndarray, crop_hw, clip_len: int = 100):
    """``frame_features`` of a model holding backbone.pt, on one video's frames, in fp32."""
    model = build_model(default_config(feature_arch=backbone, clip_len=clip_len, pretrained=False)).eval()
    model.backbone.load_state_dict(load_backbone_state(feature_dir))
    clips = center_crop(to_clips(torch.from_numpy(frames)[None]), crop_hw)
    with torch.inference_mode():
        return model.frame_features(model.normalise(clips))[0].numpy()


# ---- extraction


@pytest.mark.parametrize(
    ("backbone", "flags", "crop_hw"),
    [
        ("rny002", ("--crop_dim", "48", "--batch_size", "16"), (48, 48)),
        # A temporal shift mixes frames within pieces of clip_len aligned to the video's start, as frame_features
        # does on a whole video.
        ("rny002_tsm", ("--clip_len", "8", "--batch_size", "20"), (64, 112)),
    ],
)
def test_features_are_frame_features_of_the_same_frames(tmp_path, monkeypatch, backbone, flags, crop_hw):
    monkeypatch.setenv("SPOT_CPU_AMP", "off")  # fp32 on any CPU: the float16 rounding is the only difference
    frame_dir, data_dir = feature_library(tmp_path)
    out = tmp_path / "features"
    assert (
        extract(data_dir, frame_dir, out, "-m", backbone, "--no_pretrained", "--splits", "train", *flags) == 0
    )
    info = load_feature_info(out)
    assert info["feature_arch"] == backbone and info["source"] == "random" and info["dtype"] == "float16"
    assert (info["frame_height"], info["frame_width"], info["source_width"], info["source_height"]) == (
        *crop_hw,
        112,
        64,
    )
    assert info["fps"] == 25.0 and info["feature_dim"] == 368 and info["precision"] == "fp32"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.npy")) == ["lg/s/a.npy", "lg/s/b.npy"]
    clip_len = int(info["clip_len"])
    for video in ("lg/s/a", "lg/s/b"):
        stored = np.load(out / f"{video}.npy")
        assert stored.dtype == np.float16 and stored.shape == (VIDEOS[video], 368)
        frames = np.concatenate(list(JpegDirSource(frame_dir / video).iter_chunks(100)))
        expected = reference_features(backbone, out, frames, crop_hw, clip_len)
        np.testing.assert_allclose(stored.astype(np.float32), expected, rtol=2e-3, atol=2e-3)


def test_features_of_a_trained_model_use_its_frame_size_and_crop(tmp_path):
    frame_dir, data_dir = feature_library(tmp_path)
    # write_tiny_model: 5 fps, frames resized to 114x64 and cropped to 112x64 (the library is at 25 fps).
    model_dir = write_tiny_model(tmp_path / "m5")
    with pytest.raises(
        DataError, match=r"m5/config.json: the model runs at 5 fps but the parsed labels are at 25"
    ):
        extract_features.main(
            extract_features.get_args(
                [str(data_dir), str(frame_dir), "-o", str(tmp_path / "f5"), "--model_dir", str(model_dir)]
            )
        )
    model_dir = write_tiny_model(tmp_path / "m25", fps=25.0)
    out = tmp_path / "features"
    assert extract(data_dir, frame_dir, out, "--model_dir", f"{model_dir}:0", "--splits", "test") == 0
    info = load_feature_info(out)
    assert (info["source"], info["model_dir"], info["epoch"]) == ("model", str(model_dir.resolve()), 0)
    assert (info["source_width"], info["source_height"], info["frame_width"], info["frame_height"]) == (
        114,
        64,
        112,
        64,
    )
    model, config, _ = load_model(model_dir, 0)
    state = load_backbone_state(out)
    assert all(torch.equal(state[k], v) for k, v in model.backbone.state_dict().items())
    frames = np.concatenate(list(JpegDirSource(frame_dir / "lg/s/d", size=(114, 64)).iter_chunks(100)))
    clips = center_crop(to_clips(torch.from_numpy(frames)[None]), (64, 112))
    from model.predict import autocast

    with torch.inference_mode(), autocast(torch.device("cpu")):
        expected = model.frame_features(model.normalise(clips))[0].float().numpy()
    np.testing.assert_allclose(np.load(out / "lg/s/d.npy").astype(np.float32), expected, rtol=2e-2, atol=2e-2)
    with pytest.raises(SystemExit):  # the model decides its geometry
        extract_features.get_args(
            [str(data_dir), str(frame_dir), "-o", "x", "--model_dir", "m", "--crop_dim", "2"]
        )


def test_a_rerun_skips_finished_videos_and_a_crash_leaves_nothing_finished(tmp_path, monkeypatch, capsys):
    frame_dir, data_dir = feature_library(tmp_path)
    out = tmp_path / "features"
    flags = ("-m", "rny002", "--no_pretrained")
    real_save = np.save

    def crash_on_d(f, array, **kwargs):
        if array.shape[0] == VIDEOS["lg/s/d"]:
            f.write(b"\x93NUMPY half a file")
            raise KeyboardInterrupt  # killed mid-write
        real_save(f, array, **kwargs)

    monkeypatch.setattr(np, "save", crash_on_d)
    assert extract(data_dir, frame_dir, out, *flags) == 130
    monkeypatch.setattr(np, "save", real_save)
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.npy"))
    assert written == ["lg/s/a.npy", "lg/s/b.npy", "lg/s/c.npy"]  # d: nothing, not even a partial file
    assert not [p for p in out.rglob(".*") if p.is_file()]  # no temporary file left
    assert (out / "features.json").is_file() and (out / "backbone.pt").is_file()

    # A rerun computes only what is missing; a file that is not a readable feature array is computed again.
    stamps = {v: (out / f"{v}.npy").stat().st_mtime_ns for v in ("lg/s/a", "lg/s/b")}
    (out / "lg/s/c.npy").write_bytes(b"garbage")
    capsys.readouterr()
    assert extract(data_dir, frame_dir, out, *flags) == 0
    assert "2 videos written, 2 skipped (finished)" in capsys.readouterr().out
    assert {v: (out / f"{v}.npy").stat().st_mtime_ns for v in stamps} == stamps
    assert load_features(out / "lg/s/c.npy", 24).shape == (24, 368)
    assert load_features(out / "lg/s/d.npy", 20).shape == (20, 368)

    # Features of another backbone are never mixed into the folder; --overwrite recomputes every video.
    other = ("-m", "rn18", "--no_pretrained")
    with pytest.raises(
        DataError, match=r"features.json: the folder holds other features \(feature_arch: 'rny002'"
    ):
        extract_features.main(
            extract_features.get_args([str(data_dir), str(frame_dir), "-o", str(out), *other])
        )
    assert extract(data_dir, frame_dir, out, *other, "--overwrite", "--dtype", "float32") == 0
    info = load_feature_info(out)
    assert (info["feature_arch"], info["feature_dim"], info["dtype"]) == ("rn18", 512, "float32")
    assert np.load(out / "lg/s/a.npy").dtype == np.float32
    assert all(np.load(out / f"{v}.npy").shape == (n, 512) for v, n in VIDEOS.items())


def test_missing_frames_fail_by_name_and_the_other_videos_finish(tmp_path, capsys):
    frame_dir, data_dir = feature_library(tmp_path)
    (frame_dir / "lg/s/b/000007.jpg").unlink()
    shutil.rmtree(frame_dir / "lg/s/d")
    out = tmp_path / "features"
    assert extract(data_dir, frame_dir, out, "-m", "rny002", "--no_pretrained") == 1
    err = capsys.readouterr().err
    assert "2 of 4 videos failed" in err
    assert f"{frame_dir / 'lg/s/b/000007.jpg'}: frame missing" in err
    assert f"{frame_dir / 'lg/s/d'}: frame folder not found" in err
    assert sorted(p.name for p in out.rglob("*.npy")) == ["a.npy", "c.npy"]


def test_an_imagenet_backbone_offline_says_how_to_get_its_weights(tmp_path, monkeypatch, capsys):
    import timm

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(timm, "create_model", offline)
    frame_dir, data_dir = feature_library(tmp_path)
    assert extract(data_dir, frame_dir, tmp_path / "features", "-m", "rny002") == 2
    err = capsys.readouterr().err
    assert (
        "cannot download the ImageNet weights of backbone 'regnety_002'" in err and "--no_pretrained" in err
    )
    assert not (tmp_path / "features").exists()


def test_corrupt_or_missing_feature_files_are_named(extracted, tmp_path):
    _, data_dir, features = extracted
    folder = tmp_path / "features"
    shutil.copytree(features, folder)
    videos = load_json(data_dir / "train.json")
    dataset = FeatureClipDataset(folder, videos, CLASSES, clip_len=8, num_clips=4)
    item = dataset[(0, 1)]
    assert item["features"].shape == (8, 368) and item["features"].dtype == torch.float32
    source = FeatureSource(folder / "lg/s/a.npy", 25.0, 40)
    assert [len(c) for c in source.iter_chunks(16)] == [16, 16, 8]

    path = folder / "lg/s/a.npy"
    path.write_bytes(path.read_bytes()[:200])  # truncated
    with pytest.raises(DataError, match=rf"{path}: not a readable \.npy array .*extract_features\.py"):
        FeatureClipDataset(folder, videos, CLASSES, clip_len=8, num_clips=4)
    path.unlink()
    with pytest.raises(
        DataError, match=rf"{path}: feature file missing; compute them with extract_features\.py"
    ):
        FeatureClipDataset(folder, videos, CLASSES, clip_len=8, num_clips=4)
    np.save(path, np.zeros((30, 368), np.float16))
    with pytest.raises(DataError, match=rf"{path}: 30 frames of features but the labels say 40"):
        FeatureSource(path, 25.0, 40)
    np.save(path, np.zeros((40, 368), np.int64))
    with pytest.raises(DataError, match=rf"{path}: expected a \(frames, dim\) float array"):
        load_features(path)
    (folder / "backbone.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match=r"backbone.pt: cannot load"):
        load_backbone_state(folder)


# ---- training on features


def test_training_on_features_refuses_flags_that_disagree(extracted, tmp_path, capsys):
    frame_dir, data_dir, features = extracted
    argv = feature_train_argv(data_dir, features, tmp_path / "model", "--no_pretrained")
    assert train([*argv, "-m", "rn18"]) == 2
    assert "-m rn18: " in capsys.readouterr().err
    assert train([*argv, "--crop_dim", "32"]) == 2
    assert "was cropped at none; leave --crop_dim out" in capsys.readouterr().err
    assert not list((tmp_path / "model").glob("checkpoint_*.pt"))
    # Without features.json, -m stays required.
    with pytest.raises(SystemExit):
        train_e2e.get_args(feature_train_argv(data_dir, frame_dir, tmp_path / "model"))


@pytest.mark.slow
def test_training_on_features_gives_a_complete_model(extracted, tmp_path):
    frame_dir, data_dir, features = extracted
    model_dir = tmp_path / "model"
    assert train(feature_train_argv(data_dir, features, model_dir, "--team")) == 0
    config = load_json(model_dir / "config.json")
    frozen = config["frozen_features"]
    assert frozen["features_json"] == str((features / "features.json").resolve())
    assert (
        frozen["feature_arch"] == config["feature_arch"] == "rny002"
        and config["train"]["feature_arch"] == "rny002"
    )
    assert (config["frame_height"], config["frame_width"], config["source_width"]) == (64, 112, 112)
    selection = load_json(model_dir / "selection.json")
    best = selection["epoch"]
    for split in ("val", "test"):
        assert (model_dir / f"pred-{split}.{best}.json").is_file()
        assert (model_dir / f"pred-{split}.{best}.score.npz").is_file()
    history = load_json(model_dir / "loss.json")
    assert [h["epoch"] for h in history] == [0, 1, 2] and history[1]["val_mAP"] is not None

    # Every checkpoint holds the whole network, its backbone that of backbone.pt; only the head was trained.
    backbone = load_backbone_state(features)
    first, last = (torch.load(model_dir / f"checkpoint_{e:03d}.pt", weights_only=True) for e in (0, 2))
    for weights in (first, last):
        assert all(torch.equal(weights[f"backbone.{k}"], v) for k, v in backbone.items())
    assert not all(torch.equal(first[k], last[k]) for k in last if k.startswith("head."))
    optim = torch.load(model_dir / "optim_002.pt", weights_only=True)["optimizer"]
    head_tensors = [k for k in last if not k.startswith("backbone.") and "running_" not in k]
    assert sum(len(g["params"]) for g in optim["param_groups"]) == len(head_tensors)

    # The model runs on frames as any model does: its scores on frames are those it predicted on the features
    # (up to the features' float16 rounding), and step 4 evaluates it.
    net, net_config, epoch = load_model(model_dir)
    assert epoch == best
    on_frames = predict_videos(net, net_config, frame_dir, load_json(data_dir / "val.json"), device="cpu")
    written = load_scores(model_dir / f"pred-val.{best}.score.npz")
    for video, outputs in on_frames.items():
        np.testing.assert_allclose(outputs[0], written[video][0], atol=5e-3)
        np.testing.assert_allclose(outputs[1], written[video][1], atol=5e-3)
    scores = predict_scores(net, net_config, FeatureSource(features / "lg/s/c.npy", 25.0, 24), device="cpu")
    np.testing.assert_allclose(scores[0], written["lg/s/c"][0], atol=1e-6)
    import eval_soccernet_ball

    results = tmp_path / "results.json"
    argv = [str(data_dir), str(frame_dir), str(model_dir), "-s", "test", "--results_json", str(results)]
    assert run_main(eval_soccernet_ball.main, eval_soccernet_ball.get_args(argv)) == 0
    assert load_json(results)


@pytest.mark.slow
def test_features_of_a_video_library_decoded_on_the_fly(match_video, tmp_path):
    from util.soccernet import video_id_of_file

    library = match_video.parents[3]
    video_id = video_id_of_file(match_video)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "class.txt").write_text("PASS\n")
    entry = {"video": video_id, "num_frames": 100, "fps": 25.0, "width": 398, "height": 224, "events": []}
    (data_dir / "test.json").write_text(__import__("json").dumps([entry]))
    out = tmp_path / "features"
    assert extract(data_dir, library, out, "-m", "rny002", "--no_pretrained", "--crop_dim", "224") == 0
    stored = np.load(out / f"{video_id}.npy")
    assert stored.shape == (100, 368) and np.isfinite(stored).all()
    info = load_feature_info(out)
    assert (info["source_width"], info["source_height"], info["frame_width"], info["frame_height"]) == (
        398,
        224,
        224,
        224,
    )
