"""What a run reads, chosen once from FRAME_DIR (``choose_inputs``), and everything that depends on it.

- ``FrameInputs``: frames, from step 1's JPEG folders or from the video library itself (a video without a frame
  folder is decoded on the fly at its labels' rate: ``util.frame_dir``). Clips are augmented (or centre-cropped)
  on the training device; the whole network is trained.
- ``FeatureInputs``: frozen features, a feature folder of ``extract_features.py`` (features.json, backbone.pt,
  ``<video>.npy``). The backbone is the recorded one, frozen, with backbone.pt's weights, so every checkpoint holds
  the whole network; clips of features go through ``forward_features`` and only the temporal head (and team head)
  is trained.

Each kind supplies the clip datasets, the batch preparation, the module trained, the forward pass on a clip, and
the frame source of a video to predict: nothing downstream asks which kind it has.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.utils.data import DataLoader

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
from dataset.source import FrameSource
from dataset.transform import ClipAugment, center_crop, mixup_clips, to_clips
from model.predict import model_frame_source
from model.shift import DEFAULT_VARIANT
from model.train.options import joint_clips
from util.frame_dir import VIDEO_FILE, FrameDir
from util.frame_folder import read_fps
from util.io import DataError

if TYPE_CHECKING:
    from model.train.dist import Dist
    from model.train.options import TrainOptions
    from model.train.run_config import JointData

log = logging.getLogger(__name__)

VAL_FRACTION = 4  # val-loss clips = a quarter of an epoch's clips, as E2E-Spot
# The second dataset's clip draws (--joint): a stream of its own, beside the first's train (0) and val (1) and the
# loop's augmentation (2) and torch (3) streams (model.train.loop).
JOINT_STREAM = 4


def choose_inputs(frame_dir: str | Path) -> FrameInputs | FeatureInputs:
    """The inputs of FRAME_DIR: a feature folder (it holds features.json), else frames."""
    return FeatureInputs(frame_dir) if is_feature_dir(frame_dir) else FrameInputs(frame_dir)


class FrameInputs:
    """Frames of JPEG folders or of the video library; one ``FrameDir`` for the whole run."""

    def __init__(self, frame_dir: str | Path):
        self.frame_dir = Path(frame_dir)
        self.frames = FrameDir(self.frame_dir)

    def reconcile(self, args: TrainOptions, splits: dict) -> None:
        """Nothing to take from frames: the flags say the network."""

    def fps(self, videos: Sequence[dict]) -> float:
        """The frame rate of the parsed labels, which must agree with the frame folders' fps.txt (a video file of
        the library is decoded at the labels' rate)."""
        rates = {float(v["fps"]) for v in videos}
        if len(rates) != 1:
            raise DataError(
                f"parsed labels mix frame rates {sorted(rates)}; extract every video at one --sample_fps"
            )
        fps = rates.pop()
        folder = self.frames.locate(videos[0]["video"], videos[0].get(VIDEO_FILE))
        if not folder.is_dir():
            return fps
        on_disk = read_fps(folder)
        if abs(on_disk - fps) > 1e-3 * fps:
            raise DataError(
                f"{folder}/fps.txt says {on_disk:g} fps but the parsed labels say {fps:g}; parse the labels "
                f"again against this frame folder"
            )
        return fps

    def clip_dataset(self, videos: Sequence[dict], **kwargs) -> FrameClipDataset:
        return FrameClipDataset(self.frames, videos, **kwargs)

    def frame_size(self, train_data: FrameClipDataset) -> tuple[int, int]:
        """(width, height) of the frames the model reads before any crop."""
        return train_data.frame_size

    def config(self) -> dict:
        """What config.json records of the inputs (nothing: the frame geometry is the model's)."""
        return {}

    def trained_module(self, net: nn.Module) -> nn.Module:
        """The module whose forward the loop calls (and DDP wraps): the whole network."""
        return net

    def prepare(
        self,
        batch: dict,
        device: torch.device,
        augment: ClipAugment | None,
        crop_hw: tuple[int, int],
        generator,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(clips, which clips were mirrored or None) of a loader batch: augmented when ``augment`` is given,
        else centre-cropped to ``crop_hw``."""
        clips = to_clips(batch["frames"], device)
        if augment is not None:
            return augment(clips, generator)
        return center_crop(clips, crop_hw), None

    def mixup(self, clips, targets, values, masks, generator):
        return mixup_clips(clips, targets, values, masks, generator)

    def forward(self, net: nn.Module, clips: torch.Tensor) -> dict:
        return net(clips)

    def joint_dataset(self, joint: JointData, train_data: FrameClipDataset, **kwargs) -> FrameClipDataset:
        """The clips of ``--joint``'s second dataset: its train videos' frames (FRAME_DIR2, checked against its
        labels' frame rate), read at the first dataset's frame size so that both stack into one batch."""
        fps = FrameInputs(joint.frame_dir).fps(joint.train)
        first = float(train_data.videos[0]["fps"])
        if abs(fps - first) > 1e-3 * first:
            log.warning(
                "--joint: %s is at %g fps, %s at %g: the network sees both rates", joint.dataset_dir, fps,
                self.frame_dir, first,
            )  # fmt: skip
        data = FrameClipDataset(FrameDir(joint.frame_dir), joint.train, **kwargs)
        if data.frame_size != train_data.frame_size:
            log.info(
                "--joint: %s's %dx%d frames are resized to %dx%d", joint.frame_dir, *data.frame_size,
                *train_data.frame_size,
            )  # fmt: skip
            data.frame_size = train_data.frame_size
        return data

    def has(self, videos: Sequence[dict]) -> bool:
        """Whether the frames (a frame folder or a library file) of every video are there to predict."""
        return all(self.frames.has(v["video"], v.get(VIDEO_FILE)) for v in videos)

    def source(self, config: dict, video: dict) -> FrameSource:
        """The frames of ``video`` for prediction (its frame folder, or its library file decoded at the model's
        rate and size)."""
        path = self.frames.locate(video["video"], video.get(VIDEO_FILE))
        return model_frame_source(config, path, num_frames=int(video["num_frames"]))


class FeatureInputs:
    """Frozen features of a feature folder (``dataset.feature``): the temporal head alone is trained."""

    def __init__(self, frame_dir: str | Path):
        self.frame_dir = Path(frame_dir)
        self.info = load_feature_info(frame_dir)
        self.where = self.frame_dir / FEATURES_JSON

    def reconcile(self, args: TrainOptions, splits: dict) -> None:
        """Check the flags against features.json: ``-m`` is taken from it (or must agree), ``--crop_dim`` and the
        variant too, and a backbone with a temporal shift needs its ``--clip_len``."""
        info, where = self.info, self.where
        arch = info["feature_arch"]
        if args.feature_arch is None:
            args.feature_arch = arch
        elif args.feature_arch != arch:
            raise DataError(
                f"-m {args.feature_arch}: {where} holds features of {arch}; pass -m {arch} or leave -m out"
            )
        variant = info.get("arch_variant", DEFAULT_VARIANT)  # the backbone of backbone.pt
        if args.arch_variant not in (None, variant):
            raise DataError(
                f"--arch_variant {args.arch_variant}: {where} holds features of a {variant} backbone; leave it out"
            )
        args.arch_variant = variant
        if "_" in arch and args.clip_len != int(info["clip_len"]):
            raise DataError(
                f"--clip_len {args.clip_len}: {where} was computed by {arch}, whose temporal shift mixed frames in "
                f"pieces of {info['clip_len']}; train with --clip_len {info['clip_len']} (or extract with "
                f"--clip_len)"
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

    def fps(self, videos: Sequence[dict]) -> float:
        return float(self.info["fps"])

    def joint_dataset(self, joint: JointData, train_data, **kwargs):
        raise DataError(
            f"--joint: {self.frame_dir} is a feature folder; joint training trains the backbone on frames of both "
            "datasets (give FRAME_DIR = frames)"
        )

    def clip_dataset(self, videos: Sequence[dict], **kwargs) -> FeatureClipDataset:
        return FeatureClipDataset(self.frame_dir, videos, **kwargs)

    def frame_size(self, train_data: FeatureClipDataset) -> tuple[int, int]:
        return int(self.info["source_width"]), int(self.info["source_height"])

    def config(self) -> dict:
        """What config.json records of the features: their geometry (the model's input), and ``frozen_features``
        (the feature folder, its features.json). The backbone's weights come from backbone.pt, never a download."""
        folder, info = self.frame_dir.resolve(), self.info
        return {
            "source_width": int(info["source_width"]),
            "source_height": int(info["source_height"]),
            "frame_width": int(info["frame_width"]),
            "frame_height": int(info["frame_height"]),
            "pretrained": False,
            "frozen_features": {
                "feature_dir": str(folder),
                "features_json": str(folder / FEATURES_JSON),
                **info,
            },
        }

    def trained_module(self, net: nn.Module) -> nn.Module:
        """backbone.pt loaded into ``net.backbone`` and frozen (no gradients, so no optimizer state either); the
        module trained runs ``forward_features``."""
        path = self.frame_dir / "backbone.pt"
        try:
            net.backbone.load_state_dict(load_backbone_state(self.frame_dir))
        except RuntimeError as e:
            raise DataError(
                f"{path}: does not fit the backbone of features.json ({str(e).splitlines()[0]})"
            ) from e
        net.backbone.requires_grad_(False)
        return FeatureForward(net)

    def prepare(self, batch: dict, device: torch.device, augment, crop_hw, generator):
        """Features are neither augmented nor cropped: the backbone ran once, on centre-cropped frames."""
        return batch["features"].to(device, non_blocking=True), None

    def mixup(self, clips, targets, values, masks, generator):
        """Features (B, T, D) are mixed as (B, T, D, 1, 1) clips."""
        clips, targets, values, masks = mixup_clips(clips[..., None, None], targets, values, masks, generator)
        return clips[..., 0, 0], targets, values, masks

    def forward(self, net: nn.Module, clips: torch.Tensor) -> dict:
        return net.forward_features(clips)

    def has(self, videos: Sequence[dict]) -> bool:
        return all(feature_path(self.frame_dir, v["video"]).is_file() for v in videos)

    def source(self, config: dict, video: dict) -> FeatureSource:
        """The precomputed features of ``video`` (the temporal head alone runs on them)."""
        path = feature_path(self.frame_dir, video["video"])
        return FeatureSource(path, float(config["fps"]), int(video["num_frames"]))


class FeatureForward(nn.Module):
    """The module trained on frozen features: ``forward(features)`` is the model's ``forward_features`` (so that
    DistributedDataParallel wraps it as it wraps the whole model)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, features: torch.Tensor) -> dict:
        return self.net.forward_features(features)


@dataclass
class Loaders:
    """The train loader, the val-loss loader and, with ``--joint``, the second dataset's train loader, which
    yields as many batches as ``train``: step k's micro-batch is ``train``'s k-th and ``joint``'s k-th together."""

    train: DataLoader
    val: DataLoader
    train_sampler: EpochSampler
    micro_batch: int  # clips of a micro-batch, both datasets together
    frame_size: tuple[int, int]
    joint: DataLoader | None = None
    joint_sampler: EpochSampler | None = None

    def set_epoch(self, epoch: int) -> None:
        for sampler in (self.train_sampler, self.joint_sampler):
            if sampler is not None:
                sampler.set_epoch(epoch)

    def num_train_batches(self) -> int:
        """Micro-batches per epoch on this rank."""
        return len(self.train) if self.joint is None else min(len(self.train), len(self.joint))

    def train_batches(self):
        """The epoch's micro-batches: a loader batch, or with ``--joint`` a pair (first dataset's, second's)."""
        return iter(self.train) if self.joint is None else zip(self.train, self.joint, strict=False)


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


def build_loaders(
    args: TrainOptions,
    inputs: FrameInputs | FeatureInputs,
    classes: list[str],
    splits: dict,
    dist: Dist,
    joint: JointData | None = None,
) -> Loaders:
    """The train loader (``epoch_num_frames`` frames of random clips per epoch, sharded by rank) and the val-loss
    loader (fixed clips, a quarter as many). With ``joint`` (``--joint``), each micro-batch's clips are split by
    ``--joint_fraction`` between the first dataset and the second, drawn by loaders of their own that yield as
    many batches each: an epoch is still ``epoch_num_frames`` frames in all."""
    micro_batch = args.batch_size // (args.acc_grad_iter * dist.world_size)
    num_clips = args.epoch_num_frames // args.clip_len
    if num_clips < args.batch_size:
        raise DataError(
            f"--epoch_num_frames {args.epoch_num_frames} gives {num_clips} clips of {args.clip_len} frames, "
            f"fewer than one batch ({args.batch_size})"
        )
    val_clips = max(micro_batch * dist.world_size, num_clips // VAL_FRACTION)  # as many with --joint
    micro_joint = joint_clips(micro_batch, args.joint_fraction) if joint else 0
    micro_first = micro_batch - micro_joint
    if joint:  # whole micro-batches per rank, the same number from each dataset
        batches = num_clips // (micro_batch * dist.world_size)
        num_clips = batches * micro_first * dist.world_size
        if args.mixup and min(micro_first, micro_joint) < 2 and dist.is_main:
            log.warning(
                "--mixup: a micro-batch holds %d clip(s) of %s and %d of %s; a dataset with one clip has none "
                "to mix with (mixup pairs clips of one dataset): raise --batch_size", micro_first, args.dataset,
                micro_joint, joint.dataset_dir,
            )  # fmt: skip
    common = dict(
        classes=classes,
        clip_len=args.clip_len,
        dilate_len=args.dilate_len,
        seed=args.seed,
        displacement=int(args.displacement),
    )
    sampling = dict(fg_upsample=args.fg_upsample or 0.0, fg_balance=args.fg_balance)
    train_data = inputs.clip_dataset(splits["train"], num_clips=num_clips, **sampling, **common)
    val_data = inputs.clip_dataset(splits["val"], num_clips=val_clips, stream=VAL_STREAM, **common)
    train_sampler = EpochSampler(num_clips, dist.rank, dist.world_size)
    val_sampler = EpochSampler(val_clips, dist.rank, dist.world_size)
    workers = args.num_workers
    loaders = Loaders(
        train=_loader(train_data, train_sampler, micro_first, workers, dist.device, args.seed),
        val=_loader(val_data, val_sampler, micro_batch, workers, dist.device, args.seed),
        train_sampler=train_sampler,
        micro_batch=micro_batch,
        frame_size=inputs.frame_size(train_data),
    )
    if joint:
        joint_num = batches * micro_joint * dist.world_size
        kwargs = {**common, "classes": joint.classes, "displacement": 0}  # the second head: classes only
        joint_data = inputs.joint_dataset(
            joint, train_data, num_clips=joint_num, stream=JOINT_STREAM, **sampling, **kwargs
        )
        loaders.joint_sampler = EpochSampler(joint_num, dist.rank, dist.world_size)
        loaders.joint = _loader(
            joint_data, loaders.joint_sampler, micro_joint, workers, dist.device, args.seed
        )
    return loaders


def worker_error(error: DataError) -> DataError:
    """A DataError raised in a DataLoader worker comes back wrapped in a traceback; keep its one-line message."""
    text = str(error)
    marker = "DataError: "
    return DataError(text[text.rindex(marker) + len(marker) :].strip()) if marker in text else error
