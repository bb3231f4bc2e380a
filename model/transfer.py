"""Starting a model from another model's weights (``train_e2e.py --init_from MODEL_DIR[:EPOCH]``).

Every tensor whose name and shape match is loaded. The class outputs are kept only when both models spot the same
classes in the same order: otherwise each tensor whose shape depends on the number of outputs (found by building
the head once more with one output more, so it holds for every head in ``HEADS``) keeps its fresh initialisation,
even where the shapes happen to agree. What was loaded, re-initialised, new and unused is returned for the log.

Between the two team encodings (``model.common.TEAM_ENCODINGS``) over the same classes: a team-head model's class
outputs start a team-as-classes model's, each class's split evenly between its two teams (every axis over the
C + 1 outputs repeated for left and right, the logits' biases less log 2: the class scores are the source's, every
team 0.5; exact for every head, whose later stages read the softmax of the earlier ones); its team head is unused.
The other way round, the class outputs are re-initialised (the team head is new).

A model trained jointly on two datasets (``--joint``) has a second class head, ``joint_head``: a run with
``--joint`` over the same second classes keeps it, one over others re-initialises it, and a run without ``--joint``
drops it (listed as unused).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from model.common import HEADS, _load, output_count, team_classes, unwrap_model
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
    split: dict[str, str] = field(
        default_factory=dict
    )  # name -> how (a team head's outputs into team classes)
    new: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    loaded_parameters: int = 0
    total_parameters: int = 0

    def describe(self) -> str:
        lines = [
            f"--init_from {self.source} (epoch {self.epoch}): loaded {len(self.loaded)} tensors "
            f"({self.loaded_parameters:,} of {self.total_parameters:,} parameters)"
        ]
        if self.split:
            lines.append("  split: " + ", ".join(f"{k} ({v})" for k, v in self.split.items()))
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
    num_outputs = output_count(config)
    build = HEADS[config["temporal_arch"]]
    one, more = build(feature_dim, num_outputs).state_dict(), build(feature_dim, num_outputs + 1).state_dict()
    return {f"head.{k}" for k, v in one.items() if more[k].shape != v.shape}


def split_class_outputs(tensor: torch.Tensor, shape: torch.Size, num_classes: int) -> torch.Tensor:
    """A head tensor over C + 1 outputs as one over 2C + 1 of ``shape`` (background, (class, left) x C,
    (class, right) x C): each axis over the outputs repeated for both teams; a bias (of logits) less log 2 on the
    classes, so that the softmax gives each team half of its class's probability."""
    index = torch.tensor([0, *range(1, num_classes + 1), *range(1, num_classes + 1)])
    out = tensor
    for dim, size in enumerate(shape):
        if tensor.shape[dim] == num_classes + 1 and size == 2 * num_classes + 1:
            out = out.index_select(dim, index)
    if out.dim() == 1:
        out = out.clone()
        out[1:] -= math.log(2.0)
    return out


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
    # Same classes, the other team encoding: the class outputs are split into teams, or re-initialised.
    other_encoding = same_classes and team_classes(source_config) != team_classes(config)
    outputs = class_dependent(config, net.feature_dim) if other_encoding else set()
    split = other_encoding and team_classes(config)
    # The second class head (joint training): kept only over the same second classes.
    same_joint = source_config.get("joint_classes") == config.get("joint_classes")
    done = Transfer(str(folder), epoch, total_parameters=sum(v.numel() for v in target.values()))
    chosen = {}
    for name, value in target.items():
        if name not in source:
            done.new.append(name)
        elif name.startswith("joint_head.") and not same_joint:
            done.reinitialised[name] = "second head over other classes"
        elif name in by_classes:
            done.reinitialised[name] = "class outputs over other classes"
        elif name in outputs and split:
            chosen[name] = split_class_outputs(source[name], value.shape, len(config["classes"]))
            done.split[name] = "each class's outputs into left and right"
            done.loaded_parameters += value.numel()
        elif name in outputs:
            done.reinitialised[name] = "class outputs of team-as-classes, not of a team head"
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
