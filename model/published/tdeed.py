"""T-DEED's checkpoints (checkpoint_best.pt and its config JSON), and sn-teamspotting's: T-DEED with a team head
(``_pred_team``), converted by the same code (so no module of its own): the SGP layers and mixers become this
project's (B, T, C) layers, the displacement changes sign and unit, a second (SoccerNet-v2) head becomes ``joint_head``."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from model.common import default_config
from model.published.convert import (
    Imported,
    _backbone,
    _backbone_name,
    _canonical,
    _check_keys,
    _class_rows,
    _classes_for,
    _crop,
    _epoch_of,
    _fold_interleave,
    _frames,
    _geometry,
    _integer,
    _original_config,
    _positive,
)
from model.published.read import Source
from util.io import DataError
from util.postprocess import PostProcess
from util.soccernet import CLASSES, CLASSES_V2

# The frames T-DEED's and sn-teamspotting's SoccerNet models were trained on: (fps, width, height): 796x448 frames
# extracted at 25 fps, read at a stride of 2 (SoccerNet-Ball: 12.5 fps) or 12 (SoccerNet-v2).
TDEED_FRAMES = {"soccernetball": (25.0 / 2, 796, 448), "soccernet": (25.0 / 12, 796, 448)}
# T-DEED's data/soccernetball/class.txt (and sn-teamspotting's) is SoccerNet-Ball's order.
TDEED_CLASSES = {("soccernetball", 12): list(CLASSES), ("soccernet", 17): list(CLASSES_V2)}
# Inference windows overlap by three quarters (train_tdeed.py); the authors' post-processing (soft NMS over +-12
# frames at 12.5 fps, util/eval.py WINDOWS_SNB, threshold 0.01) is built in convert_tdeed.
TDEED_OVERLAP = 0.75
# T-DEED's SoccerNet-Ball head (n_layers, sgp_ks, sgp_r): what model.impl.tdeed.TDEEDHead builds.
TDEED_HEAD = (2, 9, 4)


def _sgp_layer(
    prefix: str, state: dict[str, torch.Tensor], out: str, result: dict[str, torch.Tensor]
) -> None:
    """One T-DEED SGPBlock (``prefix``) -> this project's SGPLayer (``out``)."""
    flat = {
        "ln.weight": "norm.weight", "ln.bias": "norm.bias",
        "fc.weight": "branches.scale.weight", "fc.bias": "branches.scale.bias",
        "global_fc.weight": "branches.context.weight", "global_fc.bias": "branches.context.bias",
        "convw.weight": "branches.narrow.weight", "convw.bias": "branches.narrow.bias",
        "convkw.weight": "branches.wide.weight", "convkw.bias": "branches.wide.bias",
        "psi.weight": "branches.gate.weight", "psi.bias": "branches.gate.bias",
        "gn.weight": "mlp.0.weight", "gn.bias": "mlp.0.bias",
        "mlp.0.weight": "mlp.1.weight", "mlp.0.bias": "mlp.1.bias",
        "mlp.2.weight": "mlp.3.weight", "mlp.2.bias": "mlp.3.bias",
    }  # fmt: skip
    for theirs, ours in flat.items():
        result[f"{out}.{ours}"] = _to_linear(state.pop(f"{prefix}.{theirs}"), f"{out}.{ours}")


def _sgp_mixer(
    prefix: str, state: dict[str, torch.Tensor], out: str, result: dict[str, torch.Tensor]
) -> None:
    """One T-DEED SGPMixer -> this project's: branch 1 reads the skip (z), branch 2 the coarse input (x)."""
    names = {"fc": "scale", "global_fc": "context", "convw": "narrow", "convkw": "wide", "psi": "gate"}
    for theirs, ours in names.items():
        for param in ("weight", "bias"):
            for index, branch in ((1, "skip_branches"), (2, "branches")):
                name = f"{out}.{branch}.{ours}.{param}"
                result[name] = _to_linear(state.pop(f"{prefix}.{theirs}{index}.{param}"), name)
    for theirs, ours in (("ln1", "skip_norm"), ("ln2", "norm"), ("gn", "mlp.0")):
        for param in ("weight", "bias"):
            result[f"{out}.{ours}.{param}"] = state.pop(f"{prefix}.{theirs}.{param}").reshape(-1)
    for theirs, ours in (("mlp.0", "mlp.1"), ("mlp.2", "mlp.3")):
        result[f"{out}.{ours}.weight"] = state.pop(f"{prefix}.{theirs}.weight").squeeze(-1)
        result[f"{out}.{ours}.bias"] = state.pop(f"{prefix}.{theirs}.bias")
    # T-DEED concatenates [window(z), window(x), instant(z), instant(x), z, x]; this project
    # [instant(x), window(x), instant(z), window(z), x, z].
    merge = state.pop(f"{prefix}.concat_fc.weight").squeeze(-1)
    dim = merge.shape[0]
    blocks = merge.split(dim, dim=1)
    result[f"{out}.merge.weight"] = torch.cat([blocks[i] for i in (3, 1, 2, 0, 5, 4)], dim=1)
    result[f"{out}.merge.bias"] = state.pop(f"{prefix}.concat_fc.bias")


