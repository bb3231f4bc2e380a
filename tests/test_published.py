"""Published checkpoints (import_checkpoint.py): each format imports and gives the original code's outputs.

The reference data (tests/data/published/, made by ``python -m tests.published.make_references`` from the original
projects' public code at the commits each <format>.json names) hold, per format: the original's config, the manifest
of its state dict (key, shape, dtype in order) and the seed of its weights (``tests.published.seeded``), and the
original model's per-frame outputs on frames/ in this project's window layout. Here the same weights are generated
again, written in the original file format, imported with one command and run through inference_spot.py.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import import_checkpoint
import inference_spot
from model import published
from model.common import build_model, default_config, load_config, load_model
from model.impl.gsm import GatedShift, house_gated_channels
from model.predict import model_frame_source, predict_scores
from model.shift import shifted_blocks
from tests.published.seeded import seeded_state_dict
from util.cli import run_main
from util.io import DataError, load_json, store_json

DATA = Path(__file__).parent / "data" / "published"
FORMATS = ["e2e-spot", "opensportslib", "tdeed", "sn-teamspotting"]
# The bars: the network to 1e-4 on the same pixels (fp32, CPU); the whole inference to 2e-3 after decoding.
SAME_PIXELS_TOL = 1e-4
DECODED_TOL = 2e-3


def reference(fmt: str) -> tuple[dict, dict[str, np.ndarray]]:
    record = json.loads((DATA / f"{fmt}.json").read_text())
    with np.load(DATA / f"{fmt}.npz") as data:
        return record, {k: data[k] for k in data.files}


def write_published(
    fmt: str, folder: Path, state: dict | None = None, config: dict | None = None
) -> list[str]:
    """The seeded checkpoint of ``fmt`` written as its project publishes it; returns import_checkpoint.py's
    SOURCE and flags for it."""
    record, _ = reference(fmt)
    state = state if state is not None else seeded_state_dict(record["manifest"], record["seed"])
    config = config if config is not None else record["original_config"]
    folder.mkdir(parents=True, exist_ok=True)
    if fmt == "e2e-spot":  # a folder of jhong93/e2e-spot-models
        torch.save(state, folder / "checkpoint_088.pt")
        (folder / "config.json").write_text(json.dumps(config))
        return [str(folder)]
    if fmt == "opensportslib":  # the trainer dict and its config.yaml
        trainer = {"epoch": 7, "model_state_dict": state, "optimizer_state_dict": {}, "best_epoch": 7}
        torch.save(trainer, folder / "model.pt")
        (folder / "config.yaml").write_text(yaml.safe_dump(config))
        return [str(folder / "model.pt"), "--config", str(folder / "config.yaml")]
    torch.save(state, folder / "checkpoint_best.pt")  # T-DEED, sn-teamspotting: and the config JSON
    (folder / "config.json").write_text(json.dumps(config))
    return [str(folder / "checkpoint_best.pt"), "--config", str(folder / "config.json")]


def run_import(argv: list[str]) -> int:
    return run_main(import_checkpoint.main, import_checkpoint.get_args(argv))


class Imported(dict):
    """format -> model folder, and ``configs``: each config.json as the importer wrote it."""

    configs: dict[str, dict]


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Imported:
    """Every format written and imported once. The importer records the frame size the authors trained at (every
    step resizes frames to it); the folders here read the reference frames at their own size instead, as the
    reference outputs were computed (the network is fully convolutional up to its spatial pooling)."""
    root = tmp_path_factory.mktemp("published")
    folders = Imported()
    folders.configs = {}
    for fmt in FORMATS:
        source = write_published(fmt, root / "downloads" / fmt)
        assert run_import([*source, "-o", str(root / "models" / fmt)]) == 0
        folders[fmt] = root / "models" / fmt
        folders.configs[fmt] = at_reference_size(folders[fmt])
    return folders


def at_reference_size(model_dir: Path) -> dict:
    """Make an imported folder read frames at the reference frames' size; returns the config as imported."""
    config = load_json(model_dir / "config.json")
    store_json(model_dir / "config.json", {**config, "source_width": 112, "source_height": 64})
    return config


def frames_at(fps: float, folder: Path) -> Path:
    """The reference frames as a frame folder at ``fps`` (the model's rate: nothing is resampled)."""
    shutil.copytree(DATA / "frames", folder)
    (folder / "fps.txt").write_text(f"{fps}\n")
    return folder


