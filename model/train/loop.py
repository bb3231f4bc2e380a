"""The epoch: the ``Trainer`` (the network, optimiser, schedule, AMP, EMA, and the inputs it reads), its training
and val-loss passes, and the loop over epochs that validates, checkpoints and logs each one.

Exact resume: every random draw is a function of (seed, epoch, index / step, rank) and the torch RNG is reseeded at
each epoch, so a run stopped after epoch k and resumed matches an uninterrupted one bit for bit (CPU).
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from dataset.transform import ClipAugment, frame_targets
from model.common import build_model, list_epochs, output_count, team_classes
from model.predict import autocast, cpu_amp_enabled, cuda_capability, cuda_has_native_bf16
from model.select import CRITERIA, best_epoch, criterion_used, validation_metrics
from model.train.dist import Dist, barrier, from_rank_0, mean_over_ranks
from model.train.history import log_tensorboard, open_tensorboard, save_epoch
from model.train.inputs import FeatureInputs, FrameInputs, Loaders, worker_error
from model.train.loss import Ema, joint_loss, lr_factor, spot_loss
from model.train.options import TrainOptions
from model.train.selection import predict_sharded
from model.transfer import init_from
from util.io import DataError

log = logging.getLogger(__name__)

# Independent random streams (with the seed, epoch and rank) of everything that draws numbers.
AUG_STREAM, TORCH_STREAM = 2, 3


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# The progress bar shows the epoch's mean loss (read back from the device, a sync) at most this often.
PROGRESS_EVERY_S = 1.0


@dataclass(frozen=True)
class Precision:
    """How a run computes: its autocast type (torch.float32: none), with fp16 a GradScaler, and why (logged)."""

    dtype: torch.dtype
    why: str
    warning: str | None = None  # an explicit choice this device computes badly

    @property
    def name(self) -> str:
        return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    @property
    def scaled(self) -> bool:
        """fp16's narrow range needs a GradScaler; bf16 has fp32's."""
        return self.dtype == torch.float16

    def text(self) -> str:
        what = "fp32" if self.dtype == torch.float32 else f"{self.name} autocast"
        return f"{what}{' + GradScaler' if self.scaled else ''}: {self.why}"


FP32 = Precision(torch.float32, "--no-amp")


@dataclass
class Trainer:
    args: TrainOptions
    config: dict
    dist: Dist
    model: nn.Module  # the module trained (DDP-wrapped when distributed)
    net: nn.Module  # the unwrapped network
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    loaders: Loaders
    inputs: FrameInputs | FeatureInputs
    augment: ClipAugment
    class_weights: torch.Tensor
    ema: Ema | None = None
    precision: Precision = FP32
    focal_gamma: float | None = None  # --loss focal: its gamma; None: weighted cross-entropy
    joint_weights: torch.Tensor | None = None  # --joint: the second head's class weights

    @property
    def eval_net(self) -> nn.Module:
        """The weights that are validated, saved as checkpoints and used for predictions."""
        return self.ema.model if self.ema is not None else self.net

    def _autocast(self):
        return autocast(self.dist.device, self.precision.dtype)

    def _batch(
        self, batch: dict | tuple[dict, dict], generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """(clips, class targets, the other targets as ``spot_loss`` keyword arguments) of a loader batch; of a
        joint pair (``--joint``), the clips of both datasets stacked (the first's first), the first's targets, and
        the second's among the keyword arguments (those of ``joint_loss``)."""
        if isinstance(batch, tuple | list):
            first, second = batch
            clips, targets, extras = self._batch(first, generator)
            more, joint_targets = self._joint_part(second, generator)
            extras.update(
                joint_targets=joint_targets,
                joint_weights=self.joint_weights,
                joint_weight=self.args.joint_weight,
            )
            return torch.cat([clips, more]), targets, extras
        device = self.dist.device
        clips, flipped = self._clips(batch, generator)
        team = batch["team"].to(device, non_blocking=True)
        team_mask = batch["team_mask"].to(device, non_blocking=True)
        labels = batch["labels"].to(device, non_blocking=True)
        # A mirrored clip's teams swap: in the team targets, or in the halves of team-as-classes targets.
        targets, team = frame_targets(
            labels, team, team_mask, flipped, len(self.config["classes"]), team_classes(self.config)
        )
        radius = int(self.config["displacement"])
        # Masked targets (team, displacement) are stacked on a last axis so that mixup mixes them alike.
        masked = [team] + ([batch["displacement"].to(device, non_blocking=True)] if radius else [])
        masks = [team_mask] + ([batch["displacement_mask"].to(device, non_blocking=True)] if radius else [])
        values, value_masks = torch.stack(masked, -1), torch.stack(masks, -1)
        if generator is not None and self.args.mixup:
            clips, targets, values, value_masks = self.inputs.mixup(
                clips, targets, values, value_masks, generator
            )
        extras: dict = {"focal_gamma": self.focal_gamma}
        if self.config["team"] and not team_classes(self.config):
            extras.update(team=values[..., 0], team_mask=value_masks[..., 0])
        if radius:
            extras.update(
                displacement=values[..., 1], displacement_mask=value_masks[..., 1], displacement_radius=radius
            )
        return clips, targets, extras

    def _clips(
        self, batch: dict, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(clips on the device, which were mirrored or None) of a loader batch: augmented in training (a
        ``generator``, ``--augment``), else centre-cropped."""
        augment = self.augment if generator is not None and self.args.augment else None
        crop_hw = (self.config["frame_height"], self.config["frame_width"])
        return self.inputs.prepare(batch, self.dist.device, augment, crop_hw, generator)

    def _joint_part(
        self, batch: dict, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(clips, class targets over the second head's outputs) of the second dataset's loader batch, augmented
        and mixed up as the first's (no team: the second head spots classes only)."""
        device = self.dist.device
        clips, flipped = self._clips(batch, generator)
        labels = batch["labels"].to(device, non_blocking=True)
        team_mask = torch.zeros_like(batch["team_mask"]).to(device)
        targets, _ = frame_targets(
            labels, team_mask, team_mask, flipped, len(self.config["joint_classes"]), False
        )
        if generator is not None and self.args.mixup:
            values = team_mask[..., None]
            clips, targets, _, _ = self.inputs.mixup(clips, targets, values, values, generator)
        return clips, targets

    def _loss(self, output: dict, targets: torch.Tensor, extras: dict) -> torch.Tensor:
        if "joint_targets" in extras:
            return joint_loss(output, targets, self.class_weights, **extras)
        return spot_loss(output, targets, self.class_weights, **extras)

    def train_epoch(self, epoch: int) -> dict:
        args, dist = self.args, self.dist
        self.model.train()
        self.loaders.set_epoch(epoch)
        torch.manual_seed(_seed(args.seed, TORCH_STREAM, epoch, dist.rank))
        generator = torch.Generator().manual_seed(_seed(args.seed, AUG_STREAM, epoch, dist.rank))
        acc = args.acc_grad_iter
        num_micro = (self.loaders.num_train_batches() // acc) * acc
        frames_per_micro = self.loaders.micro_batch * args.clip_len * dist.world_size
        # The loss is summed on the device (in float64, as the Python float it replaces) and read back (a
        # sync: the host waits for the GPU to finish the queued steps) at the end of the epoch and for the
        # progress bar, at most every PROGRESS_EVERY_S.
        total_loss = torch.zeros((), dtype=torch.float64, device=dist.device)
        start = shown = time.perf_counter()
        bar = tqdm(total=num_micro // acc, desc=f"epoch {epoch}", disable=not dist.is_main, leave=False)
        self.optimizer.zero_grad(set_to_none=True)
        try:
            for i, batch in enumerate(self.loaders.train_batches()):
                if i >= num_micro:
                    break
                clips, targets, extras = self._batch(batch, generator)
                step_now = (i + 1) % acc == 0
                sync = contextlib.nullcontext() if step_now or not dist.active else self.model.no_sync()
                with sync:
                    with self._autocast():
                        output = self.model(clips)
                    loss = self._loss(output, targets, extras)
                    self.scaler.scale(loss / acc).backward()
                total_loss += loss.detach()
                if step_now:
                    self._step()
                    now = time.perf_counter()
                    if now - shown >= PROGRESS_EVERY_S and not bar.disable:
                        shown, rate = now, (i + 1) * frames_per_micro / (now - start)
                        lr = self.optimizer.param_groups[0]["lr"]
                        mean = float(total_loss) / (i + 1)
                        bar.set_postfix(loss=f"{mean:.4f}", lr=f"{lr:.2e}", fps=f"{rate:.0f}")
                    bar.update()
        except DataError as e:
            raise worker_error(e) from None
        finally:
            bar.close()
        seconds = time.perf_counter() - start
        loss = mean_over_ranks(float(total_loss), max(num_micro, 1), dist)
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
        # Summed on the device (in float64, as the Python float it replaces) and read back once, at the end.
        total, count = torch.zeros((), dtype=torch.float64, device=self.dist.device), 0
        try:
            with torch.inference_mode():
                for batch in self.loaders.val:
                    clips, targets, extras = self._batch(batch, None)
                    with self._autocast():
                        output = self.inputs.forward(net, clips)
                    total += spot_loss(output, targets, self.class_weights, **extras)
                    count += 1
        except DataError as e:
            raise worker_error(e) from None
        return mean_over_ranks(float(total), max(count, 1), self.dist)


def train_precision(args: TrainOptions, device: torch.device) -> Precision:
    """The precision ``--amp`` / ``--amp_dtype`` give on ``device``: on CUDA, "auto" is bf16 only where the GPU
    computes it natively (:func:`model.predict.cuda_amp_dtype`), else fp16 with a GradScaler; an explicit
    ``--amp_dtype bf16`` on a GPU without native bf16 is kept, with a warning. On a CPU, bf16 where it is native
    (``--amp_dtype`` has no say there), else fp32."""
    if not args.amp:
        return Precision(torch.float32, "--no-amp")
    if device.type == "cpu":
        if cpu_amp_enabled():
            return Precision(torch.bfloat16, "this CPU has native bf16; --no-amp for fp32")
        return Precision(torch.float32, "this CPU has no native bf16 (or SPOT_CPU_AMP=off)")
    if device.type != "cuda":
        return Precision(torch.float32, f"no mixed precision on {device.type}")
    gpu, native = f"this GPU ({cuda_capability(device)})", cuda_has_native_bf16(device)
    if args.amp_dtype == "auto":
        if native:
            return Precision(torch.bfloat16, f"{gpu} computes bf16 natively")
        return Precision(torch.float16, f"{gpu} has no native bf16")
    if args.amp_dtype == "bf16" and not native:
        warning = (
            f"--amp_dtype bf16: {gpu} has no native bf16 (compute capability below 8.0), so bf16 is emulated: "
            "slow, and cuDNN may have no bf16 convolutions; --amp_dtype auto trains in fp16 with a GradScaler"
        )
        return Precision(torch.bfloat16, f"--amp_dtype bf16, emulated on {gpu}", warning)
    return Precision(AMP_DTYPES[args.amp_dtype], f"--amp_dtype {args.amp_dtype}")


def make_trainer(
    args: TrainOptions, config: dict, dist: Dist, loaders: Loaders, inputs: FrameInputs | FeatureInputs
) -> Trainer:
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    net = build_model(config)
    # --init_from starts a run; a resumed one continues from its own checkpoint.
    if getattr(args, "init_from", None) and not (args.resume and list_epochs(args.save_dir)):
        transfer = init_from(net, config, args.init_from)
        if dist.is_main:
            log.info("%s", transfer.describe())
    model = inputs.trained_module(net)
    net = net.to(dist.device)
    model = model.to(dist.device)
    if dist.active:
        device_ids = [dist.device.index] if dist.device.type == "cuda" else None
        model = DistributedDataParallel(model, device_ids=device_ids)
    optimizer = torch.optim.AdamW(parameter_groups(net, args), lr=args.learning_rate)
    steps_per_epoch = max(1, loaders.num_train_batches() // args.acc_grad_iter)
    warmup, total = args.warm_up_epochs * steps_per_epoch, args.num_epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, warmup, total))
    precision = train_precision(args, dist.device)
    if precision.warning and dist.is_main:
        log.warning("%s", precision.warning)
    scaler = torch.amp.GradScaler(dist.device.type, enabled=precision.scaled)
    num_outputs = output_count(config)
    class_weights = torch.tensor([1.0] + [args.fg_weight] * (num_outputs - 1), device=dist.device)
    joint = config.get("joint_classes")
    joint_weights = torch.tensor([1.0] + [args.fg_weight] * len(joint), device=dist.device) if joint else None
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
        inputs,
        augment,
        class_weights,
        ema,
        precision,
        args.focal_gamma if getattr(args, "loss", "ce") == "focal" else None,
        joint_weights,
    )


def parameter_groups(net: nn.Module, args: TrainOptions) -> list[dict]:
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


def precision_text(trainer: Trainer) -> str:
    """The run's precision and why, for the log (e.g. "fp16 autocast + GradScaler: this GPU (sm_70) has no native
    bf16")."""
    return trainer.precision.text()


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
            stats.update(from_rank_0(metrics, dist))
        history.append({"epoch": epoch, **stats, "lr": trainer.optimizer.param_groups[0]["lr"]})
        if dist.is_main:
            save_epoch(trainer, model_dir, epoch, history)
            if board is not None:
                log_tensorboard(board, history[-1])
            log.info(
                "epoch %d: train loss %.4f, val loss %.4f%s (best epoch %s by %s), %.0f frames/s",
                epoch, stats["train"], stats["val"], _metrics_text(stats), best_epoch(history, args.criterion),
                CRITERIA[criterion_used(history, args.criterion)][2], stats["frames_per_s"],
            )  # fmt: skip
        barrier(dist)
    return history


def _metrics_text(stats: dict) -> str:
    names = (("val_mAP", "val mAP@1"), ("val_team_mAP", "val Team mAP@1"), ("val_frame_mAP", "val frame mAP"))
    return "".join(f", {name} {stats[k]:.4f}" for k, name in names if stats.get(k) is not None)
