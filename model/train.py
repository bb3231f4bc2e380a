"""Training of the E2E-Spot model: the epoch, validation, checkpoints, exact resume, DDP (``train_e2e.py``).

- Data: random clips of ``clip_len`` frames (``dataset.frame``), an epoch = ``epoch_num_frames`` frames; workers
  only decode JPEGs, augmentation and mixup run batched on the training device (``dataset.transform``).
- Loss: cross-entropy on every stage's logits with foreground classes weighted ``fg_weight`` (5, as E2E-Spot),
  MS-TCN's smoothing loss for multi-stage heads, and for ``--team`` a binary left/right loss at event frames.
- Optimiser: AdamW; learning rate linear warm-up (from 1%) then cosine to 0, stepped per optimiser step;
  gradient accumulation; CUDA AMP (bf16 where supported, else fp16 with a GradScaler); optional EMA weights.
- Each epoch: train loss, val loss (fixed val clips), and from ``start_val_epoch`` the val metrics over whole val
  videos through the one predict path (``model.select``: SoccerNet mAP@1 and Team mAP@1, each the best over a small
  post-processing grid, and E2E-Spot's frame mAP); the best epoch by ``--criterion`` (default: the task's metric).
  At the end, the best epoch's val scores choose the post-processing, ``selection.json`` records both, and val /
  test / challenge are predicted with them. Under DDP rank 0 computes the metrics and every rank takes its numbers.
- Exact resume: every random draw is a function of (seed, epoch, index / step, rank) and the torch RNG is reseeded
  at each epoch, so a run stopped after epoch k and resumed matches an uninterrupted one bit for bit (CPU).
- Scale: ``torchrun`` (or ``-mgpu``: one process per local GPU) runs DistributedDataParallel, NCCL on GPUs and
  gloo on CPU; clips are sharded by rank; only rank 0 writes files and shows the progress bar.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import random
import socket
import subprocess
import time
from argparse import Namespace
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from dataset.feature import (
    FEATURES_JSON,
    FeatureClipDataset,
    FeatureSource,
    feature_path,
    is_feature_dir,
    load_backbone_state,
    load_feature_info,
)
from dataset.frame import VAL_STREAM, EpochSampler, FrameClipDataset
from dataset.transform import ClipAugment, center_crop, mixup_clips, swap_team, to_clips
from model.common import (
    SMOOTHING_WEIGHT,
    build_model,
    default_config,
    list_epochs,
    load_checkpoint,
    load_config,
    save_checkpoint,
    save_config,
    save_selection,
    smoothing_loss,
    unwrap_model,
)
from model.predict import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_OVERLAP,
    autocast,
    cpu_amp_enabled,
    predict_scores,
    predict_videos,
    resolve_device,
    write_predictions,
)
from model.select import (
    CRITERIA,
    best_epoch,
    class_threshold_record,
    criterion_used,
    default_criterion,
    describe_interval,
    grid_scores,
    per_class_selection,
    selection_record,
    val_interval,
    validation_metrics,
)
from model.shift import DEFAULT_VARIANT
from model.transfer import init_from
from util.frame_dir import VIDEO_FILE, FrameDir
from util.frame_folder import read_fps
from util.io import DataError, atomic_write_bytes, atomic_write_text, load_json, store_json
from util.postprocess import DEFAULT_DISPLAY_THRESHOLD, DEFAULT_TARGET_PRECISION, PostProcess

log = logging.getLogger(__name__)

EPOCH_NUM_FRAMES = 500_000
FG_WEIGHT = 5.0
NUM_VAL_EPOCHS = 20  # default: val mAP over the last 20 epochs, as E2E-Spot
VAL_FRACTION = 4  # val-loss clips = a quarter of an epoch's clips, as E2E-Spot
PREDICT_SPLITS = ("val", "test", "challenge")
# Independent random streams (with the seed, epoch and rank) of everything that draws numbers.
AUG_STREAM, TORCH_STREAM = 2, 3
# Flags that only say how to run, not what is trained: they may change on --resume. (The dataset and the frame
# folder may change too when they hold the same data: ``check_resume_config``.)
RUNTIME_KEYS = (
    "resume",
    "num_workers",
    "device",
    "gpu_parallel",
    "git_commit",
    "stop_after_epoch",
    "save_dir",
    "verbose",
    "config",
    "resolved",
    "dist_backend",
    "target_precision",  # only what is recorded at the end, not what is trained
    "tensorboard",
)
# Flags added after runs were saved, with the value those runs had: a saved run without one resumes at it.
ADDED_FLAGS = {
    "amp_dtype": "auto",
    "init_from": None,
    "backbone_lr_mult": 1.0,
    "loss": "ce",
    "focal_gamma": 2.0,
    "displacement": 0,
    "tta": "none",
    "window_overlap": DEFAULT_OVERLAP,
    "per_class_nms": False,
    "arch_variant": None,
}
# Config keys added since the first models were saved, with the value an older config.json means.
ADDED_CONFIG_KEYS = {
    "displacement": 0,
    "tta": "none",
    "window_overlap": DEFAULT_OVERLAP,
    "arch_variant": DEFAULT_VARIANT,
}
LOSSES = ("ce", "focal")  # --loss: weighted cross-entropy, or focal loss (the 2023 winner's)


# ---------------------------------------------------------------------------------------------------------------
# Processes and devices


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | None, backend: str = "auto") -> Dist:
    """One process of a torchrun / -mgpu job (WORLD_SIZE > 1 in the environment), or a lone process.

    ``backend`` "auto" is NCCL on GPUs and gloo on CPU; gloo also runs on GPUs (slower), e.g. for two processes
    sharing one GPU, which NCCL refuses. Processes beyond the local GPU count share GPUs round-robin."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device)
    if resolved.type == "cuda" and world_size > 1:
        resolved = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
        torch.backends.cudnn.benchmark = True
    if world_size > 1 and not torch_dist.is_initialized():
        if backend == "auto":
            backend = "nccl" if resolved.type == "cuda" else "gloo"
        kwargs = {"device_id": resolved} if resolved.type == "cuda" and backend == "nccl" else {}
        torch_dist.init_process_group(backend, **kwargs)
    return Dist(rank, world_size, local_rank, resolved)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawned(local_rank: int, args: Namespace, world_size: int, port: int) -> None:
    from util.cli import setup_logging

    os.environ.update(
        RANK=str(local_rank),
        LOCAL_RANK=str(local_rank),
        WORLD_SIZE=str(world_size),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    setup_logging()
    train(args)


def launch(args: Namespace) -> dict | None:
    """The entry of ``train_e2e.py``: ``-mgpu`` outside torchrun spawns one process per local GPU."""
    under_torchrun = "WORLD_SIZE" in os.environ
    gpus = torch.cuda.device_count()
    if args.gpu_parallel and not under_torchrun and gpus > 1 and resolve_device(args.device).type == "cuda":
        log.info("-mgpu: training on %d local GPUs (DistributedDataParallel)", gpus)
        torch.multiprocessing.start_processes(
            _spawned, args=(args, gpus, _free_port()), nprocs=gpus, start_method="spawn"
        )
        return None
    if args.gpu_parallel and not under_torchrun:
        log.info("-mgpu: %d GPU(s) visible, training in one process", gpus)
    return train(args)


# ---------------------------------------------------------------------------------------------------------------
# Configuration and data


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def train_settings(args: Namespace) -> dict:
    """Every flag of the run, as plain JSON values (recorded in config.json under "train")."""
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in sorted(vars(args).items())}
    settings["git_commit"] = _git_commit()
    return settings


