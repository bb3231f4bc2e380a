"""E2E-Spot's checkpoints (a folder of e2e-spot-models: config.json + checkpoint_NNN.pt), and OpenSportsLib's,
which package the same network under backbone./head. keys (their config.yaml: model/published/opensportslib.py)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

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
)
from model.published.opensportslib import _osl_settings
from model.published.read import Source
from util.io import DataError
from util.postprocess import PostProcess
from util.soccernet import CLASSES, CLASSES_2023, CLASSES_V2

# The frames E2E-Spot's SoccerNet models were trained on: (fps, width, height): 398x224 frames at 2 fps for
# SoccerNet-v2 (data/soccernetv2/README) and 25 fps for the Ball task.
E2E_FRAMES = {"soccernetv2": (2.0, 398, 224), "soccernet_ball": (25.0, 398, 224)}
# E2E-Spot's parse scripts sort the class names: index i + 1 of the head is sorted(classes)[i].
E2E_CLASSES = {("soccernetv2", 17): sorted(CLASSES_V2), ("soccernet_ball", 2): sorted(CLASSES_2023)}
E2E_CLASSES[("soccernet_ball", 12)] = sorted(CLASSES)
# The authors' own post-processing: hard NMS +-2 frames at 2 fps (eval_soccernetv2.py) and +-25 at 25 fps
# (data/soccernet_ball/README), i.e. +-1 s, threshold 0.01.
E2E_POST = PostProcess(nms_window_s=1.0, soft=False, threshold=0.01)
# Inference windows: E2E-Spot and OpenSportsLib overlap by half a clip.
E2E_OVERLAP = 0.5


def convert_e2e(src: Source, classes: list[str] | None, fmt: str) -> Imported:
    """E2E-Spot's ``E2EModel.Impl`` (or OpenSportsLib's, keys under backbone./head.) -> this project's model."""
    state = OrderedDict(src.state)
    if fmt == "opensportslib":
        _check_keys(state, ("backbone._features.", "head._pred_fine."), src.weights_file)
        state = OrderedDict((k.split(".", 1)[1], v) for k, v in state.items())
        settings = _osl_settings(src)
    else:
        _check_keys(state, ("_features.", "_pred_fine."), src.weights_file)
        settings = _e2e_settings(src)
    heads = {"gru": "gru", "deeper_gru": "deeper_gru", "": "fc", "fc": "fc"}
    if settings["temporal_arch"] not in heads:
        raise DataError(
            f"{src.config_file or src.weights_file}: temporal_arch {settings['temporal_arch']!r} is not supported "
            f"by the importer (gru, deeper_gru and no head are; every published SoccerNet model uses gru)"
        )
    fc_key = "_pred_fine._fc_out" if settings["temporal_arch"] in ("", "fc") else "_pred_fine._fc_out._fc_out"
    if f"{fc_key}.weight" not in state:
        raise DataError(f"{src.weights_file}: no {fc_key}.weight; the weights do not match its config's head")
    count = state[f"{fc_key}.weight"].shape[0] - 1
    if settings["num_classes"] is not None and settings["num_classes"] not in (count, count + 1):
        raise DataError(
            f"{src.config_file}: {settings['num_classes']} classes but {src.weights_file} has {count} class "
            f"outputs: the config does not match the weights"
        )
    names = _classes_for(
        classes, settings["classes"], count, settings["what"], src.config_file or src.weights_file
    )
    target = _canonical(names)
    result = _backbone(state)
    folded = _fold_interleave(result, src.weights_file)
    for key in [k for k in state if k.startswith("_pred_fine._gru.")]:
        result["head.gru." + key[len("_pred_fine._gru.") :]] = state.pop(key)
    result["head.fc.weight"] = _class_rows(state.pop(f"{fc_key}.weight"), names, target)
    result["head.fc.bias"] = _class_rows(state.pop(f"{fc_key}.bias"), names, target)
    _check_keys(state, (), src.weights_file)  # nothing left over
    fps, width, height = settings["frames"]
    config = default_config(
        feature_arch=settings["feature_arch"],
        temporal_arch=heads[settings["temporal_arch"]],
        arch_variant="e2e-spot",
        clip_len=int(settings["clip_len"]),
        classes=target,
        fps=float(fps),
        **_geometry(width, height, settings["crop"]),
        window_overlap=float(settings["overlap"]),
        pretrained=False,
    )
    notes = [f"{folded} gated shift(s): E2E-Spot's channel interleave folded into the next convolution"]
    if target != names:
        notes.append("class outputs reordered to this project's order: " + ", ".join(target))
    return Imported(config, result, _epoch_of(src.weights_file, src.container), settings["post"], [], notes)


def _e2e_settings(src: Source) -> dict[str, Any]:
    config = _original_config(
        src,
        "an E2E-Spot checkpoint needs its config.json (the folder of e2e-spot-models holds both; or pass --config)",
    )
    where = src.config_file
    for key in ("feature_arch", "temporal_arch", "clip_len", "num_classes"):
        if key not in config:
            raise DataError(f"{where}: no {key!r}; not an E2E-Spot config.json")
    if config.get("modality", "rgb") != "rgb":
        raise DataError(f"{where}: modality {config['modality']!r}: only RGB models can be imported")
    dataset = str(config.get("dataset", ""))
    frames = _frames(E2E_FRAMES.get(dataset), src.fps, (398, 224), f"{where}: dataset {dataset!r}")
    num_classes = _integer(config, "num_classes", where)
    return {
        "feature_arch": _backbone_name(config["feature_arch"], where),
        "temporal_arch": str(config["temporal_arch"]),
        "clip_len": _integer(config, "clip_len", where),
        "num_classes": num_classes,
        "classes": E2E_CLASSES.get((dataset, num_classes)),
        "what": f"E2E-Spot's dataset {dataset!r} with {num_classes} classes",
        "dataset": dataset,
        "frames": frames,
        "crop": _crop(config, where),
        "overlap": E2E_OVERLAP,
        "post": E2E_POST,
    }