def in_reference_order(scores: np.ndarray, config: dict, record: dict) -> np.ndarray:
    """Columns of this project's scores (background, config.json's classes) in the original's output order."""
    ours = ["background", *config["classes"]]
    return scores[:, [ours.index(c) for c in ["background", *record["output_classes"]]]]


# ---- equality with the original code


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_inference_on_an_imported_model_gives_the_original_outputs(fmt, imported, tmp_path, monkeypatch):
    monkeypatch.setenv("SPOT_CPU_AMP", "off")
    record, ref = reference(fmt)
    config = load_config(imported[fmt])
    frames = frames_at(float(config["fps"]), tmp_path / "frames")
    out = tmp_path / "out"
    argv = ["--model_dir", str(imported[fmt]), "--frame_dir", str(frames), "--output_dir", str(out)]
    assert run_main(inference_spot.main, inference_spot.get_args(argv)) == 0
    with np.load(out / "scores.npz") as saved:
        (video,) = [k for k in saved.files if "::" not in k]
        outputs = {k.partition("::")[2] or "scores": saved[k] for k in saved.files}
    assert video == "frames"
    scores = outputs["scores"]
    assert scores.shape == (120, len(config["classes"]) + 1)
    assert sorted(outputs) == sorted(k.split("/")[1] for k in ref if k.startswith("same_pixels/"))
    for decoding, tol in (("same_pixels", SAME_PIXELS_TOL), ("original_decoder", DECODED_TOL)):
        np.testing.assert_allclose(
            in_reference_order(scores, config, record), ref[f"{decoding}/scores"], atol=tol
        )
        if "team" in outputs:  # P(right)
            np.testing.assert_allclose(outputs["team"], ref[f"{decoding}/team"], atol=tol)
        if "displacement" in outputs:  # event - frame, in frames (magnitudes up to ~20: relative)
            d, r = outputs["displacement"], ref[f"{decoding}/displacement"]
            assert np.all(np.abs(d - r) <= tol * np.maximum(1.0, np.abs(r))), np.abs(d - r).max()
    # The outputs are not trivial: they change from frame to frame and across classes.
    assert np.abs(np.diff(scores, axis=0)).max() > 0.01 and scores.max(axis=1).mean() > 0.15


def _scores(model_dir: Path, tmp_path: Path) -> np.ndarray:
    model, config, _ = load_model(model_dir)
    source = model_frame_source(config, frames_at(float(config["fps"]), tmp_path / "frames"))
    return predict_scores(model, config, source, device="cpu")[0]


@pytest.mark.slow
def test_the_gated_shift_interleave_and_the_tdeed_upsampling_matter(imported, tmp_path, monkeypatch):
    """Without the conversion's care the outputs differ: the equality above is not a tolerance that anything meets."""
    monkeypatch.setenv("SPOT_CPU_AMP", "off")
    record, ref = reference("e2e-spot")
    monkeypatch.setattr(published.e2e_spot, "_fold_interleave", lambda state, where: 0)
    source = write_published("e2e-spot", tmp_path / "e2e")
    assert run_import([*source, "-o", str(tmp_path / "no-interleave")]) == 0
    at_reference_size(tmp_path / "no-interleave")
    config = load_config(tmp_path / "no-interleave")
    wrong = in_reference_order(_scores(tmp_path / "no-interleave", tmp_path / "a"), config, record)
    assert np.abs(wrong - ref["same_pixels/scores"]).max() > 20 * SAME_PIXELS_TOL
    monkeypatch.undo()
    monkeypatch.setenv("SPOT_CPU_AMP", "off")
    record, ref = reference("tdeed")
    import model.impl.tdeed as tdeed

    monkeypatch.setattr(tdeed, "upsample_exact", tdeed.upsample)  # align_corners=False
    config = load_config(imported["tdeed"])
    wrong = in_reference_order(_scores(imported["tdeed"], tmp_path / "b"), config, record)
    assert np.abs(wrong - ref["same_pixels/scores"]).max() > 20 * SAME_PIXELS_TOL


# ---- what the model folder records