def build_config(args: Namespace, classes: Sequence[str], fps: float, frame_size: tuple[int, int]) -> dict:
    """The model config: what rebuilds the network, the frame geometry, and every training flag."""
    width, height = frame_size
    crop = args.crop_dim if args.crop_dim and args.crop_dim > 0 else None
    input_h, input_w = (min(crop, height), min(crop, width)) if crop else (height, width)
    return default_config(
        feature_arch=args.feature_arch,
        temporal_arch=args.temporal_arch,
        arch_variant=getattr(args, "arch_variant", None) or DEFAULT_VARIANT,
        clip_len=args.clip_len,
        classes=list(classes),
        frame_height=input_h,
        frame_width=input_w,
        fps=fps,
        team=bool(args.team),
        displacement=int(args.displacement),
        tta=args.tta,
        window_overlap=float(args.window_overlap),
        pretrained=bool(args.pretrained),
        source_width=width,
        source_height=height,
        crop_dim=crop,
        dataset=str(args.dataset),
        train=train_settings(args),
    )


def _same_dataset(old: str, new: str) -> bool:
    """Two DATASET arguments (names or paths) that give the same parsed labels: one folder, or equal files."""
    from util.dataset import resolve_dataset

    if old == new:
        return True
    try:
        a, b = resolve_dataset(old), resolve_dataset(new)
    except DataError:
        return False
    if a.resolve() == b.resolve():
        return True
    names = sorted(p.name for p in a.glob("*.json")) + ["class.txt"]
    return names == sorted(p.name for p in b.glob("*.json")) + ["class.txt"] and all(
        (a / n).is_file() and (b / n).is_file() and (a / n).read_bytes() == (b / n).read_bytes()
        for n in names
    )


def frame_folder_differences(frame_dir: Path, videos: Sequence[dict]) -> list[str]:
    """How the frames of ``videos`` under ``frame_dir`` (frame folders, or video files of a library there) differ
    from what the parsed labels say (their number of frames and frame rate); empty when they hold the frames that
    were trained on."""
    from util.frame_folder import read_frame_folder
    from util.video_index import VideoIndex

    frames = FrameDir(frame_dir)
    diffs = []
    for video in videos:
        try:
            path = frames.locate(video["video"], video.get(VIDEO_FILE))
            if path.is_dir():
                info = read_frame_folder(path)
            else:  # a video file, read at the labels' rate: count its frames there
                info = {"fps": float(video["fps"])}
                info["num_frames"] = len(VideoIndex.load(path).sample(info["fps"]))
        except DataError as e:
            diffs.append(str(e))
            continue
        if info["num_frames"] != video["num_frames"] or abs(info["fps"] - float(video["fps"])) > 1e-6:
            diffs.append(
                f"{path}: {info['num_frames']} frames at {info['fps']:g} fps, the labels "
                f"say {video['num_frames']} at {float(video['fps']):g}"
            )
    return diffs


def check_resume_config(saved: dict, config: dict, model_dir: Path, videos: Sequence[dict] = ()) -> None:
    """A resumed run must train the same thing: refuse differing model keys or training flags, listing each.

    Tolerated: the flags of ``RUNTIME_KEYS``; DATASET as a name instead of a path (or a copy of the same files);
    another FRAME_DIR whose folders for ``videos`` (train and val) have the frame counts of the parsed labels
    (the frames moved to node-local scratch)."""
    diffs = []
    saved = {**ADDED_CONFIG_KEYS, **saved}
    for key in sorted(set(saved) | set(config)):
        if key in ("train", "pretrained"):
            continue
        if key == "dataset" and _same_dataset(str(saved.get(key)), str(config.get(key))):
            continue
        if saved.get(key) != config.get(key):
            diffs.append(f"{key}: {saved.get(key)!r} (saved) != {config.get(key)!r}")
    old, new = {**ADDED_FLAGS, **saved.get("train", {})}, config.get("train", {})
    for key in sorted(set(old) | set(new)):
        if key in RUNTIME_KEYS or old.get(key) == new.get(key):
            continue
        # Compared as config keys above (arch_variant, resolved), or of no effect once a checkpoint is loaded
        # (pretrained: older --init_from runs recorded True, today's resolve it to False).
        if key in ("arch_variant", "pretrained"):
            continue
        if key == "dataset" and _same_dataset(str(old.get(key)), str(new.get(key))):
            continue
        if key == "frame_dir" and new.get(key):
            moved = frame_folder_differences(Path(new[key]), videos)
            if not moved:
                log.info("--resume: frames read from %s now (were %s)", new[key], old.get(key))
                continue
            diffs.append(f"FRAME_DIR {new[key]} does not hold the frames trained on: {'; '.join(moved[:3])}")
            continue
        diffs.append(f"--{key}: {old.get(key)!r} (saved) != {new.get(key)!r}")
    if diffs:
        raise DataError(f"{model_dir}/config.json: --resume with different settings: {'; '.join(diffs)}")


