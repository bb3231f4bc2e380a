#!/usr/bin/env python3
"""Train an E2E-Spot model (step 3): DATASET FRAME_DIR -m BACKBONE -t HEAD -s SAVE_DIR.

The best epoch is chosen on val by --criterion (default: Team mAP@1 with --team, else SoccerNet mAP@1), and the
post-processing (NMS window in seconds, hard or soft, smoothing) on that epoch's val scores; both are recorded in
SAVE_DIR/selection.json, which eval, inference and the web app use by default. To retrain a saved model exactly:
train_e2e.py --config OLD_DIR/config.json -s NEW_DIR (any flag given beside it overrides the saved one).

Frozen features: when FRAME_DIR is a feature folder of extract_features.py (it holds a features.json), only the
temporal head is trained, on the precomputed per-frame features (seconds per epoch on a CPU): the backbone is the
one recorded there, frozen, with the weights of its backbone.pt, so the model directory is complete and eval,
inference and the web app run it on frames. -m may be left out (it must agree when given); no image augmentation
applies (--mixup mixes features); config.json records "frozen_features".

Multi-GPU / multi-machine: torchrun --nproc_per_node N [--nnodes M ...] train_e2e.py ... (or -mgpu for every
local GPU); --batch_size is the total over all processes; across machines FRAME_DIR and SAVE_DIR must be on a
shared filesystem.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before torch is imported: re-execute with tcmalloc when it is installed
    from util.allocator import use_fast_allocator

    use_fast_allocator()

import argparse
import os
import sys

from util.cli import run_main, setup_logging


def _positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, not {text}")
        return value

    return parse


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], not {text}")
    return value


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's layout; shows defaults, except None."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or isinstance(action.default, bool):
            return action.help or ""
        return super()._get_help_string(action)


# Flags of a saved run that --config does not carry over: where this run goes and how it is run on this machine
# (none of them changes the model); "resolved" holds the defaults as that run resolved them.
NOT_FROM_CONFIG = (
    "save_dir", "resume", "config", "stop_after_epoch", "git_commit", "resolved",
    "device", "gpu_parallel", "num_workers", "verbose", "dist_backend", "tensorboard",
)  # fmt: skip


def saved_flags(path: str) -> dict:
    """The training flags recorded in a model's config.json (``--config``), less ``NOT_FROM_CONFIG``."""
    from util.io import DataError, load_json

    target = os.path.join(path, "config.json") if os.path.isdir(path) else path
    if not os.path.isfile(target):
        raise DataError(f"{target}: not found; --config takes a model's config.json (or its folder)")
    config = load_json(target)
    flags = config.get("train") if isinstance(config, dict) else None
    if not isinstance(flags, dict):
        raise DataError(f"{target}: no 'train' flags recorded; was it written by train_e2e.py?")
    return {k: v for k, v in flags.items() if k not in NOT_FROM_CONFIG}


def inherit_architecture(args: argparse.Namespace) -> None:
    """-m, -t and --arch_variant not given: those of the --init_from model (e.g. an imported T-DEED), so that
    fine-tuning a published model needs no architecture flags. The variant goes with the backbone: it is inherited
    whenever the backbone is the source's. On a feature folder, its features.json says the backbone and variant."""
    from dataset.feature import is_feature_dir
    from model.common import load_config
    from model.transfer import parse_init_from

    folder, _ = parse_init_from(args.init_from)
    if not (folder / "config.json").is_file():
        return  # init_from itself says what is wrong, with the rest of the run's checks
    source = load_config(folder)
    if args.temporal_arch is None:
        args.temporal_arch = source["temporal_arch"]
    if args.frame_dir and is_feature_dir(args.frame_dir):
        return
    if args.feature_arch is None:
        args.feature_arch = source["feature_arch"]
    if args.arch_variant is None and args.feature_arch == source["feature_arch"]:
        args.arch_variant = source["arch_variant"]


