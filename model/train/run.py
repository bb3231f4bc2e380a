"""One training run from start to end: ``train`` (what ``launch`` runs in each process)."""

from __future__ import annotations

import logging
from argparse import Namespace
from pathlib import Path

import torch.distributed as torch_dist

from model.common import save_config
from model.select import best_epoch
from model.train.dist import Dist, barrier, gather_all, init_distributed, lost_rank, on_every_rank
from model.train.history import resume
from model.train.inputs import Loaders, build_loaders, choose_inputs
from model.train.loop import make_trainer, precision_text, run_epochs, train_precision
from model.train.options import TrainOptions, from_namespace
from model.train.run_config import build_config, check_model_dir, load_dataset, load_joint, resolve_defaults
from model.train.selection import predict_best
from util.io import DataError

log = logging.getLogger(__name__)


def train(args: TrainOptions | Namespace) -> dict | None:
    """Train as ``args`` (train_e2e.py's options) say; returns a summary on rank 0 (None on other ranks)."""
    if not isinstance(args, TrainOptions):
        args = from_namespace(args)
    dist = init_distributed(args.device, args.dist_backend, args.deterministic, args.dist_timeout)
    if not dist.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    try:
        return _train(args, dist)
    except (RuntimeError, torch_dist.DistError) as e:
        lost = lost_rank(e, dist, args.dist_timeout)
        if lost is None:
            raise
        raise lost from e
    finally:
        if dist.active and torch_dist.is_initialized():
            torch_dist.destroy_process_group()


def _train(args: TrainOptions, dist: Dist) -> dict | None:
    model_dir = Path(args.save_dir)
    # Each rank reads its own files (on several nodes, its own disks): all agree before the first collective.
    splits, loaders, config, inputs = on_every_rank(lambda: prepare(args, dist, model_dir), dist)
    check_same_model(config, dist)
    if dist.is_main:
        model_dir.mkdir(parents=True, exist_ok=True)
        save_config(model_dir, config)
    barrier(dist)
    trainer = make_trainer(args, config, dist, loaders, inputs)
    start, history = on_every_rank(lambda: resume(trainer, model_dir) if args.resume else (0, []), dist)
    starts = gather_all(start, dist)
    if len(set(starts)) > 1:
        raise DataError(
            f"{model_dir}: --resume starts at epoch {', '.join(f'{s} on rank {r}' for r, s in enumerate(starts))}: "
            "every process must see the same checkpoints (-s on a disk every node shares)"
        )
    log.info(
        "training %s + %s on %d train videos, %d clips of %d frames per epoch, %d process(es) on %s (%s)",
        config["feature_arch"], config["temporal_arch"], len(splits["train"]),
        len(loaders.train_sampler) * dist.world_size, args.clip_len, dist.world_size, dist.device,
        precision_text(trainer),
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


def prepare(args: TrainOptions, dist: Dist, model_dir: Path) -> tuple[dict, Loaders, dict, object]:
    """The run's splits, loaders, model config (checked against the model folder) and inputs, from this rank's
    files; no collective (``on_every_rank`` runs it)."""
    args.check_run(dist.world_size)
    # config.json records the flags as given (None = the default, resolved again by --config) and as resolved.
    given = {"start_val_epoch": args.start_val_epoch, "criterion": args.criterion}
    _, classes, splits = load_dataset(args.dataset)
    joint = load_joint(args, classes)
    resolve_defaults(args, splits["val"])
    inputs = choose_inputs(args.frame_dir)
    inputs.reconcile(args, splits)
    fps = inputs.fps(splits["train"])
    loaders = build_loaders(args, inputs, classes, splits, dist, joint)
    config = build_config(args, classes, fps, loaders.frame_size, joint.classes if joint else None)
    config.update(inputs.config())
    # The precision as resolved on this machine (--amp_dtype auto: bf16 or fp16 by GPU). Under "resolved" it is
    # recorded, not compared: a resume on another kind of GPU continues in its precision (run_config).
    resolved = {k: getattr(args, k) for k in given} | {"precision": train_precision(args, dist.device).name}
    config["train"].update(given, resolved=resolved)
    check_model_dir(args, config, model_dir, splits["train"] + splits["val"])
    return splits, loaders, config, inputs


def check_same_model(config: dict, dist: Dist) -> None:
    """Every rank builds the same network from its own files (frames of the same size, the same features):
    else DataError on every rank, naming what differs, before DDP would fail on mismatched weights."""
    model = {k: v for k, v in config.items() if k not in ("train", "dataset", "frozen_features")}  # not paths
    models = gather_all(model, dist)
    diffs = sorted({k for other in models for k in set(other) | set(model) if other.get(k) != model.get(k)})
    if diffs:
        values = "; ".join(
            f"{k}: " + ", ".join(f"{m.get(k)!r} on rank {r}" for r, m in enumerate(models)) for k in diffs
        )
        raise DataError(f"the processes would train different models (their FRAME_DIRs differ?): {values}")