def load_dataset(dataset: str) -> tuple[Path, list[str], dict[str, list[dict]]]:
    """(dataset folder, classes, {split: videos}) of a dataset name or folder (splits that exist)."""
    from util.dataset import load_classes, load_split, resolve_dataset

    dataset_dir = resolve_dataset(dataset)
    classes = load_classes(dataset_dir)
    splits = {}
    for split in ("train", "val", "test", "challenge"):
        if (Path(dataset_dir) / f"{split}.json").is_file():
            splits[split] = load_split(dataset_dir, split)
    for split in ("train", "val"):
        if not splits.get(split):
            raise DataError(
                f"{dataset_dir}/{split}.json: missing or empty; training needs train and val videos"
            )
    return Path(dataset_dir), classes, splits


def check_frame_rate(frame_dir: Path, videos: Sequence[dict]) -> float:
    """The frame rate of the parsed labels, which must agree with the frame folders' fps.txt (a video file of the
    library is decoded at the labels' rate)."""
    rates = {float(v["fps"]) for v in videos}
    if len(rates) != 1:
        raise DataError(
            f"parsed labels mix frame rates {sorted(rates)}; extract every video at one --sample_fps"
        )
    fps = rates.pop()
    folder = FrameDir(frame_dir).locate(videos[0]["video"], videos[0].get(VIDEO_FILE))
    if not folder.is_dir():
        return fps
    on_disk = read_fps(folder)
    if abs(on_disk - fps) > 1e-3 * fps:
        raise DataError(
            f"{folder}/fps.txt says {on_disk:g} fps but the parsed labels say {fps:g}; parse the labels again "
            f"against this frame folder"
        )
    return fps


# Frozen features: FRAME_DIR is a feature folder of extract_features.py (features.json, backbone.pt, <video>.npy).
# The backbone is the recorded one, frozen, with backbone.pt's weights, so every checkpoint holds the whole network;
# clips of features go through ``forward_features`` and only the temporal head (and team head) is trained.


def use_features(args: Namespace, splits: dict) -> dict | None:
    """features.json of FRAME_DIR when it is a feature folder (else None), checked against the flags: ``-m`` is taken
    from it (or must agree), ``--crop_dim`` too, and a backbone with a temporal shift needs its ``--clip_len``."""
    if not is_feature_dir(args.frame_dir):
        return None
    info = load_feature_info(args.frame_dir)
    where = Path(args.frame_dir) / FEATURES_JSON
    arch = info["feature_arch"]
    if args.feature_arch is None:
        args.feature_arch = arch
    elif args.feature_arch != arch:
        raise DataError(
            f"-m {args.feature_arch}: {where} holds features of {arch}; pass -m {arch} or leave -m out"
        )
    variant = info.get("arch_variant", DEFAULT_VARIANT)  # the backbone of backbone.pt
    if getattr(args, "arch_variant", None) not in (None, variant):
        raise DataError(
            f"--arch_variant {args.arch_variant}: {where} holds features of a {variant} backbone; leave it out"
        )
    args.arch_variant = variant
    if "_" in arch and args.clip_len != int(info["clip_len"]):
        raise DataError(
            f"--clip_len {args.clip_len}: {where} was computed by {arch}, whose temporal shift mixed frames in "
            f"pieces of {info['clip_len']}; train with --clip_len {info['clip_len']} (or extract with --clip_len)"
        )
    crop = int(info.get("crop_dim") or 0)
    if args.crop_dim not in (0, crop):
        raise DataError(
            f"--crop_dim {args.crop_dim}: {where} was cropped at {crop or 'none'}; leave --crop_dim out"
        )
    args.crop_dim = crop
    rates = {float(v["fps"]) for v in splits["train"] + splits["val"]}
    if rates != {float(info["fps"])}:
        raise DataError(
            f"{where}: features at {float(info['fps']):g} fps but the parsed labels are at "
            f"{', '.join(f'{r:g}' for r in sorted(rates))} fps; extract the features of these labels' frames"
        )
    origin = info.get("model_dir") or info.get("source")
    log.info(
        "frozen features: %s of %s (%s), %d-d; training the temporal head only, without image augmentation",
        where, arch, origin, int(info["feature_dim"]),
    )  # fmt: skip
    return info


def features_config(args: Namespace, info: dict) -> dict:
    """What config.json records of the features: their geometry (the model's input), and ``frozen_features`` (the
    feature folder, its features.json). The backbone's weights come from backbone.pt, never from a download."""
    folder = Path(args.frame_dir).resolve()
    return {
        "source_width": int(info["source_width"]),
        "source_height": int(info["source_height"]),
        "frame_width": int(info["frame_width"]),
        "frame_height": int(info["frame_height"]),
        "pretrained": False,
        "frozen_features": {"feature_dir": str(folder), "features_json": str(folder / FEATURES_JSON), **info},
    }


def freeze_backbone(net: nn.Module, feature_dir: str | Path) -> None:
    """Load backbone.pt into ``net.backbone`` and freeze it (no gradients, so no optimizer state either)."""
    path = Path(feature_dir) / "backbone.pt"
    try:
        net.backbone.load_state_dict(load_backbone_state(feature_dir))
    except RuntimeError as e:
        raise DataError(
            f"{path}: does not fit the backbone of features.json ({str(e).splitlines()[0]})"
        ) from e
    net.backbone.requires_grad_(False)


