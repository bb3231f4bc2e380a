"""Predictions over whole videos during a run (sharded by rank, gathered on rank 0): the val metrics of each epoch,
and at the end the best epoch's selection (post-processing and display thresholds chosen on val, selection.json)
and the prediction files of val, test and challenge."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch.distributed as torch_dist

from model.common import load_checkpoint, save_selection
from model.predict import write_predictions
from model.select import (
    class_threshold_record,
    describe_interval,
    grid_scores,
    per_class_selection,
    selection_record,
    val_interval,
)
from util.postprocess import DEFAULT_DISPLAY_THRESHOLD, DEFAULT_TARGET_PRECISION, PostProcess

if TYPE_CHECKING:
    from model.train.loop import Trainer

log = logging.getLogger(__name__)

PREDICT_SPLITS = ("val", "test", "challenge")


def predict_sharded(trainer: Trainer, videos: Sequence[dict]) -> dict | None:
    """Per-frame scores of ``videos`` (rank r predicts every world_size-th video); the union on rank 0, None
    elsewhere."""
    dist = trainer.dist
    shard = list(videos)[dist.rank :: dist.world_size]
    # In the training's precision (fp32 under --no-amp, fp16 where it trains in fp16), not predict's default: the
    # epoch and the post-processing are chosen on the scores of the model as it was trained.
    results = trainer.inputs.predict(
        trainer.eval_net, trainer.config, shard, dist.device, trainer.precision.dtype
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
        elif not trainer.inputs.has(videos):
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
