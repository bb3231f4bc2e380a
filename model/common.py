"""The E2E-Spot model (2D CNN backbone per frame + temporal head), built from a plain config dict.

A model directory holds ``config.json`` (every key needed to rebuild the network; see :data:`DEFAULT_CONFIG`),
``checkpoint_NNN.pt`` (weights, a plain state dict) and ``optim_NNN.pt`` (optimizer, AMP scaler, scheduler,
RNG states, epoch, extra), all written atomically and loaded with ``weights_only=True``, and ``selection.json``: the
decisions training made on val, which every later step uses by default (:func:`load_selection`: the epoch, the
post-processing with its windows in seconds, the display threshold). ``load_model(dir)`` rebuilds the selected
network from the directory alone; the directory may be given as a path or as the ``model.folder.ModelFolder`` a
step already read (each of its files is then read once).

``E2EModel.forward(frames)`` takes (B, T, 3, H, W) uint8 or float in [0, 1] (it normalises with ImageNet
mean/std itself) and returns a dict:
- "logits": (B, T, num_classes + 1), class 0 = background; with ``config["team_encoding"] == "classes"`` (team as
  classes, the 2025 Team Ball Action Spotting winner's encoding) (B, T, 2 * num_classes + 1): background, then
  (class, left) for every class, then (class, right) (:func:`output_count`);
- "team": (B, T) logit, positive = "right", when ``config["team"]`` with the team head (``team_encoding`` "head");
- "displacement": (B, T) frames from each frame to the nearest event (T-DEED's displacement head), when
  ``config["displacement"]`` (the radius R in frames) > 0: the post-processing moves each detected peak by it;
- "stage_logits": list of (B, T, num_classes + 1), one per stage, for multi-stage heads (mstcn, asformer);
- "joint_logits": (B, T, len(joint_classes) + 1), the second dataset's classes, in training mode only, when
  ``config["joint_classes"]`` (a model trained jointly on two datasets, ``--joint``): every other step uses the
  first head.

Training adds a loss on every stage of "stage_logits" (when present, else on "logits") and, for those heads,
``SMOOTHING_WEIGHT * smoothing_loss(stage)`` per stage (MS-TCN's truncated MSE, :func:`smoothing_loss`).

A backbone with a temporal shift mixes frames within clips of ``clip_len``: a clip of T frames is cut into
pieces of ``clip_len`` (the last one padded with mean-colour frames) and the padding is removed again, so
any T works, and T = clip_len sees exactly what training saw.
"""

from __future__ import annotations

import logging
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model.folder import CONFIG_NAME, ModelFolder, checkpoint_path, list_epochs, optim_path
from model.impl.backbones import BACKBONES, PretrainedWeightsError, build_backbone
from model.modules import HEADS, SMOOTHING_WEIGHT, smoothing_loss
from model.shift import DEFAULT_VARIANT, VARIANTS
from model.usage import load_selection, save_selection, selected_epoch
from util.io import DataError, atomic_open, store_json
from util.postprocess import TEAM_NMS_MODES
from util.soccernet import CLASSES

__all__ = [
    "BACKBONES",
    "HEADS",
    "SMOOTHING_WEIGHT",
    "DEFAULT_CONFIG",
    "TEAM_ENCODINGS",
    "E2EModel",
    "ModelFolder",
    "PretrainedWeightsError",
    "available_backbones",
    "available_heads",
    "build_model",
    "check_config",
    "count_parameters",
    "default_config",
    "list_epochs",
    "load_checkpoint",
    "load_config",
    "load_model",
    "load_selection",
    "output_count",
    "save_checkpoint",
    "save_config",
    "save_selection",
    "selected_epoch",
    "smoothing_loss",
    "team_classes",
    "unwrap_model",
]

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

DEFAULT_CONFIG: dict[str, Any] = {
    "feature_arch": "rny002_gsm",  # backbone: BACKBONES key
    "temporal_arch": "gru",  # head: HEADS key
    "clip_len": 100,  # frames per training clip (and per shift window)
    "classes": list(CLASSES),  # class names; logits have len(classes) + 1 columns, 0 = background
    "frame_height": 224,  # input size the model was trained on (after crop)
    "frame_width": 398,
    "fps": 25.0,  # frame rate the model was trained at
    "team": False,  # spot the team (left/right) of each action too
    "team_encoding": "head",  # how: a per-frame P(right) head, or "classes": (class, left) and (class, right) outputs
    "displacement": 0,  # T-DEED's displacement head: per-frame offset to the nearest event within this many frames
    "joint_classes": None,  # a second class head over these classes (joint training, --joint); None: none
    "arch_variant": DEFAULT_VARIANT,  # whose arithmetic the network follows: model.shift.VARIANTS
    "pretrained": True,  # start from ImageNet weights
    "channels_last": True,  # NHWC convolutions (faster with AMP on GPUs)
    "compile": False,  # torch.compile the model
}
REQUIRED_KEYS = ("feature_arch", "temporal_arch", "clip_len", "classes")
# Keys that must agree between a model and a checkpoint directory (the rest only say how to run it).
MODEL_KEYS = (
    "feature_arch",
    "temporal_arch",
    "clip_len",
    "classes",
    "team",
    "team_encoding",
    "displacement",
    "joint_classes",
    "arch_variant",
    "frame_height",
    "frame_width",
    "fps",
)