def test_an_imported_folder_records_its_origin_and_the_authors_post_processing(imported):
    tdeed = imported.configs["tdeed"]
    source = tdeed["source"]
    assert source["format"] == "tdeed" and source["licence"].startswith("GPL-3.0")
    assert len(source["sha256"]) == 64 and source["weights_file"] == "checkpoint_best.pt"
    assert source["dropped"] == []  # its second, SoccerNet-v2 head is kept: joint_head over v2's 17 classes
    from util.soccernet import CLASSES_V2

    assert tdeed["joint_classes"] == list(CLASSES_V2)
    assert any("second (SoccerNet-v2) head kept as joint_head" in note for note in source["notes"])
    assert "jointly with SoccerNet-v2" in source["trained_on"] and "12.5 fps" in source["trained_on"]
    assert (tdeed["fps"], tdeed["frame_width"], tdeed["frame_height"], tdeed["clip_len"]) == (
        12.5,
        796,
        448,
        100,
    )
    assert (tdeed["arch_variant"], tdeed["displacement"], tdeed["window_overlap"]) == ("tdeed", 4, 0.75)
    selection = load_json(imported["tdeed"] / "selection.json")
    # T-DEED's soft NMS over +-12 frames at 12.5 fps, threshold 0.01.
    assert selection["postprocess"] == {"nms_window_s": 0.96, "soft": True, "sigma_s": 0.0, "threshold": 0.01}
    assert (imported["tdeed"] / "checkpoint_000.pt").is_file()
    e2e = imported.configs["e2e-spot"]
    assert (e2e["fps"], e2e["frame_width"], e2e["frame_height"], e2e["arch_variant"]) == (
        2.0,
        398,
        224,
        "e2e-spot",
    )
    # E2E-Spot's alphabetical classes, put in SoccerNet-v2's order (so fine-tuning on v2 labels keeps the head).
    from util.soccernet import CLASSES, CLASSES_V2

    assert e2e["classes"] == CLASSES_V2 and (imported["e2e-spot"] / "checkpoint_088.pt").is_file()
    assert load_json(imported["e2e-spot"] / "selection.json")["postprocess"]["nms_window_s"] == 1.0
    team = imported.configs["sn-teamspotting"]
    assert (
        team["team"] is True and team["classes"] == CLASSES and team["source"]["format"] == "sn-teamspotting"
    )
    osl = imported.configs["opensportslib"]
    assert (osl["feature_arch"], osl["fps"], osl["source"]["licence"]) == (
        "rny008_gsm",
        25.0,
        "AGPL-3.0 (model card)",
    )


def test_the_format_is_detected_from_the_keys(imported):
    for fmt in FORMATS:
        assert load_json(imported[fmt] / "config.json")["source"]["format"] == fmt
    with pytest.raises(DataError, match="cannot tell the checkpoint's format"):
        published.detect_format({"conv.weight": torch.zeros(1)}, None)


# ---- errors: named, and nothing written