def _to_linear(value: torch.Tensor, ours: str) -> torch.Tensor:
    """A T-DEED (B, C, T) parameter for this project's (B, T, C) layer ``ours`` (its full name): LayerNorm weights
    (1, C, 1) and 1x1 depthwise convolutions (C, 1, 1) -> (C), 1x1 convolutions (O, I, 1) -> (O, I); depthwise
    temporal kernels (C, 1, k) stay."""
    if ours.split(".")[-2] in ("narrow", "wide", "gate") or value.dim() != 3:
        return value
    if value.shape[0] == 1 or value.shape[1] == 1:
        return value.reshape(-1)
    return value.squeeze(-1)


def _linear(result: dict, state: dict, theirs: str, ours: str, scale: float = 1.0) -> None:
    result[f"{ours}.weight"] = state.pop(f"{theirs}.weight") * scale
    result[f"{ours}.bias"] = state.pop(f"{theirs}.bias") * scale


def _tdeed_settings(src: Source, fmt: str) -> dict[str, Any]:
    """The T-DEED config's architecture, checked: what this project's T-DEED network reproduces."""
    name = "sn-teamspotting" if fmt == "sn-teamspotting" else "T-DEED"
    config = _original_config(
        src, f"a {name} checkpoint needs its config JSON (config/SoccerNetBall/*.json): pass --config"
    )
    where = src.config_file
    for key in ("feature_arch", "temporal_arch", "clip_len", "num_classes", "dataset"):
        if key not in config:
            raise DataError(f"{where}: no {key!r}; not a T-DEED config")
    if config["temporal_arch"] != "ed_sgp_mixer":
        raise DataError(f"{where}: temporal_arch {config['temporal_arch']!r}; T-DEED's is ed_sgp_mixer")
    head = (
        _integer(config, "n_layers", where, default=2),
        _integer(config, "sgp_ks", where, default=9),
        _positive(config, "sgp_r", where, default=4),
    )
    if head != TDEED_HEAD:
        raise DataError(
            f"{where}: n_layers {head[0]}, sgp_ks {head[1]}, sgp_r {head[2]:g}: only T-DEED's SoccerNet-Ball head "
            f"(2, 9, 4) can be imported"
        )
    dataset = str(config["dataset"])
    return {
        "feature_arch": _backbone_name(config["feature_arch"], where),
        "clip_len": _integer(config, "clip_len", where),
        "num_classes": _integer(config, "num_classes", where),
        "dataset": dataset,
        "frames": _frames(TDEED_FRAMES.get(dataset), src.fps, (796, 448), f"{where}: dataset {dataset!r}"),
        "crop": _crop(config, where),
        "radius": _integer(config, "radi_displacement", where, default=0, minimum=0),
        "levels": head[0],
    }


def _tdeed_temporal(state: dict, result: dict, levels: int, where: Path) -> None:
    """T-DEED's positional table and SGP encoder-decoder -> this project's T-DEED head (exact mode)."""
    if "temp_enc" not in state:
        raise DataError(f"{where}: no temp_enc (T-DEED's positional table)")
    result["head.positional"] = state.pop("temp_enc")
    # _sgp: 0..n-1 encoder, n bottleneck, n+1..2n decoder deepest first; _sgpMixer.i works at level i, as here.
    for i in range(2 * levels + 1):
        if i < levels:
            out = f"head.encoder.{i}"
        else:
            out = "head.bottleneck" if i == levels else f"head.decoder.{2 * levels - i}"
        _sgp_layer(f"_temp_fine._sgp.{i}", state, out, result)
    for i in range(levels):
        _sgp_mixer(f"_temp_fine._sgpMixer.{i}", state, f"head.mixers.{i}", result)


def _tdeed_class_head(state: dict, src: Source, settings: dict) -> tuple[str, str | None]:
    """(the key of the class head used at inference, that of the second head or None): the first of two heads
    (SoccerNet-Ball's; the second, SoccerNet-v2's, was trained jointly) or the only one."""
    second = None
    if "_pred_fine._fc1._fc_out.weight" in state:
        fc, second = "_pred_fine._fc1._fc_out", "_pred_fine._fc2._fc_out"
        if {f"{second}.weight", f"{second}.bias"} - set(state):
            raise DataError(f"{src.weights_file}: a first class head (_fc1) without its second ({second})")
    else:
        fc = "_pred_fine._fc_out"
    if f"{fc}.weight" not in state or f"{fc}.bias" not in state:
        raise DataError(f"{src.weights_file}: no class head ({fc}.weight and .bias)")
    count = state[f"{fc}.weight"].shape[0] - 1
    if count != settings["num_classes"]:
        raise DataError(
            f"{src.config_file}: num_classes {settings['num_classes']} but {src.weights_file} has {count} class "
            f"outputs: the config does not match the weights"
        )
    return fc, second