class FeatureForward(nn.Module):
    """The module trained on frozen features: ``forward(features)`` is the model's ``forward_features`` (so that
    DistributedDataParallel wraps it as it wraps the whole model)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, features: torch.Tensor) -> dict:
        return self.net.forward_features(features)


def _has_inputs(trainer: Trainer, videos: Sequence[dict]) -> bool:
    """Whether the frames (a frame folder or a library file; on frozen features, the features) of every video are
    there to predict."""
    if trainer.config.get("frozen_features"):
        return all(feature_path(trainer.args.frame_dir, v["video"]).is_file() for v in videos)
    frames = FrameDir(trainer.args.frame_dir)
    return all(frames.has(v["video"], v.get(VIDEO_FILE)) for v in videos)


@dataclass
class Loaders:
    train: DataLoader
    val: DataLoader
    train_sampler: EpochSampler
    micro_batch: int
    frame_size: tuple[int, int]


def _loader(
    dataset, sampler, batch_size: int, num_workers: int, device: torch.device, seed: int
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=num_workers > 0,
        prefetch_factor=2 if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
    )


def build_loaders(args: Namespace, classes: list[str], splits: dict, dist: Dist) -> Loaders:
    per_step = args.acc_grad_iter * dist.world_size
    if args.batch_size % per_step:
        raise DataError(
            f"--batch_size {args.batch_size} must be a multiple of -ag ({args.acc_grad_iter}) x processes "
            f"({dist.world_size})"
        )
    micro_batch = args.batch_size // per_step
    num_clips = args.epoch_num_frames // args.clip_len
    if num_clips < args.batch_size:
        raise DataError(
            f"--epoch_num_frames {args.epoch_num_frames} gives {num_clips} clips of {args.clip_len} frames, "
            f"fewer than one batch ({args.batch_size})"
        )
    common = dict(
        classes=classes,
        clip_len=args.clip_len,
        dilate_len=args.dilate_len,
        seed=args.seed,
        displacement=int(args.displacement),
    )
    # Frozen features (FRAME_DIR holds a features.json of extract_features.py): clips of features, not frames.
    features = load_feature_info(args.frame_dir) if is_feature_dir(args.frame_dir) else None
    clip_data = FrameClipDataset if features is None else FeatureClipDataset
    train_data = clip_data(
        args.frame_dir,
        splits["train"],
        num_clips=num_clips,
        fg_upsample=args.fg_upsample or 0.0,
        fg_balance=args.fg_balance,
        **common,
    )
    val_clips = max(micro_batch * dist.world_size, num_clips // VAL_FRACTION)
    val_data = clip_data(args.frame_dir, splits["val"], num_clips=val_clips, stream=VAL_STREAM, **common)
    train_sampler = EpochSampler(num_clips, dist.rank, dist.world_size)
    val_sampler = EpochSampler(val_clips, dist.rank, dist.world_size)
    workers = args.num_workers
    return Loaders(
        train=_loader(train_data, train_sampler, micro_batch, workers, dist.device, args.seed),
        val=_loader(val_data, val_sampler, micro_batch, workers, dist.device, args.seed),
        train_sampler=train_sampler,
        micro_batch=micro_batch,
        frame_size=train_data.frame_size
        if features is None
        else (int(features["source_width"]), int(features["source_height"])),
    )


def worker_error(error: DataError) -> DataError:
    """A DataError raised in a DataLoader worker comes back wrapped in a traceback; keep its one-line message."""
    text = str(error)
    marker = "DataError: "
    return DataError(text[text.rindex(marker) + len(marker) :].strip()) if marker in text else error


# ---------------------------------------------------------------------------------------------------------------
# Loss, schedule, EMA


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, gamma: float
) -> torch.Tensor:
    """Focal loss against target distributions: the mean over rows of -sum_c w_c t_c (1 - p_c)^gamma log p_c
    (``logits`` and ``targets`` (N, C)); gamma 0 is ``F.cross_entropy`` with the same weights."""
    log_p = F.log_softmax(logits, dim=-1)
    focus = (1.0 - log_p.exp()).pow(gamma)
    return -(weight * targets * focus * log_p).sum(dim=-1).mean()


def spot_loss(
    output: dict,
    targets: torch.Tensor,
    class_weights: torch.Tensor,
    team: torch.Tensor | None = None,
    team_mask: torch.Tensor | None = None,
    focal_gamma: float | None = None,
    displacement: torch.Tensor | None = None,
    displacement_mask: torch.Tensor | None = None,
    displacement_radius: int = 1,
) -> torch.Tensor:
    """Weighted cross-entropy (or focal loss with ``focal_gamma``) on every stage against per-frame target
    distributions (B, T, C+1), MS-TCN smoothing for multi-stage heads, the team loss at frames with a known
    team (``team_mask``), and T-DEED's displacement loss (:func:`displacement_loss`) at frames within
    ``displacement_radius`` of an event (``displacement_mask``)."""
    stages = output.get("stage_logits") or [output["logits"]]
    num_outputs = targets.shape[-1]
    flat_targets = targets.reshape(-1, num_outputs)
    loss = targets.new_zeros(())
    for logits in stages:
        flat = logits.float().reshape(-1, num_outputs)
        if focal_gamma is None:
            loss = loss + F.cross_entropy(flat, flat_targets, weight=class_weights)
        else:
            loss = loss + focal_loss(flat, flat_targets, class_weights, focal_gamma)
        if len(stages) > 1:
            loss = loss + SMOOTHING_WEIGHT * smoothing_loss(logits)
    if team is not None and "team" in output:
        bce = F.binary_cross_entropy_with_logits(output["team"].float(), team, reduction="none")
        loss = loss + (bce * team_mask).sum() / team_mask.sum().clamp_min(1.0)
    if displacement is not None and "displacement" in output:
        loss = loss + displacement_loss(
            output["displacement"], displacement, displacement_mask, displacement_radius
        )
    return loss


def displacement_loss(
    predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, radius: int
) -> torch.Tensor:
    """Mean squared error of the displacement (frames) at the frames within ``radius`` of an event (``mask``),
    in units of the radius (targets in [-1, 1]), so the term weighs the same at any radius."""
    error = ((predicted.float() - target) / radius) ** 2
    return (error * mask).sum() / mask.sum().clamp_min(1.0)


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up from 1% to 100% over ``warmup_steps``, then cosine decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return 0.01 + 0.99 * step / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


class Ema:
    """Exponential moving average of a model's weights (buffers are copied as they are).

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after n updates, so the average does not stay
    anchored to the random initial weights in a short run.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(unwrap_model(model)).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        source = unwrap_model(model)
        for ema_p, p in zip(self.model.parameters(), source.parameters(), strict=True):
            ema_p.lerp_(p.detach(), 1.0 - decay)
        for ema_b, b in zip(self.model.buffers(), source.buffers(), strict=True):
            ema_b.copy_(b)