def _refused(argv: list[str], out: Path, capsys, *expected: str) -> None:
    assert run_import([*argv, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    for text in expected:
        assert text in err, err
    assert not out.exists() and not list(out.parent.glob(f".{out.name}.importing-*"))


def test_a_truncated_or_foreign_file_is_refused_by_name(tmp_path, capsys):
    source = write_published("tdeed", tmp_path / "t")
    weights = Path(source[0])
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    _refused(source, tmp_path / "m", capsys, str(weights), "truncated, damaged or not a checkpoint")
    weights.write_text("not a checkpoint")
    _refused(source, tmp_path / "m", capsys, str(weights))


def test_a_config_that_does_not_match_the_weights_is_refused(tmp_path, capsys):
    record, _ = reference("tdeed")
    fewer = {**record["original_config"], "num_classes": 11}
    source = write_published("tdeed", tmp_path / "a", config=fewer)
    _refused(source, tmp_path / "m", capsys, "num_classes 11", "12 class outputs", "does not match")
    bigger = {**record["original_config"], "feature_arch": "rny008_gsf"}
    source = write_published("tdeed", tmp_path / "b", config=bigger)
    _refused(source, tmp_path / "m", capsys, "checkpoint_best.pt: the weights do not match the network")
    # The second (SoccerNet-v2) head's size is checked against the config's pretrain entry too.
    second = {**record["original_config"], "pretrain": {"dataset": "soccernet", "num_classes": 16}}
    source = write_published("tdeed", tmp_path / "c", config=second)
    _refused(source, tmp_path / "m", capsys, "pretrain num_classes 16", "second head has 17 class outputs")


def test_an_unknown_key_is_refused(tmp_path, capsys):
    record, _ = reference("sn-teamspotting")
    state = seeded_state_dict(record["manifest"], record["seed"])
    state["_pred_extra._fc_out.weight"] = torch.zeros(3, 368)
    source = write_published("sn-teamspotting", tmp_path / "a", state=state)
    _refused(
        source, tmp_path / "m", capsys, "unknown key(s)", "_pred_extra._fc_out.weight", "checkpoint_best.pt"
    )


def test_a_model_of_unknown_classes_needs_a_class_list(tmp_path, capsys):
    record, _ = reference("e2e-spot")
    other = {**record["original_config"], "dataset": "my_league"}
    source = write_published("e2e-spot", tmp_path / "a", config=other)
    _refused(source, tmp_path / "m", capsys, "frame rate", "--fps")
    _refused([*source, "--fps", "5"], tmp_path / "m", capsys, "no built-in class list", "--classes")
    (tmp_path / "classes.txt").write_text("\n".join(f"C{i}" for i in range(16)) + "\n")
    _refused([*source, "--fps", "5", "--classes", str(tmp_path / "classes.txt")], tmp_path / "m", capsys,
             "17 class outputs but the class list has 16")  # fmt: skip
    (tmp_path / "classes.txt").write_text("\n".join(f"C{i}" for i in range(17)) + "\n")
    assert (
        run_import(
            [*source, "--fps", "5", "--classes", str(tmp_path / "classes.txt"), "-o", str(tmp_path / "m")]
        )
        == 0
    )
    config = load_config(tmp_path / "m")
    assert config["classes"] == [f"C{i}" for i in range(17)] and config["fps"] == 5.0


def test_malformed_settings_are_refused_by_name(tmp_path, capsys):
    record, _ = reference("tdeed")
    for change, expected in (
        ({"clip_len": "100"}, "clip_len must be an integer, not '100'"),
        ({"radi_displacement": 2.5}, "radi_displacement must be an integer, not 2.5"),
        ({"sgp_r": 0}, "sgp_r must be a positive number"),
        ({"feature_arch": ["rny002_gsf"]}, "cannot be imported"),
    ):
        source = write_published(
            "tdeed", tmp_path / str(len(change)), config={**record["original_config"], **change}
        )
        _refused(source, tmp_path / "m", capsys, "config.json", expected)
    record, _ = reference("opensportslib")
    data = record["original_config"]["DATA"]
    for change, expected in (
        ({"test": {"overlap_len": 100}}, "overlap_len 100 must be less than DATA.clip_len 100"),
        ({"extract_fps": 0}, "extract_fps must be a positive number"),
        ({"classes": ["PASS", "PASS", *data["classes"][2:]]}, "names a class twice"),
    ):
        config = {**record["original_config"], "DATA": {**data, **change}}
        source = write_published("opensportslib", tmp_path / "o", config=config)
        _refused(source, tmp_path / "m", capsys, "config.yaml", expected)


def test_a_checkpoint_holding_python_objects_is_refused_with_the_reason(tmp_path, capsys):
    import argparse

    torch.save(
        {"model_state_dict": {"a": torch.zeros(1)}, "args": argparse.Namespace(lr=1)}, tmp_path / "m.pt"
    )
    _refused(
        [str(tmp_path / "m.pt")], tmp_path / "out", capsys, "m.pt", "argparse.Namespace", "state dict alone"
    )


def test_an_imported_folder_is_readable_as_any_other(imported):
    import stat

    mode = stat.S_IMODE(imported["tdeed"].stat().st_mode)
    assert (
        mode & 0o755 == 0o755 or os.umask(os.umask(0o022)) & 0o055
    )  # group/others read unless the umask says no


def test_t_deed_and_open_sports_lib_need_their_config(tmp_path, capsys):
    source = write_published("tdeed", tmp_path / "t")
    _refused(source[:1], tmp_path / "m", capsys, "needs its config", "--config")
    source = write_published("opensportslib", tmp_path / "o")
    _refused(source[:1], tmp_path / "m", capsys, "config.yaml", "--config")


def test_the_hub_offline_without_a_cache_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    _refused(
        ["hf://OpenSportsLab/OSL-loc-snbas-2025-e2e"],
        tmp_path / "m",
        capsys,
        "local cache",
        "huggingface-cli",
    )
    _refused(["hf://not a repo"], tmp_path / "m", capsys, "hf://OWNER/REPO")


def test_the_hub_source_is_read_from_the_local_cache_offline(tmp_path, monkeypatch):
    """hf://OWNER/REPO: the snapshot the Hub's client cached (here laid out by hand, as it lays it out), its first
    .pt and its config.yaml."""
    import huggingface_hub.constants as constants

    cache = tmp_path / "hf" / "hub"
    snapshot = cache / "models--OpenSportsLab--OSL-loc-snbas-2025-e2e" / "snapshots" / ("0123abcd" * 5)
    write_published("opensportslib", snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text(snapshot.name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    assert run_import(["hf://OpenSportsLab/OSL-loc-snbas-2025-e2e", "-o", str(tmp_path / "m")]) == 0
    source = load_json(tmp_path / "m" / "config.json")["source"]
    assert (
        source["file"] == "hf://OpenSportsLab/OSL-loc-snbas-2025-e2e" and source["weights_file"] == "model.pt"
    )
    assert source["config_file"].endswith("config.yaml") and source["format"] == "opensportslib"


def test_an_existing_model_folder_is_never_overwritten(tmp_path, capsys):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    source = write_published("tdeed", tmp_path / "t")
    assert run_import([*source, "-o", str(tmp_path / "m")]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert (tmp_path / "m" / "config.json").read_text() == "{}"


def test_help_explains_every_format(capsys):
    with pytest.raises(SystemExit):
        import_checkpoint.get_args(["--help"])
    text = capsys.readouterr().out
    for fmt in FORMATS:
        assert f"  {fmt} " in text
    for flag in ("--format", "--config", "--classes", "--fps", "hf://"):
        assert flag in text


# ---- the variants, and the models trained before them


def test_models_without_a_variant_keep_this_projects_shift():
    config = default_config(feature_arch="rny002_gsm", temporal_arch="tdeed", pretrained=False, clip_len=4)
    assert config["arch_variant"] == "house"
    model = build_model(config)
    shifts = [m for m in model.modules() if isinstance(m, GatedShift)]
    # The widths every model trained before the variants has (C // 4 rounded down to even), block by block ...
    assert [m.gated for m in shifts] == [8, 6, 14, 38, 38, 38, 38] + [92] * 6
    assert [m.gated for m in shifts] == [house_gated_channels(b.conv1.conv.conv.in_channels)
                                         for b in shifted_blocks(model.backbone)]  # fmt: skip
    assert model.head.positional is None and all(m.fuse is None for m in shifts)
    # ... and E2E-Spot's: 6 of the 13 blocks differ (s2.b1, s3.b1-b4, s4.b1).
    e2e = build_model({**config, "arch_variant": "e2e-spot"})
    assert [m.gated for m in e2e.modules() if isinstance(m, GatedShift)] == [8, 8, 16, 40, 40, 40, 40] + [
        92
    ] * 6


def test_a_model_folder_written_before_the_variants_loads_and_predicts_as_before(tmp_path):
    from tests.conftest import write_tiny_model

    folder = write_tiny_model(tmp_path / "m", feature_arch="rny002_gsm", temporal_arch="tdeed", sharpen=8.0)
    clips = torch.rand(1, 8, 3, 64, 112)
    now, _, _ = load_model(folder)
    config = load_json(folder / "config.json")
    del config["arch_variant"]  # as every config.json before the importer
    (folder / "config.json").write_text(json.dumps(config))
    before, loaded, _ = load_model(folder)
    assert loaded["arch_variant"] == "house"
    with torch.no_grad():
        assert torch.equal(now(clips)["logits"], before(clips)["logits"])


def test_the_tdeed_variant_shifts_stages_3_and_4_with_tdeeds_width():
    config = default_config(
        feature_arch="rny002_gsf", temporal_arch="tdeed", pretrained=False, clip_len=6, arch_variant="tdeed"
    )
    model = build_model(config)
    shifts = [m for m in model.modules() if isinstance(m, GatedShift)]
    stages = {n.split(".")[0] for n, m in model.backbone.named_modules() if isinstance(m, GatedShift)}
    assert len(shifts) == 11 and stages == {"s3", "s4"} and all(m.fuse is not None for m in shifts)
    assert sorted({m.gated for m in shifts}) == [16, 40, 92]  # ceil((C // 4) / 4) * 4 for C = 56, 152, 368
    assert model.head.positional.shape == (6, 368)
    out = model(torch.rand(1, 6, 3, 64, 96))
    assert out["logits"].shape == (1, 6, len(config["classes"]) + 1)
    with pytest.raises(ValueError, match="more than its clip length"):
        model.head(torch.rand(1, 7, 368))


def test_interleave_order_is_e2e_spots_channel_order():
    # Output channel p of E2E-Spot's GSM over 8 channels takes channel order[p]: 0, 2, 1, 3 | 4, 6, 5, 7.
    assert published.interleave_order(8).tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    assert published.interleave_order(16).tolist()[:8] == [0, 4, 1, 5, 2, 6, 3, 7]


# ---- fine-tuning an imported model


@pytest.mark.slow
def test_fine_tuning_an_imported_tdeed_model_on_the_synthetic_library(imported, tmp_path, caplog):
    import train_e2e
    from tests.conftest import feature_library

    frame_dir, data_dir = feature_library(tmp_path)
    argv = [
        str(data_dir), str(frame_dir), "-s", str(tmp_path / "tuned"), "--init_from", str(imported["tdeed"]),
        "--clip_len", "8", "--batch_size", "2", "--num_epochs", "1", "--warm_up_epochs", "0",
        "--epoch_num_frames", "16", "--start_val_epoch", "0", "--device", "cpu", "-j", "0", "--no-augment",
    ]  # fmt: skip
    args = train_e2e.get_args(argv)  # -m, -t and the variant come from the imported folder
    assert (args.feature_arch, args.temporal_arch, args.arch_variant) == ("rny002_gsf", "tdeed", "tdeed")
    caplog.set_level("INFO")
    assert run_main(train_e2e.main, args) == 0
    said = caplog.text
    assert f"--init_from {imported['tdeed']} (epoch 0): loaded" in said
    assert "head.fc.weight (class outputs over other classes)" in said
    assert "head.positional (shape (100, 368) here (8, 368))" in said
    config = load_config(tmp_path / "tuned")
    assert (config["arch_variant"], config["feature_arch"], config["classes"]) == (
        "tdeed",
        "rny002_gsf",
        ["PASS", "DRIVE"],
    )
    tuned = torch.load(tmp_path / "tuned" / "checkpoint_000.pt", weights_only=True)
    source = torch.load(imported["tdeed"] / "checkpoint_000.pt", weights_only=True)
    key = "backbone.s3.b1.conv1.shift.fuse.0.weight"  # T-DEED's GSF, loaded and then trained
    assert tuned[key].shape == source[key].shape and not torch.equal(tuned[key], source[key])
    assert (tmp_path / "tuned" / "selection.json").is_file()


@pytest.mark.slow
def test_an_imported_two_head_tdeed_model_fine_tunes_jointly_keeping_both_heads(imported, tmp_path, caplog):
    """T-DEED's challenge model, trained on Ball and SoccerNet-v2 at once, trained on in the same way: its second
    head carries on over a v2-style dataset of v2's 17 classes (issue 36)."""
    import train_e2e
    from tests.conftest import event, feature_library, make_library
    from util.soccernet import CLASSES_V2

    frame_dir, data_dir = feature_library(tmp_path / "ball")
    v2 = {"train": [{"video": "v2/g/1", "num_frames": 32, "events": [event(8, "Goal"), event(20, "Corner")]}]}
    v2_frames, v2_data = make_library(tmp_path / "v2", v2)
    (v2_data / "class.txt").write_text("\n".join(CLASSES_V2) + "\n")
    argv = [
        str(data_dir), str(frame_dir), "-s", str(tmp_path / "tuned"), "--init_from", str(imported["tdeed"]),
        "--joint", str(v2_data), str(v2_frames), "--clip_len", "8", "--batch_size", "2", "--num_epochs", "1",
        "--warm_up_epochs", "0", "--epoch_num_frames", "16", "--start_val_epoch", "0", "--device", "cpu", "-j", "0",
        "--no-augment",
    ]  # fmt: skip
    caplog.set_level("INFO")
    assert run_main(train_e2e.main, train_e2e.get_args(argv)) == 0
    assert "joint_head" not in caplog.text  # loaded: not re-initialised, new or unused
    config = load_config(tmp_path / "tuned")
    assert config["classes"] == ["PASS", "DRIVE"] and config["joint_classes"] == list(CLASSES_V2)
    tuned = torch.load(tmp_path / "tuned" / "checkpoint_000.pt", weights_only=True)
    source = torch.load(imported["tdeed"] / "checkpoint_000.pt", weights_only=True)
    assert tuned["joint_head.weight"].shape == source["joint_head.weight"].shape == (18, 368)
    assert not torch.equal(tuned["joint_head.weight"], source["joint_head.weight"])  # trained on the v2 clips
    assert (tmp_path / "tuned" / "selection.json").is_file()


# ---- the web app on an imported model


def test_the_upload_page_says_which_published_model_it_runs(imported, tmp_path):
    from tests.conftest import make_app

    app = make_app(imported["sn-teamspotting"], tmp_path / "jobs")
    try:
        page = app.test_client().get("/").get_data(as_text=True)
    finally:
        app.extensions["spot_jobs"].shutdown()
    assert 'id="model-card"' in page and "sn-teamspotting: T-DEED with a team head" in page
    assert "Trained on SoccerNet Ball Action Spotting (12 classes, jointly with SoccerNet-v2), 796x448 frames at " \
        "12.5 fps" in page and "Licence: GPL-3.0" in page and "rny002_gsf + tdeed" in page  # fmt: skip


def test_the_upload_page_describes_a_model_trained_here(tiny_model_dir, tmp_path):
    from tests.conftest import make_app

    app = make_app(tiny_model_dir, tmp_path / "jobs")
    try:
        page = app.test_client().get("/").get_data(as_text=True)
    finally:
        app.extensions["spot_jobs"].shutdown()
    assert "trained with this toolkit" in page and "rny002_gsm + gru" in page and "(epoch 0)" in page


def test_resuming_a_run_saved_before_the_variants_is_allowed(tmp_path):
    """An --init_from run saved before arch_variant existed (no key, pretrained recorded True) resumes as it was."""
    from model.train import check_resume_config
    from model.train.options import older_config_keys, older_flags

    ADDED_CONFIG_KEYS, ADDED_FLAGS = older_config_keys(), older_flags()
    flags = {**ADDED_FLAGS, "init_from": "pretrained-v2", "feature_arch": "rny002_gsm", "clip_len": 8}
    del flags["arch_variant"]
    saved = default_config(**ADDED_CONFIG_KEYS, clip_len=8, train={**flags, "pretrained": True})
    del saved["arch_variant"]
    now = default_config(
        **ADDED_CONFIG_KEYS, clip_len=8, train={**flags, "pretrained": False, "arch_variant": "house"}
    )
    check_resume_config(saved, now, tmp_path)
    with pytest.raises(DataError, match="arch_variant: 'house' \\(saved\\) != 'e2e-spot'"):
        check_resume_config(saved, {**now, "arch_variant": "e2e-spot"}, tmp_path)


def test_fine_tuning_takes_the_architecture_from_the_imported_folder(imported):
    import train_e2e

    base = ["data", "frames", "-s", "out", "--init_from", str(imported["e2e-spot"])]
    args = train_e2e.get_args(base)
    assert (args.feature_arch, args.temporal_arch, args.arch_variant) == ("rny002_gsm", "gru", "e2e-spot")
    assert args.pretrained is False  # the imported weights replace ImageNet's: nothing to download
    args = train_e2e.get_args([*base, "-t", "tdeed"])  # another head on the same backbone: its variant still
    assert (args.temporal_arch, args.arch_variant) == ("tdeed", "e2e-spot")
    args = train_e2e.get_args([*base, "-m", "rny008_gsm", "--pretrained"])  # another backbone: this project's
    assert args.arch_variant is None and args.pretrained is True
    args = train_e2e.get_args(["data", "frames", "-s", "out", "-m", "rny002"])  # no --init_from: as before
    assert (args.temporal_arch, args.arch_variant, args.pretrained) == ("gru", None, True)
