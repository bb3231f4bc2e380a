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


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's layout; shows defaults, except None."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or isinstance(action.default, bool):
            return action.help or ""
        return super()._get_help_string(action)


def saved_flags(path: str) -> dict:
    """The training flags recorded in a model's config.json (``--config``), less where that run went and how it ran
    on its machine (``model.train.options.carried_by_config``)."""
    from model.train.options import carried_by_config
    from util.io import DataError, load_json

    target = os.path.join(path, "config.json") if os.path.isdir(path) else path
    if not os.path.isfile(target):
        raise DataError(f"{target}: not found; --config takes a model's config.json (or its folder)")
    config = load_json(target)
    flags = config.get("train") if isinstance(config, dict) else None
    if not isinstance(flags, dict):
        raise DataError(f"{target}: no 'train' flags recorded; was it written by train_e2e.py?")
    return {k: v for k, v in flags.items() if carried_by_config(k)}


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


def get_args(argv=None):
    """``train_e2e.py``'s options (``model.train.TrainOptions``): the flags, over ``--config``'s saved ones, with the
    architecture of ``--init_from`` when not given; every check is the options' own (``TrainOptions.problems``)."""
    from dataset.feature import is_feature_dir
    from model.train.options import build_parser, from_namespace
    from util.io import DataError

    p = build_parser(__doc__, _HelpFormatter)
    args = p.parse_args(argv)
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
                continue  # frozen features: the recorded backbone (model.train.inputs.FeatureInputs)
            p.error(f"{flag} is required (or --config of a saved model)")
    options = from_namespace(args)
    problems = options.problems()
    if problems:
        p.error("; ".join(problems))
    return options


def main(args) -> int:
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
