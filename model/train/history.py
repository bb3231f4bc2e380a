"""What a run leaves in its model folder epoch by epoch: checkpoints (and their resume), loss.json / loss.csv,
training.png and the TensorBoard scalars."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from model.common import list_epochs, load_checkpoint, save_checkpoint
from util.io import DataError, atomic_write_bytes, atomic_write_text, load_json, store_json

if TYPE_CHECKING:
    from model.train.loop import Trainer

log = logging.getLogger(__name__)

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


def open_tensorboard(args, model_dir: Path, start_epoch: int):
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


def save_epoch(trainer: Trainer, model_dir: Path, epoch: int, history: list[dict]) -> None:
    extra = None
    if trainer.ema is not None:
        extra = {"train_weights": trainer.net.state_dict(), "ema_updates": trainer.ema.updates}
    save_checkpoint(
        model_dir, epoch, trainer.eval_net, trainer.optimizer, trainer.scaler, trainer.scheduler, extra=extra
    )
    write_history(model_dir, history)
    _prune_optim_files(model_dir, epoch)
