#!/usr/bin/env python3
"""Train an E2E-Spot model (step 3): DATASET FRAME_DIR -m BACKBONE -t HEAD -s SAVE_DIR.

Multi-GPU / multi-machine: torchrun --nproc_per_node N [--nnodes M ...] train_e2e.py ... (or -mgpu for every
local GPU); --batch_size is the total over all processes; across machines FRAME_DIR and SAVE_DIR must be on a
shared filesystem.
"""

from __future__ import annotations

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


def get_args(argv=None) -> argparse.Namespace:
    from model.common import available_backbones, available_heads
    from model.train import EPOCH_NUM_FRAMES, FG_WEIGHT

    p = argparse.ArgumentParser(description=__doc__, formatter_class=_HelpFormatter)
    p.add_argument("dataset", help="dataset name (data/<name>/) or a folder of parsed labels")
    p.add_argument("frame_dir", help="frame directory written by frames_as_jpg_soccernet_ball.py")
    p.add_argument("-m", "--feature_arch", required=True, choices=available_backbones(), help="CNN backbone")
    p.add_argument("-t", "--temporal_arch", default="gru", choices=available_heads(), help="temporal head")
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
    p.add_argument("--criterion", choices=["map", "loss"], default="map", help="how the best epoch is chosen")
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
    p.add_argument("--team", action="store_true", help="also train the left/right team head")
    p.add_argument("--no_pretrained", dest="pretrained", action="store_false", help="no ImageNet weights")
    p.add_argument(
        "--amp", action=argparse.BooleanOptionalAction, default=True, help="mixed precision on CUDA"
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0, help="seeds every random draw")
    p.add_argument(
        "--stop_after_epoch",
        type=int,
        help="stop after this epoch; a later --resume continues (jobs with a time limit)",
    )
    p.add_argument("-mgpu", "--gpu_parallel", action="store_true", help="use every local GPU (DDP)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    if args.seed < 0:
        p.error("--seed must be >= 0")
    if args.ema is not None and not 0.0 < args.ema < 1.0:
        p.error("--ema DECAY must be in (0, 1)")
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