def get_args(argv=None) -> argparse.Namespace:
    from dataset.feature import is_feature_dir
    from model.common import available_backbones, available_heads
    from model.predict import DEFAULT_OVERLAP, TTA_MODES
    from model.select import CRITERIA
    from model.shift import VARIANTS
    from model.train import EPOCH_NUM_FRAMES, FG_WEIGHT, LOSSES
    from util.postprocess import DEFAULT_TARGET_PRECISION

    p = argparse.ArgumentParser(description=__doc__, formatter_class=_HelpFormatter)
    p.add_argument("dataset", nargs="?", help="dataset name (data/<name>/) or a folder of parsed labels")
    p.add_argument(
        "frame_dir",
        nargs="?",
        help="frame directory written by frames_as_jpg_soccernet_ball.py; or the video library itself (clips are "
        "decoded on the fly at the labels' frame rate and size, the frames step 1 would write: parse the labels "
        "against the library first); or a feature folder written by extract_features.py (trains the temporal head "
        "on those frozen features)",
    )
    p.add_argument(
        "--config",
        metavar="CONFIG_JSON",
        help="train exactly as the run that wrote this config.json (or model folder) was trained: its flags are "
        "the defaults, and flags given here override them; -s is still required",
    )
    p.add_argument(
        "-m",
        "--feature_arch",
        choices=available_backbones(),
        help="CNN backbone (required; on a feature folder taken from its features.json, with --init_from from that "
        "model)",
    )
    p.add_argument(
        "-t",
        "--temporal_arch",
        choices=available_heads(),
        help="temporal head (default: gru; with --init_from, that model's)",
    )
    p.add_argument(
        "--arch_variant",
        choices=list(VARIANTS),
        help="whose arithmetic the network follows: "
        + "; ".join(f"{name}: {variant.describe}" for name, variant in VARIANTS.items())
        + " (with -t tdeed also T-DEED's positional table, pooling and upsampling); default: house, or the "
        "--init_from model's when its backbone is the same (e.g. an imported T-DEED)",
    )
    p.add_argument(
        "-s", "--save_dir", required=True, help="model directory: config, checkpoints, predictions"
    )
    p.add_argument("--clip_len", type=_positive(int), default=100, help="frames per training clip")
    p.add_argument("--crop_dim", type=int, default=0, help="random square crop of this side (centre crop at "
                   "evaluation); 0 = whole frames")  # fmt: skip
    p.add_argument(
        "--batch_size", type=_positive(int), default=8, help="clips per optimiser step, all processes"
    )
    p.add_argument(
        "-ag", "--acc_grad_iter", type=_positive(int), default=1, help="gradient accumulation steps"
    )
    p.add_argument("--num_epochs", type=_positive(int), default=50, help="training epochs")
    p.add_argument("--warm_up_epochs", type=int, default=3, help="linear learning-rate warm-up, then cosine")
    p.add_argument(
        "-lr", "--learning_rate", type=_positive(float), default=0.001, help="peak AdamW learning rate"
    )
    p.add_argument("--resume", action="store_true", help="continue from the last complete epoch in SAVE_DIR")
    p.add_argument("--start_val_epoch", type=int, help="first epoch with val mAP (default: num_epochs - 20)")
    p.add_argument(
        "--criterion",
        choices=list(CRITERIA),
        help="how the best epoch is chosen on val: map = SoccerNet mAP@1, team_map = Team mAP@1 (the default "
        "with --team; map otherwise), frame_map = E2E-Spot's frame-tolerance mAP, loss = val loss",
    )
    p.add_argument(
        "--target_precision",
        type=_fraction,
        default=DEFAULT_TARGET_PRECISION,
        help="per class, the display threshold recorded on val (selection.json) is the lowest from which val "
        "precision at delta = 1 s stays at least this (a class that never reaches it: its best-F1 threshold); "
        f"inference and the app show events from there (default {DEFAULT_TARGET_PRECISION})",
    )
    p.add_argument(
        "--mixup",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="mixup of clip pairs (on by default)",
    )
    p.add_argument(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="random crop, flip, colour jitter and blur of training clips (on by default; --no-augment "
        "where colours carry the classes, as in the synthetic library)",
    )
    p.add_argument("--dilate_len", type=int, default=0, help="label each event's +-N neighbouring frames too")
    p.add_argument(
        "--fg_upsample", type=_fraction, default=0.0, help="probability of a clip drawn around an event"
    )
    p.add_argument(
        "--fg_balance",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="clips drawn around an event (--fg_upsample) pick its class uniformly first, so rare classes are "
        "seen as often as PASS",
    )
    p.add_argument(
        "--fg_weight", type=_positive(float), default=FG_WEIGHT, help="loss weight of event classes"
    )
    p.add_argument(
        "--epoch_num_frames", type=_positive(int), default=EPOCH_NUM_FRAMES, help="frames per epoch"
    )
    p.add_argument("-j", "--num_workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="DataLoader processes decoding JPEGs (0 = in the main process)")  # fmt: skip
    p.add_argument("--ema", type=float, metavar="DECAY", help="keep an EMA of the weights (e.g. 0.999); "
                   "checkpoints and predictions use it")  # fmt: skip
    p.add_argument(
        "--team",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="also train the left/right team head (--no-team: without, e.g. over a --config that had one)",
    )
    weights = p.add_mutually_exclusive_group()
    weights.add_argument(
        "--no_pretrained", dest="pretrained", action="store_false", help="no ImageNet weights"
    )
    weights.add_argument(
        "--pretrained",
        dest="pretrained",
        action="store_true",
        help="ImageNet weights (the default; with --init_from, whose weights replace them, not downloaded)",
    )
    p.set_defaults(pretrained=None)
    p.add_argument(
        "--amp",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="mixed precision: autocast on CUDA (--amp_dtype), and bf16 autocast on a CPU with native bf16 "
        "(AMX / AVX512-BF16: about 1.2x faster training there; SPOT_CPU_AMP=off also keeps inference in fp32)",
    )
    p.add_argument(
        "--amp_dtype",
        choices=["auto", "bf16", "fp16"],
        default="auto",
        help="the mixed-precision type: bf16 where the GPU supports it, else fp16 with a GradScaler",
    )
    p.add_argument(
        "--dist_backend",
        choices=["auto", "nccl", "gloo"],
        default="auto",
        help="torch.distributed backend under torchrun / -mgpu: NCCL on GPUs, gloo on CPU (gloo also on GPUs, e.g. "
        "several processes sharing one GPU)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0, help="seeds every random draw")
    p.add_argument(
        "--stop_after_epoch",
        type=int,
        help="stop after this epoch; a later --resume continues (jobs with a time limit)",
    )
    p.add_argument("-mgpu", "--gpu_parallel", action="store_true", help="use every local GPU (DDP)")
    transfer = p.add_argument_group("transfer and loss")
    transfer.add_argument(
        "--init_from",
        metavar="MODEL_DIR[:EPOCH]",
        help="start from another model's weights (its selected epoch, or EPOCH): every tensor whose name and shape "
        "match is loaded; class outputs over other classes are re-initialised; the log lists what was loaded, "
        "re-initialised, new and unused (e.g. pretrain on SoccerNet-v2, fine-tune on Ball)",
    )
    transfer.add_argument(
        "--backbone_lr_mult",
        type=_positive(float),
        default=1.0,
        help="the backbone's learning rate is -lr times this (e.g. 0.1 when fine-tuning from --init_from)",
    )
    transfer.add_argument(
        "--loss",
        choices=LOSSES,
        default="ce",
        help="per-frame class loss: weighted cross-entropy, or focal loss (down-weights the easy frames)",
    )
    transfer.add_argument(
        "--focal_gamma",
        type=float,
        default=2.0,
        help="with --loss focal: its focusing exponent (0 = cross-entropy)",
    )
    tdeed = p.add_argument_group(
        "T-DEED's levers and test-time choices (recorded; eval, inference and the app use them)"
    )
    tdeed.add_argument(
        "--displacement",
        type=int,
        default=0,
        metavar="R",
        help="T-DEED's displacement head: per frame, the offset to the nearest event within R frames, trained "
        "beside the classes (MSE); post-processing moves each detected peak by it. 0 = off",
    )
    tdeed.add_argument(
        "--tta",
        choices=TTA_MODES,
        default="none",
        help="test-time augmentation of every prediction: flip = the mean of each window and its horizontal "
        "mirror (left and right swapped in the team output); costs 2x the prediction time",
    )
    tdeed.add_argument(
        "--window_overlap",
        type=float,
        default=DEFAULT_OVERLAP,
        help="fraction of frames consecutive prediction windows share (0 = none; 0.75 = each frame seen 4 times)",
    )
    tdeed.add_argument(
        "--per_class_nms",
        action="store_true",
        help="choose the NMS window per class on val (each class's best of the grid's windows, at the chosen NMS "
        "kind and smoothing), recorded in selection.json",
    )
    p.add_argument(
        "--tensorboard",
        nargs="?",
        const="",
        metavar="DIR",
        help="also log each epoch's losses, val metrics and learning rate for TensorBoard, in DIR (default: "
        "SAVE_DIR/tensorboard; needs `pip install tensorboard`). loss.csv and training.png are written anyway",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = p.parse_args(argv)
    from util.io import DataError

    if args.config:
        try:
            flags = saved_flags(args.config)
        except DataError as e:
            p.error(str(e))
        known = {a.dest for a in p._actions}
        p.set_defaults(**{k: v for k, v in flags.items() if k in known})
        args = p.parse_args(argv)
    if args.init_from:
        try:
            inherit_architecture(args)
        except DataError as e:
            p.error(str(e))
    if args.temporal_arch is None:
        args.temporal_arch = "gru"
    if args.pretrained is None:
        args.pretrained = not args.init_from
    for name, flag in (
        ("dataset", "DATASET"),
        ("frame_dir", "FRAME_DIR"),
        ("feature_arch", "-m/--feature_arch"),
    ):
        if getattr(args, name) is None:
            if name == "feature_arch" and is_feature_dir(args.frame_dir):
                continue  # frozen features: the recorded backbone (model.train.use_features)
            p.error(f"{flag} is required (or --config of a saved model)")
    if args.seed < 0:
        p.error("--seed must be >= 0")
    if args.ema is not None and not 0.0 < args.ema < 1.0:
        p.error("--ema DECAY must be in (0, 1)")
    if args.focal_gamma < 0:
        p.error("--focal_gamma must be >= 0")
    if args.displacement < 0:
        p.error("--displacement R must be >= 0")
    if not 0.0 <= args.window_overlap < 1.0:
        p.error("--window_overlap must be in [0, 1)")
    if args.num_workers < 0 or args.dilate_len < 0 or args.warm_up_epochs < 0:
        p.error("-j, --dilate_len and --warm_up_epochs must be >= 0")
    return args


def main(args: argparse.Namespace) -> int:
    from model.train import launch

    setup_logging(args.verbose)
    summary = launch(args)
    if summary and "best_epoch" in summary:
        print(f"best epoch: {summary['best_epoch']}; model directory: {args.save_dir}")
        for split, path in summary["predictions"].items():
            print(f"  {split} predictions: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, get_args()))