# ---------------------------------------------------------------------------------------------------------------
# The epoch


@dataclass
class Trainer:
    args: Namespace
    config: dict
    dist: Dist
    model: nn.Module  # the module trained (DDP-wrapped when distributed)
    net: nn.Module  # the unwrapped network
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    loaders: Loaders
    augment: ClipAugment
    class_weights: torch.Tensor
    ema: Ema | None = None
    amp: bool = True
    amp_dtype: torch.dtype | None = None  # bf16 or fp16 (with the GradScaler) under CUDA AMP
    focal_gamma: float | None = None  # --loss focal: its gamma; None: weighted cross-entropy

    @property
    def eval_net(self) -> nn.Module:
        """The weights that are validated, saved as checkpoints and used for predictions."""
        return self.ema.model if self.ema is not None else self.net

    def _autocast(self):
        return autocast(self.dist.device, self.amp_dtype) if self.amp else contextlib.nullcontext()

    def _batch(
        self, batch: dict, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """(clips, class targets, the other targets as ``spot_loss`` keyword arguments) of a loader batch."""
        device = self.dist.device
        features = "features" in batch  # frozen features (B, T, D): no image augmentation
        clips = (
            batch["features"].to(device, non_blocking=True) if features else to_clips(batch["frames"], device)
        )
        team = batch["team"].to(device, non_blocking=True)
        team_mask = batch["team_mask"].to(device, non_blocking=True)
        # Features are neither augmented nor cropped: the backbone ran once, on centre-cropped frames.
        if not features and generator is not None and self.args.augment:
            clips, flipped = self.augment(clips, generator)
            team = swap_team(team, flipped)
        elif not features:
            clips = center_crop(clips, (self.config["frame_height"], self.config["frame_width"]))
        num_outputs = len(self.config["classes"]) + 1
        targets = F.one_hot(batch["labels"].to(device), num_outputs).float()
        radius = int(self.config["displacement"])
        # Masked targets (team, displacement) are stacked on a last axis so that mixup mixes them alike.
        masked = [team] + ([batch["displacement"].to(device, non_blocking=True)] if radius else [])
        masks = [team_mask] + ([batch["displacement_mask"].to(device, non_blocking=True)] if radius else [])
        values, value_masks = torch.stack(masked, -1), torch.stack(masks, -1)
        if generator is not None and self.args.mixup:
            if features:  # mixed as (B, T, D, 1, 1) clips
                clips, targets, values, value_masks = mixup_clips(
                    clips[..., None, None], targets, values, value_masks, generator
                )
                clips = clips[..., 0, 0]
            else:
                clips, targets, values, value_masks = mixup_clips(
                    clips, targets, values, value_masks, generator
                )
        extras: dict = {"focal_gamma": self.focal_gamma}
        if self.config["team"]:
            extras.update(team=values[..., 0], team_mask=value_masks[..., 0])
        if radius:
            extras.update(
                displacement=values[..., 1], displacement_mask=value_masks[..., 1], displacement_radius=radius
            )
        return clips, targets, extras

    def train_epoch(self, epoch: int) -> dict:
        args, dist = self.args, self.dist
        self.model.train()
        self.loaders.train_sampler.set_epoch(epoch)
        torch.manual_seed(_seed(args.seed, TORCH_STREAM, epoch, dist.rank))
        generator = torch.Generator().manual_seed(_seed(args.seed, AUG_STREAM, epoch, dist.rank))
        acc = args.acc_grad_iter
        num_micro = (len(self.loaders.train) // acc) * acc
        frames_per_micro = self.loaders.micro_batch * args.clip_len * dist.world_size
        total_loss, start = 0.0, time.perf_counter()
        bar = tqdm(total=num_micro // acc, desc=f"epoch {epoch}", disable=not dist.is_main, leave=False)
        self.optimizer.zero_grad(set_to_none=True)
        try:
            for i, batch in enumerate(self.loaders.train):
                if i >= num_micro:
                    break
                clips, targets, extras = self._batch(batch, generator)
                step_now = (i + 1) % acc == 0
                sync = contextlib.nullcontext() if step_now or not dist.active else self.model.no_sync()
                with sync:
                    with self._autocast():
                        output = self.model(clips)
                    loss = spot_loss(output, targets, self.class_weights, **extras)
                    self.scaler.scale(loss / acc).backward()
                total_loss += loss.item()
                if step_now:
                    self._step()
                    rate = (i + 1) * frames_per_micro / (time.perf_counter() - start)
                    lr = self.optimizer.param_groups[0]["lr"]
                    bar.set_postfix(loss=f"{total_loss / (i + 1):.4f}", lr=f"{lr:.2e}", fps=f"{rate:.0f}")
                    bar.update()
        except DataError as e:
            raise worker_error(e) from None
        finally:
            bar.close()
        seconds = time.perf_counter() - start
        loss = _mean_over_ranks(total_loss, max(num_micro, 1), dist)
        return {"train": loss, "frames_per_s": num_micro * frames_per_micro / seconds, "train_s": seconds}

    def _step(self) -> None:
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.net)

    def val_loss(self) -> float:
        net = self.eval_net
        net.eval()
        total, count = 0.0, 0
        try:
            with torch.inference_mode():
                for batch in self.loaders.val:
                    clips, targets, extras = self._batch(batch, None)
                    with self._autocast():
                        output = net.forward_features(clips) if clips.dim() == 3 else net(clips)
                    total += spot_loss(output, targets, self.class_weights, **extras).item()
                    count += 1
        except DataError as e:
            raise worker_error(e) from None
        return _mean_over_ranks(total, max(count, 1), self.dist)


def _mean_over_ranks(total: float, count: int, dist: Dist) -> float:
    if not dist.active:
        return total / count
    t = torch.tensor([total, float(count)], dtype=torch.float64, device=_comm_device(dist))
    torch_dist.all_reduce(t)
    return float(t[0] / t[1])


def _comm_device(dist: Dist) -> torch.device:
    return dist.device if torch_dist.get_backend() == "nccl" else torch.device("cpu")


# ---------------------------------------------------------------------------------------------------------------
# Validation mAP and predictions over whole videos (sharded by rank, gathered on rank 0)


def predict_sharded(trainer: Trainer, videos: Sequence[dict]) -> dict | None:
    """Per-frame scores of ``videos`` (rank r predicts every world_size-th video); the union on rank 0, None
    elsewhere."""
    dist = trainer.dist
    shard = list(videos)[dist.rank :: dist.world_size]
    if trainer.config.get("frozen_features"):  # the temporal head alone, on the precomputed features
        fps, folder = float(trainer.config["fps"]), trainer.args.frame_dir
        results = {
            v["video"]: predict_scores(
                trainer.eval_net,
                trainer.config,
                FeatureSource(feature_path(folder, v["video"]), fps, v.get("num_frames")),
                DEFAULT_BATCH_SIZE,
                dist.device,
            )
            for v in shard
        }
    else:
        results = predict_videos(
            trainer.eval_net, trainer.config, trainer.args.frame_dir, shard, DEFAULT_BATCH_SIZE, dist.device
        )
    if not dist.active:
        return results
    gathered = [None] * dist.world_size if dist.is_main else None
    torch_dist.gather_object(results, gathered, dst=0)
    if not dist.is_main:
        return None
    merged = {}
    for part in gathered:
        merged.update(part)
    return {v["video"]: merged[v["video"]] for v in videos}


# ---------------------------------------------------------------------------------------------------------------
# The run


TRAINING_PLOT = "training.png"  # loss.csv drawn: train/val loss, val mAP@1 (team, frame), learning rate


def write_history(model_dir: Path, history: list[dict]) -> None:
    store_json(model_dir / "loss.json", history)
    keys = [
        "epoch",
        "train",
        "val",
        "val_mAP",
        "val_team_mAP",
        "val_frame_mAP",
        "lr",
        "frames_per_s",
        "train_s",
    ]
    rows = [",".join([*keys, "val_nms_s"])]
    for h in history:
        values = ["" if h.get(k) is None else f"{h[k]:.6g}" for k in keys]
        post = h.get("val_team_postprocess") or h.get("val_postprocess")
        values.append("" if post is None else f"{post['nms_window_s']:g}{' soft' if post['soft'] else ''}")
        rows.append(",".join(values))
    atomic_write_text(model_dir / "loss.csv", "\n".join(rows) + "\n")
    try:  # the curves are for people: a plotting failure must not stop training
        from util.report import figure_training

        atomic_write_bytes(model_dir / TRAINING_PLOT, figure_training(history))
    except Exception as e:  # noqa: BLE001
        log.warning("could not draw %s (%s)", model_dir / TRAINING_PLOT, e)


TENSORBOARD_DIR = "tensorboard"  # --tensorboard without DIR: SAVE_DIR/tensorboard
# The scalars written for TensorBoard (history key -> tag), the columns of loss.csv.
TENSORBOARD_TAGS = {
    "train": "loss/train",
    "val": "loss/val",
    "val_mAP": "val/mAP@1",
    "val_team_mAP": "val/Team mAP@1",
    "val_frame_mAP": "val/frame mAP",
    "lr": "train/learning rate",
    "frames_per_s": "train/frames per s",
}


def open_tensorboard(args: Namespace, model_dir: Path, start_epoch: int):
    """A ``SummaryWriter`` for ``--tensorboard`` (None when not asked); events after ``start_epoch`` left by an
    interrupted run are dropped, so a resumed run's curves are continuous. DataError without the package."""
    if getattr(args, "tensorboard", None) is None:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise DataError(
            "--tensorboard needs the tensorboard package: `pip install tensorboard` (or train without "
            "--tensorboard: loss.csv and training.png hold the same curves)"
        ) from None
    folder = Path(args.tensorboard) if args.tensorboard else model_dir / TENSORBOARD_DIR
    log.info("TensorBoard logs in %s (tensorboard --logdir %s)", folder, folder)
    return SummaryWriter(str(folder), purge_step=start_epoch if start_epoch else None)


def log_tensorboard(writer, entry: dict) -> None:
    """One epoch of the history as TensorBoard scalars, at step = epoch."""
    for key, tag in TENSORBOARD_TAGS.items():
        if entry.get(key) is not None:
            writer.add_scalar(tag, float(entry[key]), entry["epoch"])
    writer.flush()


def _prune_optim_files(model_dir: Path, keep_epoch: int) -> None:
    # Only the last epoch's optimizer state is needed to resume; older ones are large.
    for path in model_dir.glob("optim_*.pt"):
        with contextlib.suppress(ValueError, FileNotFoundError):
            if int(path.stem.split("_")[1]) < keep_epoch:
                path.unlink()


def _barrier(dist: Dist) -> None:
    if dist.active:
        torch_dist.barrier()


def amp_dtype_of(name: str) -> torch.dtype:
    """``--amp_dtype``: "bf16", "fp16", or "auto" (bf16 where the GPU supports it, else fp16)."""
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[name]


def make_trainer(args: Namespace, config: dict, dist: Dist, loaders: Loaders) -> Trainer:
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    net = build_model(config)
    # --init_from starts a run; a resumed one continues from its own checkpoint.
    if getattr(args, "init_from", None) and not (args.resume and list_epochs(args.save_dir)):
        transfer = init_from(net, config, args.init_from)
        if dist.is_main:
            log.info("%s", transfer.describe())
    if config.get("frozen_features"):
        freeze_backbone(net, args.frame_dir)
    net = net.to(dist.device)
    model = FeatureForward(net) if config.get("frozen_features") else net
    if dist.active:
        device_ids = [dist.device.index] if dist.device.type == "cuda" else None
        model = DistributedDataParallel(model, device_ids=device_ids)
    optimizer = torch.optim.AdamW(parameter_groups(net, args), lr=args.learning_rate)
    steps_per_epoch = max(1, len(loaders.train) // args.acc_grad_iter)
    warmup, total = args.warm_up_epochs * steps_per_epoch, args.num_epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, warmup, total))
    on_cuda = dist.device.type == "cuda"
    amp = bool(args.amp) and (on_cuda or (dist.device.type == "cpu" and cpu_amp_enabled()))
    amp_dtype = amp_dtype_of(args.amp_dtype) if amp and on_cuda else None  # the CPU's is always bf16
    scaler = torch.amp.GradScaler(dist.device.type, enabled=amp_dtype == torch.float16)
    num_outputs = len(config["classes"]) + 1
    class_weights = torch.tensor([1.0] + [args.fg_weight] * (num_outputs - 1), device=dist.device)
    crop = config.get("crop_dim")
    augment = ClipAugment(crop_hw=(config["frame_height"], config["frame_width"]) if crop else None)
    ema = Ema(net, args.ema) if args.ema else None
    return Trainer(
        args,
        config,
        dist,
        model,
        net,
        optimizer,
        scheduler,
        scaler,
        loaders,
        augment,
        class_weights,
        ema,
        amp,
        amp_dtype,
        args.focal_gamma if getattr(args, "loss", "ce") == "focal" else None,
    )


def parameter_groups(net: nn.Module, args: Namespace) -> list[dict]:
    """The optimizer's groups: the head (and team head) at the learning rate, the backbone at
    ``--backbone_lr_mult`` times it (fine-tuning a transferred backbone more gently). The head's group is first:
    its rate is the one logged."""
    mult = float(getattr(args, "backbone_lr_mult", 1.0))
    backbone = [p for p in net.backbone.parameters() if p.requires_grad]  # none when frozen (features)
    ids = {id(p) for p in net.backbone.parameters()}
    rest = [p for p in net.parameters() if id(p) not in ids and p.requires_grad]
    if mult == 1.0 or not backbone:
        return [{"params": rest + backbone}]
    return [{"params": rest}, {"params": backbone, "lr": args.learning_rate * mult}]


def _precision(trainer: Trainer) -> str:
    if not trainer.amp:
        return "fp32"
    if trainer.dist.device.type == "cpu":
        return "bf16 autocast: this CPU has native bf16; --no-amp for fp32"
    return f"{'bf16' if trainer.amp_dtype == torch.bfloat16 else 'fp16'} autocast"


def resume(trainer: Trainer, model_dir: Path) -> tuple[int, list[dict]]:
    """Load the last complete epoch; returns (next epoch, history up to it)."""
    if not list_epochs(model_dir):
        log.info("--resume: no checkpoint in %s yet, starting from epoch 0", model_dir)
        return 0, []
    info = load_checkpoint(
        model_dir, trainer.eval_net, None, trainer.optimizer, trainer.scaler, trainer.scheduler
    )
    if trainer.ema is not None:
        trainer.net.load_state_dict(info["extra"]["train_weights"])
        trainer.ema.updates = int(info["extra"]["ema_updates"])
    history_path = model_dir / "loss.json"
    history = load_json(history_path) if history_path.exists() else []
    history = [_current_keys(h) for h in history if h["epoch"] <= info["epoch"]]
    log.info("resuming after epoch %d", info["epoch"])
    return info["epoch"] + 1, history


def _current_keys(entry: dict) -> dict:
    # Histories written before SoccerNet mAP@1 was the validation metric hold E2E-Spot's frame mAP as "val_mAP".
    if "val_frame_mAP" not in entry and "val_mAP" in entry:
        entry = {**entry, "val_frame_mAP": entry["val_mAP"], "val_mAP": None, "val_team_mAP": None}
    return entry


def _save_epoch(trainer: Trainer, model_dir: Path, epoch: int, history: list[dict]) -> None:
    extra = None
    if trainer.ema is not None:
        extra = {"train_weights": trainer.net.state_dict(), "ema_updates": trainer.ema.updates}
    save_checkpoint(
        model_dir, epoch, trainer.eval_net, trainer.optimizer, trainer.scaler, trainer.scheduler, extra=extra
    )
    write_history(model_dir, history)
    _prune_optim_files(model_dir, epoch)


def run_epochs(trainer: Trainer, model_dir: Path, start: int, history: list[dict], val_videos: list) -> list:
    args, dist = trainer.args, trainer.dist
    board = open_tensorboard(args, model_dir, start) if dist.is_main else None
    try:
        return _run_epochs(trainer, model_dir, start, history, val_videos, board)
    finally:
        if board is not None:
            board.close()


def _run_epochs(
    trainer: Trainer, model_dir: Path, start: int, history: list[dict], val_videos: list, board
) -> list:
    args, dist = trainer.args, trainer.dist
    last = (
        args.num_epochs - 1
        if args.stop_after_epoch is None
        else min(args.stop_after_epoch, args.num_epochs - 1)
    )
    for epoch in range(start, last + 1):
        stats = trainer.train_epoch(epoch)
        stats["val"] = trainer.val_loss()
        stats.update(val_mAP=None, val_team_mAP=None, val_frame_mAP=None)
        if args.criterion != "loss" and epoch >= args.start_val_epoch:
            results = predict_sharded(trainer, val_videos)
            metrics = validation_metrics(results, val_videos, trainer.config) if dist.is_main else None
            stats.update(_from_rank_0(metrics, dist))
        history.append({"epoch": epoch, **stats, "lr": trainer.optimizer.param_groups[0]["lr"]})
        if dist.is_main:
            _save_epoch(trainer, model_dir, epoch, history)
            if board is not None:
                log_tensorboard(board, history[-1])
            log.info(
                "epoch %d: train loss %.4f, val loss %.4f%s (best epoch %s by %s), %.0f frames/s",
                epoch, stats["train"], stats["val"], _metrics_text(stats), best_epoch(history, args.criterion),
                CRITERIA[criterion_used(history, args.criterion)][2], stats["frames_per_s"],
            )  # fmt: skip
        _barrier(dist)
    return history


def _metrics_text(stats: dict) -> str:
    names = (("val_mAP", "val mAP@1"), ("val_team_mAP", "val Team mAP@1"), ("val_frame_mAP", "val frame mAP"))
    return "".join(f", {name} {stats[k]:.4f}" for k, name in names if stats.get(k) is not None)


def _from_rank_0(value, dist: Dist):
    """Rank 0's ``value`` on every rank (a picklable object), so that all ranks make the same decisions."""
    if not dist.active:
        return value
    box = [value]
    torch_dist.broadcast_object_list(box, src=0, device=_comm_device(dist))
    return box[0]


def predict_best(
    trainer: Trainer, model_dir: Path, splits: dict, epoch: int, history: list[dict]
) -> dict[str, Path]:
    """With the weights of ``epoch``: choose the post-processing on val, record the selection (selection.json),
    and write the predictions of each split with frames on disk."""
    load_checkpoint(model_dir, trainer.eval_net, epoch)
    dist, config = trainer.dist, trainer.config
    val_results = predict_sharded(trainer, splits["val"])
    post = None
    if dist.is_main:
        rows = grid_scores(val_results, splits["val"], config)
        record = selection_record(
            history, trainer.args.criterion, epoch, rows, config, DEFAULT_DISPLAY_THRESHOLD
        )
        if trainer.args.per_class_nms:
            record = per_class_selection(record, val_results, splits["val"], config, rows)
        post = PostProcess.from_dict(record["postprocess"])
        target = getattr(trainer.args, "target_precision", DEFAULT_TARGET_PRECISION)
        record.update(class_threshold_record(val_results, splits["val"], config, post, target))
        interval = val_interval(val_results, splits["val"], config, post)
        if interval is not None:
            # The epoch and the post-processing were chosen on these games: the interval says how far luck reaches.
            record["val_interval"] = interval
            log.info("selection made on val: %s", describe_interval(interval))
        save_selection(model_dir, record)
        log.info("display thresholds per class (val precision >= %g at delta 1 s, else best F1): %s", target,
                 ", ".join(f"{c} {t:g}" for c, t in record["class_thresholds"].items()) or "none")  # fmt: skip
        log.info(
            "selected epoch %d (%s %s); post-processing %s (by %s: %.4f)",
            epoch, record["metric"], "-" if record["value"] is None else f"{record['value']:.4f}",
            post.describe(float(config["fps"])), record["postprocess_chosen_by"],
            record["val_team_mAP"] if "Team" in record["postprocess_chosen_by"] else record["val_mAP"],
        )  # fmt: skip
    written = {}
    for split in PREDICT_SPLITS:
        videos = splits.get(split) or []
        if not videos:
            continue
        if split == "val":
            results = val_results
        elif not _has_inputs(trainer, videos):
            log.warning(
                "skipping predictions on %s: some of its frame folders (or features) are missing", split
            )
            continue
        else:
            results = predict_sharded(trainer, videos)
        if dist.is_main:
            _, path = write_predictions(model_dir, split, epoch, results, config, post)
            written[split] = path
            log.info("wrote %s", path)
    return written


def train(args: Namespace) -> dict | None:
    """Train as ``args`` (train_e2e.py's flags) say; returns a summary on rank 0 (None on other ranks)."""
    dist = init_distributed(args.device, args.dist_backend)
    if not dist.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    try:
        return _train(args, dist)
    finally:
        if dist.active and torch_dist.is_initialized():
            torch_dist.destroy_process_group()


def _train(args: Namespace, dist: Dist) -> dict | None:
    model_dir = Path(args.save_dir)
    if args.criterion == "team_map" and not args.team:
        raise DataError("--criterion team_map needs --team (a model with a team head)")
    # config.json records the flags as given (None = the default, resolved again by --config) and as resolved.
    given = {"start_val_epoch": args.start_val_epoch, "criterion": args.criterion}
    _, classes, splits = load_dataset(args.dataset)
    resolve_defaults(args, splits["val"])
    features = use_features(args, splits)
    fps = check_frame_rate(Path(args.frame_dir), splits["train"]) if features is None else features["fps"]
    loaders = build_loaders(args, classes, splits, dist)
    config = build_config(args, classes, fps, loaders.frame_size)
    if features is not None:
        config.update(features_config(args, features))
    config["train"].update(given, resolved={k: getattr(args, k) for k in given})
    check_model_dir(args, config, model_dir, splits["train"] + splits["val"])
    if dist.is_main:
        model_dir.mkdir(parents=True, exist_ok=True)
        save_config(model_dir, config)
    _barrier(dist)
    trainer = make_trainer(args, config, dist, loaders)
    start, history = resume(trainer, model_dir) if args.resume else (0, [])
    log.info(
        "training %s + %s on %d train videos, %d clips of %d frames per epoch, %d process(es) on %s (%s)",
        config["feature_arch"], config["temporal_arch"], len(splits["train"]),
        len(loaders.train_sampler) * dist.world_size, args.clip_len, dist.world_size, dist.device,
        _precision(trainer),
    )  # fmt: skip
    history = run_epochs(trainer, model_dir, start, history, splits["val"])
    if args.stop_after_epoch is not None and args.stop_after_epoch < args.num_epochs - 1:
        return {"stopped_after": args.stop_after_epoch, "history": history} if dist.is_main else None
    best = best_epoch(history, args.criterion)
    if best is None:
        return None
    written = predict_best(trainer, model_dir, splits, best, history)
    if not dist.is_main:
        return None
    log.info("best epoch: %d", best)
    return {"best_epoch": best, "history": history, "predictions": {k: str(v) for k, v in written.items()}}


def resolve_defaults(args: Namespace, val_videos: Sequence[dict]) -> None:
    """``--start_val_epoch`` (the last NUM_VAL_EPOCHS epochs) and ``--criterion`` (the task's metric) when not
    given; Team mAP needs teams in the val labels, else mAP@1 is used, with a warning."""
    if args.start_val_epoch is None:
        args.start_val_epoch = max(0, args.num_epochs - NUM_VAL_EPOCHS)
    if args.criterion is None:
        args.criterion = default_criterion(bool(args.team))
    if args.criterion == "team_map" and not any(
        e.get("team") for v in val_videos for e in v.get("events", [])
    ):
        log.warning("the val labels carry no team: the best epoch is chosen by val mAP@1, not Team mAP@1")
        args.criterion = "map"


def check_model_dir(args: Namespace, config: dict, model_dir: Path, videos: Sequence[dict]) -> None:
    """Refuse to overwrite a trained model, and a --resume that would train something else (every rank checks,
    so all fail together)."""
    if list_epochs(model_dir) and not args.resume:
        raise DataError(
            f"{model_dir}: already holds checkpoints; pass --resume to continue, or choose another -s"
        )
    if args.resume and (model_dir / "config.json").exists():
        check_resume_config(load_config(model_dir), config, model_dir, videos)
