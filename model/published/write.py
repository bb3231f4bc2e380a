"""Writing the model folder: the converted weights checked against the network their config describes, the line
that says what the model was trained on, and config.json, checkpoint_NNN.pt and selection.json, all or nothing."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from model.common import build_model, checkpoint_path, save_config
from model.published.convert import Imported
from model.published.read import Source
from model.usage import save_selection
from util.io import DataError, _umask, atomic_open
from util.postprocess import DEFAULT_DISPLAY_THRESHOLD
from util.soccernet import CLASSES, CLASSES_2023, CLASSES_V2


def _check_weights(imported: Imported, weights_file: Path, config_file: Path | None) -> None:
    """Load the converted weights into the network the config describes: every key, every shape."""
    model = build_model({**imported.config, "channels_last": False})
    target = model.state_dict()
    missing = [k for k in target if k not in imported.state]
    extra = [k for k in imported.state if k not in target]
    shapes = [
        f"{k} {tuple(imported.state[k].shape)} vs {tuple(v.shape)}"
        for k, v in target.items() if k in imported.state and imported.state[k].shape != v.shape
    ]  # fmt: skip
    if missing or extra or shapes:
        what = "; ".join(
            part for part in (
                f"missing {', '.join(missing[:4])}" if missing else "",
                f"unexpected {', '.join(extra[:4])}" if extra else "",
                f"shapes {', '.join(shapes[:3])}" if shapes else "",
            ) if part
        )  # fmt: skip
        raise DataError(
            f"{weights_file}: the weights do not match the network of its config"
            f"{f' ({config_file})' if config_file else ''}: {what}"
        )
    model.load_state_dict(imported.state)


def trained_on(fmt: str, config: dict[str, Any], src: Source) -> str:
    """One line for people: what the model was trained on, at which frame rate and size."""
    fps, size = float(config["fps"]), f"{config['source_width']}x{config['source_height']}"
    classes, original = sorted(config["classes"]), src.original_config or {}
    if classes == sorted(CLASSES_V2):
        data = "SoccerNet-v2 action spotting"
    elif classes in (sorted(CLASSES), sorted(CLASSES_2023)):
        data = "SoccerNet Ball Action Spotting"
    else:
        data = str(
            original.get("dataset") or (original.get("DATA") or {}).get("dataset_name") or "its own data"
        )
    extra = ", jointly with SoccerNet-v2" if original.get("pretrain") or original.get("joint_train") else ""
    names = f"{src.weights_file.parent.name} {src.config_file.name if src.config_file else ''}".lower()
    if "challenge" in names:
        extra += (
            "; a challenge model: trained on the train and test games (T-DEED) or train, val and test (E2E-Spot), "
            "so its test mAP is not a clean number"
        )
    return f"{data} ({len(classes)} classes{extra}), {size} frames at {fps:g} fps"


def _write_folder(out_dir: Path, config: dict[str, Any], imported: Imported) -> None:
    """config.json, checkpoint_NNN.pt and selection.json into a temporary folder, then renamed to ``out_dir``."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.importing-", dir=out_dir.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would stay with the folder: readable as any other
        save_config(tmp, config)
        with atomic_open(checkpoint_path(tmp, imported.epoch), "wb") as f:
            torch.save(OrderedDict((k, v.contiguous()) for k, v in imported.state.items()), f)
        save_selection(
            tmp,
            {
                "epoch": imported.epoch,
                "criterion": "imported",
                "metric": None,
                "why": f"the published checkpoint ({config['source']['weights_file']})",
                "postprocess": imported.postprocess.to_dict(),
                "postprocess_chosen_by": f"{config['source']['project'].split(' (')[0]}'s own post-processing",
                "display_threshold": DEFAULT_DISPLAY_THRESHOLD,
            },
        )
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