def _second_head(state: dict, src: Source, second: str) -> tuple[list[str], dict[str, torch.Tensor]]:
    """The jointly trained second head (``pretrain`` of T-DEED's challenge configs, ``joint_train`` of
    sn-teamspotting's: SoccerNet-v2's 17 classes) as this project's ``joint_head``: (its classes in this project's
    order, its tensors)."""
    original = src.original_config or {}
    key = "pretrain" if original.get("pretrain") else "joint_train"
    joint = original.get(key) or {}
    dataset = str(joint.get("dataset", "soccernet"))
    count = state[f"{second}.weight"].shape[0] - 1
    if int(joint.get("num_classes", count)) != count:
        raise DataError(
            f"{src.config_file}: {key} num_classes {joint['num_classes']} but {src.weights_file}'s second head "
            f"has {count} class outputs"
        )
    names = TDEED_CLASSES.get((dataset, count))
    if names is None:
        raise DataError(
            f"{src.weights_file}: a second head of {count} classes of dataset {dataset!r}, whose class list is not "
            "known here (T-DEED's is SoccerNet-v2's 17)"
        )
    target = _canonical(list(names))
    return target, {
        "joint_head.weight": _class_rows(state.pop(f"{second}.weight"), list(names), target),
        "joint_head.bias": _class_rows(state.pop(f"{second}.bias"), list(names), target),
    }


def convert_tdeed(src: Source, classes: list[str] | None, fmt: str) -> Imported:
    """T-DEED's ``TDEEDModel.Impl`` (and sn-teamspotting's, with ``_pred_team``) -> this project's model."""
    settings = _tdeed_settings(src, fmt)
    state, where = OrderedDict(src.state), src.weights_file
    prefixes = ("_features.", "temp_enc", "_temp_fine.", "_pred_fine.", "_pred_displ.", "_pred_team.")
    _check_keys(state, prefixes, where)
    team, radius = fmt == "sn-teamspotting", settings["radius"]
    for needed, head in ((team, "_pred_team"), (radius > 0, "_pred_displ")):
        if needed and not {f"{head}._fc_out.weight", f"{head}._fc_out.bias"} <= set(state):
            raise DataError(f"{where}: no {head} head, which its config ({src.config_file}) asks for")
    fc, second = _tdeed_class_head(state, src, settings)
    dropped: list[str] = []
    joint_classes, joint_head = _second_head(state, src, second) if second else (None, {})
    count = settings["num_classes"]
    names = _classes_for(
        classes, TDEED_CLASSES.get((settings["dataset"], count)), count, f"dataset {settings['dataset']!r}",
        src.config_file,
    )  # fmt: skip
    target = _canonical(names)
    result = _backbone(state)
    folded = _fold_interleave(result, where)
    _tdeed_temporal(state, result, settings["levels"], where)
    result["head.fc.weight"] = _class_rows(state.pop(f"{fc}.weight"), names, target)
    result["head.fc.bias"] = _class_rows(state.pop(f"{fc}.bias"), names, target)
    if radius > 0:  # T-DEED: frame - event, in frames; here: (event - frame) / R
        _linear(result, state, "_pred_displ._fc_out", "displacement_head", -1.0 / radius)
    for key in [k for k in state if k.startswith("_pred_displ.")]:  # a head its config does not use
        dropped.append(f"{key} {tuple(state.pop(key).shape)}")
    if team:
        _linear(result, state, "_pred_team._fc_out", "team_head")
    result.update(joint_head)
    _check_keys(state, (), where)  # nothing left over
    fps, width, height = settings["frames"]
    ours = default_config(
        feature_arch=settings["feature_arch"],
        temporal_arch="tdeed",
        arch_variant="tdeed",
        clip_len=settings["clip_len"],
        classes=target,
        fps=fps,
        **_geometry(width, height, settings["crop"]),
        team=team,
        displacement=radius,
        joint_classes=joint_classes,
        window_overlap=TDEED_OVERLAP,
        pretrained=False,
    )
    post = PostProcess(nms_window_s=12 / fps, soft=True, threshold=0.01)
    notes = [f"{folded} gated shift(s): T-DEED's channel interleave folded into the next convolution"]
    if radius:
        notes.append(f"displacement: T-DEED's (frame - event) in frames -> (event - frame) / {radius}")
    if joint_classes:
        notes.append(
            f"second (SoccerNet-v2) head kept as joint_head ({len(joint_classes)} classes): eval, inference and the "
            "app use the first, SoccerNet-Ball's; train_e2e.py --joint over the same classes fine-tunes both, "
            "without --joint the second is dropped"
        )
    if target != names:
        notes.append("class outputs reordered to this project's order")
    return Imported(ours, result, _epoch_of(src.weights_file, src.container), post, dropped, notes)