# How a model spots the team: "head" = sn-teamspotting's per-frame P(right) beside the class logits; "classes" =
# 2 x C class outputs + background ((class, left), (class, right)), a horizontal flip swapping the two halves.
TEAM_ENCODINGS = ("head", "classes")


def team_classes(config: dict[str, Any]) -> bool:
    """Whether the model spots the team as classes (2 x C outputs + background) rather than with a team head."""
    return bool(config.get("team")) and config.get("team_encoding", "head") == "classes"


def output_count(config: dict[str, Any]) -> int:
    """Columns of the logits: the classes (twice, left then right, for team as classes) + background."""
    return len(config["classes"]) * (2 if team_classes(config) else 1) + 1


def available_backbones() -> list[str]:
    return list(BACKBONES)


def available_heads() -> list[str]:
    return list(HEADS)


def default_config(**overrides: Any) -> dict[str, Any]:
    """A fresh config dict: :data:`DEFAULT_CONFIG` updated with ``overrides`` (extra keys are kept)."""
    return check_config({**DEFAULT_CONFIG, "classes": list(CLASSES), **overrides})


def check_config(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Validate a config (DataError naming ``source`` and the problem); returns it with defaults filled in."""
    missing = [k for k in REQUIRED_KEYS if k not in config]
    if missing:
        raise DataError(f"{source}: missing key(s) {', '.join(missing)}")
    config = {**DEFAULT_CONFIG, **config}
    if config["feature_arch"] not in BACKBONES:
        raise DataError(
            f"{source}: unknown backbone {config['feature_arch']!r}; valid: {', '.join(BACKBONES)}"
        )
    if config["temporal_arch"] not in HEADS:
        raise DataError(f"{source}: unknown head {config['temporal_arch']!r}; valid: {', '.join(HEADS)}")
    if config["arch_variant"] not in VARIANTS:
        raise DataError(
            f"{source}: unknown arch_variant {config['arch_variant']!r}; valid: {', '.join(VARIANTS)}"
        )
    if config["team_encoding"] not in TEAM_ENCODINGS:
        raise DataError(
            f"{source}: unknown team_encoding {config['team_encoding']!r}; valid: {', '.join(TEAM_ENCODINGS)}"
        )
    if config["team_encoding"] == "classes" and not config["team"]:
        raise DataError(f"{source}: team_encoding classes needs a team model (team: true, --team)")
    if config.get("team_nms") not in (None, *TEAM_NMS_MODES):
        raise DataError(
            f"{source}: unknown team_nms {config['team_nms']!r}; valid: {', '.join(TEAM_NMS_MODES)}"
        )
    joint = config["joint_classes"]
    if joint is not None and not (
        isinstance(joint, list) and joint and all(isinstance(c, str) for c in joint)
    ):
        raise DataError(f"{source}: joint_classes must be null or a non-empty list of class names")
    if not isinstance(config["displacement"], int) or config["displacement"] < 0:
        raise DataError(f"{source}: displacement must be an integer >= 0, not {config['displacement']!r}")
    if not isinstance(config["clip_len"], int) or config["clip_len"] < 1:
        raise DataError(f"{source}: clip_len must be a positive integer, not {config['clip_len']!r}")
    classes = config["classes"]
    if not classes or not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise DataError(f"{source}: classes must be a non-empty list of class names")
    return config


def head_options(config: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of the head beyond (in_dim, num_outputs): T-DEED's exact head for the "tdeed" variant."""
    if config["temporal_arch"] == "tdeed" and config.get("arch_variant") == "tdeed":
        return {"clip_len": int(config["clip_len"]), "exact": True}
    return {}


class E2EModel(nn.Module):
    """Backbone on every frame -> (B, T, D) features -> temporal head (+ optional team head)."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        self.config = check_config(config)
        self.num_classes = len(self.config["classes"])
        self.clip_len = self.config["clip_len"]
        self.has_shift = "_" in self.config["feature_arch"]
        self.backbone, self.feature_dim = build_backbone(
            self.config["feature_arch"],
            self.clip_len,
            pretrained=self.config["pretrained"],
            variant=self.config["arch_variant"],
        )
        self.head = HEADS[self.config["temporal_arch"]](
            self.feature_dim, output_count(self.config), **head_options(self.config)
        )
        with_head = self.config["team"] and not team_classes(self.config)
        self.team_head = nn.Linear(self.head.feature_dim, 1) if with_head else None
        self.displacement = int(self.config["displacement"])
        self.displacement_head = nn.Linear(self.head.feature_dim, 1) if self.displacement > 0 else None
        joint = self.config["joint_classes"]
        # The second dataset's class head (joint training): background + its classes, on the same features.
        self.joint_head = nn.Linear(self.head.feature_dim, len(joint) + 1) if joint else None
        # Not persistent: constants, not weights.
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1), persistent=False)

    def normalise(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.to(self.pixel_mean.dtype)
        if frames.dtype == torch.uint8:
            x = x / 255.0
        return (x - self.pixel_mean) / self.pixel_std

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised (B, T, 3, H, W) -> (B, T, feature_dim), in clip_len pieces when the backbone shifts."""
        batch, frames = x.shape[:2]
        pad = (-frames) % self.clip_len if self.has_shift else 0
        if pad:
            x = torch.cat([x, x.new_zeros(batch, pad, *x.shape[2:])], dim=1)
        flat = x.flatten(0, 1)
        if self.config["channels_last"]:
            flat = flat.contiguous(memory_format=torch.channels_last)
        return self.backbone(flat).reshape(batch, frames + pad, -1)[:, :frames]

    def forward(self, frames: torch.Tensor) -> dict[str, Any]:
        if frames.dim() != 5 or frames.shape[2] != 3:
            raise ValueError(f"E2EModel expects frames of shape (B, T, 3, H, W), got {tuple(frames.shape)}")
        return self.forward_features(self.frame_features(self.normalise(frames)))

    def forward_features(self, features: torch.Tensor) -> dict[str, Any]:
        """The temporal part alone: backbone features (B, T, feature_dim) -> the outputs of :meth:`forward`
        (frozen-feature training feeds precomputed features here)."""
        out = self.head(features)
        result = {"logits": out["logits"]}
        if "stage_logits" in out:
            result["stage_logits"] = out["stage_logits"]
        if self.team_head is not None:
            result["team"] = self.team_head(out["features"]).squeeze(-1)
        if self.displacement_head is not None:
            # Regressed in units of the radius (targets in [-1, 1]), returned in frames.
            offset = self.displacement_head(out["features"]).squeeze(-1)
            result["displacement"] = offset * self.displacement
        if self.joint_head is not None and self.training:
            result["joint_logits"] = self.joint_head(out["features"])
        return result


def _to_channels_last(model: nn.Module) -> None:
    # Module.to(memory_format=channels_last) would also try the 5D weights of GSM's 3D convolution.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last)


def build_model(config: dict[str, Any]) -> E2EModel:
    """The network a config describes (ImageNet backbone weights when config["pretrained"])."""
    model = E2EModel(config)
    if model.config["channels_last"]:
        _to_channels_last(model)
    if model.config["compile"]:
        model.compile()  # in place: state_dict keys stay the same
    return model


def unwrap_model(model: nn.Module) -> nn.Module:
    """The E2EModel inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------------------------------------------------
# Model directory: config.json, checkpoint_NNN.pt, optim_NNN.pt (read through model.folder.ModelFolder)


def save_config(model_dir: str | Path, config: dict[str, Any]) -> Path:
    path = Path(model_dir) / CONFIG_NAME
    store_json(path, config)
    return path


def load_config(model_dir: str | Path | ModelFolder) -> dict[str, Any]:
    """config.json of a model directory, validated, defaults filled in."""
    return ModelFolder.of(model_dir).config


def config_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """'key: a_value != b_value' for every MODEL_KEYS entry that differs."""
    a, b = {**DEFAULT_CONFIG, **a}, {**DEFAULT_CONFIG, **b}
    return [f"{k}: {a.get(k)!r} != {b.get(k)!r}" for k in MODEL_KEYS if a.get(k) != b.get(k)]


def _check_matches(model: E2EModel, folder: ModelFolder) -> None:
    diff = config_differences(model.config, folder.config)
    if diff:
        raise DataError(
            f"{folder.config_path} does not match the model (model != directory): {'; '.join(diff)}"
        )


def _rng_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        # Tensors, not arrays: weights_only=True loading refuses numpy objects.
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save(obj: Any, path: Path) -> None:
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def _load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise DataError(f"{path}: file not found") from e
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        raise DataError(
            f"{path}: cannot load ({str(e).splitlines()[0]}); the file is damaged or not ours"
        ) from e


def save_checkpoint(
    model_dir: str | Path,
    epoch: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scaler: Any = None,
    scheduler: Any = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write optim_{epoch}.pt then checkpoint_{epoch}.pt atomically (and config.json if missing).

    ``extra`` must hold plain Python values (they are loaded back with weights_only=True).
    Returns the checkpoint's path. A config.json that does not match the model raises DataError.
    """
    model_dir = Path(model_dir)
    net = unwrap_model(model)
    if (model_dir / CONFIG_NAME).exists():
        _check_matches(net, ModelFolder(model_dir))
    else:
        save_config(model_dir, net.config)
    state: dict[str, Any] = {"epoch": epoch, "rng": _rng_state(), "extra": extra or {}}
    for key, obj in (("optimizer", optimizer), ("scaler", scaler), ("scheduler", scheduler)):
        if obj is not None:
            state[key] = obj.state_dict()
    # Optimizer state first: a checkpoint file that exists always has its optim file.
    _save(state, optim_path(model_dir, epoch))
    path = checkpoint_path(model_dir, epoch)
    _save(net.state_dict(), path)
    return path


def load_checkpoint(
    model_dir: str | Path | ModelFolder,
    model: nn.Module,
    epoch: int | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scaler: Any = None,
    scheduler: Any = None,
    restore_rng: bool = False,
) -> dict[str, Any]:
    """Load weights (and whatever else is passed) of ``epoch`` (None = latest); returns {"epoch", "extra"}."""
    folder = ModelFolder.of(model_dir)
    net = unwrap_model(model)
    _check_matches(net, folder)
    epoch = folder.existing_epoch(epoch)
    path = folder.checkpoint_path(epoch)
    try:
        net.load_state_dict(_load(path))
    except RuntimeError as e:
        raise DataError(
            f"{path}: weights do not fit the model of {CONFIG_NAME}: {str(e).splitlines()[0]}"
        ) from e
    info: dict[str, Any] = {"epoch": epoch, "extra": {}}
    wanted = optimizer is not None or scaler is not None or scheduler is not None or restore_rng
    opath = folder.optim_path(epoch)
    if not opath.exists():
        if wanted:
            raise DataError(f"{opath}: file not found; cannot resume training state of epoch {epoch}")
        return info
    state = _load(opath)
    for key, obj in (("optimizer", optimizer), ("scaler", scaler), ("scheduler", scheduler)):
        if obj is not None:
            if key not in state:
                raise DataError(f"{opath}: holds no {key} state to resume from")
            if key == "scaler" and not state[key] and obj.is_enabled():
                # Saved without a GradScaler (fp32 or bf16), resumed where fp16 is chosen (--amp_dtype auto on a GPU
                # without native bf16): a fresh scaler finds its scale within a few steps.
                log.info(
                    "%s: saved without a GradScaler (fp32 or bf16); fp16 continues with a fresh one", opath
                )
                continue
            obj.load_state_dict(state[key])
    if restore_rng:
        _set_rng_state(state["rng"])
    info["extra"] = state.get("extra", {})
    return info


def load_model(
    model_dir: str | Path | ModelFolder,
    epoch: int | None = None,
    device: str | torch.device = "cpu",
    **overrides: Any,
) -> tuple[E2EModel, dict[str, Any], int]:
    """Rebuild the network of a model directory and load ``epoch`` (None = the selected one, ``selected_epoch``):
    (model in eval mode, config, epoch).

    ``overrides`` change run-time keys of the config (e.g. compile=True, channels_last=False).
    """
    folder = ModelFolder.of(model_dir)
    config = dict(folder.config)  # the caller's to change; the folder keeps what it read
    why = "asked for"
    if epoch is None:
        epoch, why = folder.selected_epoch()
    model = build_model({**config, **overrides, "pretrained": False})
    epoch = load_checkpoint(folder, model, epoch)["epoch"]
    model.to(device).eval()
    log.info(
        "loaded %s epoch %d, %s (%s + %s)",
        folder, epoch, why, config["feature_arch"], config["temporal_arch"],
    )  # fmt: skip
    return model, config, epoch
