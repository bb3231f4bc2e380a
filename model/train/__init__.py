"""Training of the E2E-Spot model (``train_e2e.py``): a package whose rooms are the parts of a run.

- ``options``: every flag, defined once (``TrainOptions``): parser, checks, ``--config`` and ``--resume`` roles.
- ``dist``: one process or one per GPU (DDP: ``torchrun`` or ``-mgpu``; NCCL on GPUs, gloo on CPU); the only places
  ranks talk to each other. Clips are sharded by rank; only rank 0 writes files and shows the progress bar.
- ``run_config``: the model config a run records, its dataset, and the checks that a ``--resume`` trains the same.
- ``inputs``: what the run reads, chosen once: frames (JPEG folders or the video library) or frozen features; the
  clip loaders (random clips of ``clip_len`` frames, an epoch = ``epoch_num_frames`` frames; workers only decode,
  augmentation and mixup run batched on the training device).
- ``loss``: cross-entropy on every stage's logits with foreground classes weighted ``fg_weight`` (5, as E2E-Spot)
  or focal loss, MS-TCN's smoothing loss for multi-stage heads, the team and displacement terms; the learning rate
  (linear warm-up from 1%, then cosine to 0, per optimiser step); EMA weights.
- ``loop``: the ``Trainer`` (AdamW, gradient accumulation, CUDA AMP: bf16 where native, else fp16 with a
  GradScaler) and the epochs: train loss, val loss, and from ``start_val_epoch`` the val metrics over whole val
  videos through the one predict path (``model.select``); the best epoch by ``--criterion``. Exact resume: every
  random draw is a function of (seed, epoch, index / step, rank), so a resumed run matches an uninterrupted one.
- ``history``: checkpoints and their resume, loss.json / loss.csv, training.png, TensorBoard.
- ``selection``: at the end, the best epoch's val scores choose the post-processing (``selection.json``), and val /
  test / challenge are predicted with it. Under DDP rank 0 computes the metrics and every rank takes its numbers.
- ``run``: ``train``, one run from start to end.
"""

from model.train.dist import Dist, launch
from model.train.history import (
    TENSORBOARD_DIR,
    TRAINING_PLOT,
    log_tensorboard,
    open_tensorboard,
    write_history,
)
from model.train.loop import Trainer, parameter_groups
from model.train.loss import Ema, displacement_loss, focal_loss, lr_factor, spot_loss
from model.train.options import EPOCH_NUM_FRAMES, FG_WEIGHT, LOSSES, TrainOptions
from model.train.run import train
from model.train.run_config import check_resume_config

__all__ = [
    "EPOCH_NUM_FRAMES",
    "FG_WEIGHT",
    "LOSSES",
    "TENSORBOARD_DIR",
    "TRAINING_PLOT",
    "Dist",
    "Ema",
    "TrainOptions",
    "Trainer",
    "check_resume_config",
    "displacement_loss",
    "focal_loss",
    "launch",
    "log_tensorboard",
    "lr_factor",
    "open_tensorboard",
    "parameter_groups",
    "spot_loss",
    "train",
    "write_history",
]
