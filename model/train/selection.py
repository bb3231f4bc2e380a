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
from model.predict import (
    DEFAULT_BATCH_SIZE,
    ScoreSums,
    predict_range,
    shard_windows,
    window_stride,
    write_predictions,
)
from model.select import (
    class_threshold_record,
    describe_interval,
    grid_scores,
    per_class_selection,
    selection_record,
    val_interval,
)
from model.train.dist import gather_all
from util.postprocess import DEFAULT_DISPLAY_THRESHOLD, DEFAULT_TARGET_PRECISION, PostProcess

if TYPE_CHECKING:
    from model.train.loop import Trainer

log = logging.getLogger(__name__)

PREDICT_SPLITS = ("val", "test", "challenge")


def predict_sharded(trainer: Trainer, videos: Sequence[dict]) -> dict | None:
    """Per-frame scores of ``videos``, every rank predicting an equal share of their windows (``shard_windows``:
    by frame ranges, so that one long val game keeps every GPU busy); the union on rank 0, None elsewhere."""
    dist, config, net = trainer.dist, trainer.config, trainer.eval_net
    lengths = [int(v["num_frames"]) for v in videos]
    share = shard_windows(lengths, int(config["clip_len"]), window_stride(config), dist.world_size)[dist.rank]
    partial = {}
    for index, start, stop in share:
        source = trainer.inputs.source(config, videos[index])
        # In the training's precision (fp32 under --no-amp, fp16 where it trains in fp16), not predict's
        # default: the epoch and the post-processing are chosen on the scores of the model as it was trained.
        partial[index] = predict_range(
            net, config, source, start, stop, DEFAULT_BATCH_SIZE, dist.device, trainer.precision.dtype
        )
    gathered = [partial]
    if dist.active:
        gathered = [None] * dist.world_size if dist.is_main else None
        torch_dist.gather_object(partial, gathered, dst=0)
    if not dist.is_main:
        return None
    results = {}
    for index, (video, length) in enumerate(zip(videos, lengths, strict=True)):
        whole = ScoreSums(length, len(config["classes"]) + 1)
        for part in gathered:
            if index in part:
                whole.merge(part[index])
        results[video["video"]] = whole.result(length)
    return results


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
        elif lacking := [r for r, has in enumerate(gather_all(trainer.inputs.has(videos), dist)) if not has]:
            where = f" on rank {', '.join(map(str, lacking))}" if dist.active else ""
            log.warning(  # every rank skips it: one without the frames would leave the others waiting
                "skipping predictions on %s: some of its frame folders (or features) are missing%s",
                split,
                where,
            )
            continue
        else:
            results = predict_sharded(trainer, videos)
        if dist.is_main:
            _, path = write_predictions(model_dir, split, epoch, results, config, post)
            written[split] = path
            log.info("wrote %s", path)
    return written
