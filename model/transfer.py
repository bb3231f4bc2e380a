"""Starting a model from another model's weights (``train_e2e.py --init_from MODEL_DIR[:EPOCH]``).

Every tensor whose name and shape match is loaded. The class outputs are kept only when both models spot the same
classes in the same order: otherwise each tensor whose shape depends on the number of outputs (found by building
the head once more with one output more, so it holds for every head in ``HEADS``) keeps its fresh initialisation,
even where the shapes happen to agree. What was loaded, re-initialised, new and unused is returned for the log.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from model.common import HEADS, _load, unwrap_model
from model.folder import ModelFolder
from util.io import DataError

log = logging.getLogger(__name__)


@dataclass
class Transfer:
    """What ``init_from`` did: tensor names loaded, re-initialised (class outputs over other classes, or another
    shape), new (absent from the source) and unused (in the source only)."""

    source: str
    epoch: int
    loaded: list[str] = field(default_factory=list)
    reinitialised: dict[str, str] = field(default_factory=dict)  # name -> why
    new: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    loaded_parameters: int = 0
    total_parameters: int = 0

    def describe(self) -> str:
        lines = [
            f"--init_from {self.source} (epoch {self.epoch}): loaded {len(self.loaded)} tensors "
            f"({self.loaded_parameters:,} of {self.total_parameters:,} parameters)"
        ]
        if self.reinitialised:
            lines.append(
                "  re-initialised: " + ", ".join(f"{k} ({v})" for k, v in self.reinitialised.items())
            )
        if self.new:
            lines.append("  new (not in the source): " + ", ".join(self.new))
        if self.unused:
            lines.append("  unused (only in the source): " + ", ".join(self.unused))
        return "\n".join(lines)


def parse_init_from(text: str) -> tuple[Path, int | None]:
    """``MODEL_DIR`` or ``MODEL_DIR:EPOCH`` -> (folder, epoch or None for the model's selected epoch)."""
    match = re.fullmatch(r"(.+):(\d+)", text)
    if match and not Path(text).is_dir():
        return Path(match.group(1)), int(match.group(2))
    return Path(text), None


def class_dependent(config: dict, feature_dim: int) -> set[str]:
    """Names (in the model's state dict) of the head tensors whose shape depends on the number of outputs."""
    num_outputs = len(config["classes"]) + 1
    build = HEADS[config["temporal_arch"]]
    one, more = build(feature_dim, num_outputs).state_dict(), build(feature_dim, num_outputs + 1).state_dict()
    return {f"head.{k}" for k, v in one.items() if more[k].shape != v.shape}


def init_from(model: nn.Module, config: dict, spec: str) -> Transfer:
    """Load into ``model`` (built from ``config``) the weights of the model folder ``spec`` names
    (``MODEL_DIR[:EPOCH]``); DataError when it is not a model folder or shares no weight with ``model``."""
    path, epoch = parse_init_from(spec)
    folder = ModelFolder(path)
    if not folder.config_path.is_file():
        raise DataError(
            f"--init_from {spec}: {folder} holds no config.json; give a model folder written by train_e2e.py"
        )
    if epoch is None:
        epoch, _ = folder.selected_epoch()
    elif epoch not in folder.epochs:
        raise DataError(
            f"--init_from {spec}: no checkpoint_{epoch:03d}.pt (epochs: {folder.epochs or 'none'})"
        )
    source_config = folder.config
    source = _load(folder.checkpoint_path(epoch))
    net = unwrap_model(model)
    target = net.state_dict()
    same_classes = list(source_config.get("classes") or []) == list(config["classes"])
    by_classes = set() if same_classes else class_dependent(config, net.feature_dim)
    done = Transfer(str(folder), epoch, total_parameters=sum(v.numel() for v in target.values()))
    chosen = {}
    for name, value in target.items():
        if name not in source:
            done.new.append(name)
        elif name in by_classes:
            done.reinitialised[name] = "class outputs over other classes"
        elif source[name].shape != value.shape:
            done.reinitialised[name] = f"shape {tuple(source[name].shape)} here {tuple(value.shape)}"
        else:
            chosen[name] = source[name]
            done.loaded.append(name)
            done.loaded_parameters += value.numel()
    done.unused = [name for name in source if name not in target]
    if not chosen:
        raise DataError(
            f"--init_from {spec}: none of its weights fits this model ({source_config.get('feature_arch')} + "
            f"{source_config.get('temporal_arch')} there, {config['feature_arch']} + {config['temporal_arch']} here)"
        )
    with torch.no_grad():
        for name, value in chosen.items():
            target[name].copy_(value)
    return done
