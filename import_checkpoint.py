#!/usr/bin/env python3
"""Import a published model (E2E-Spot, OpenSportsLib, T-DEED, sn-teamspotting) as a model folder of this project.

    python import_checkpoint.py SOURCE -o MODEL_DIR [--format F] [--config ORIGINAL_CONFIG] [--classes CLASS_TXT]

MODEL_DIR then works in every step as a model trained here: eval_soccernet_ball.py, inference_spot.py (--video or
--frame_dir), the web app (python app/app.py --model_dir MODEL_DIR), extract_features.py, and train_e2e.py
--init_from MODEL_DIR (fine-tuning on one's own labels). It holds config.json (architecture, classes, frame rate and
size, clip length, window overlap, and "source": the project, file, sha256 and licence), checkpoint_NNN.pt, and
selection.json with the original's own post-processing.

Formats (--format; detected from the checkpoint's keys when left out):
  e2e-spot         E2E-Spot (jhong93/e2e-spot-models): SOURCE is a model folder holding config.json and
                   checkpoint_NNN.pt, e.g. soccer_rny002gsm_gru_rgb (SoccerNet-v2, 17 classes, 398x224 frames at
                   2 fps). The classes are E2E-Spot's, sorted alphabetically; they are put in SoccerNet's order.
  opensportslib    OpenSportsLib's E2E models: SOURCE is hf://OpenSportsLab/OSL-loc-snbas-2025-e2e[@REVISION]
                   (downloaded through huggingface_hub, or taken from its local cache offline) or the .pt file
                   with --config its config.yaml (which says the frame rate: DATA.extract_fps, classes and size).
  tdeed            T-DEED's SoccerNet-Ball models: SOURCE is checkpoint_best.pt, --config the JSON it was trained
                   with (config/SoccerNetBall/SoccerNetBall_challenge1.json for rny002_gsf, _challenge2 for
                   rny008_gsf): 796x448 frames at 12.5 fps (25 fps at stride 2), clips of 100, displacement head.
                   Its second (SoccerNet-v2) head is kept (joint_head): train_e2e.py --joint fine-tunes both.
  sn-teamspotting  the 2025 Team Ball Action Spotting baseline: checkpoint_best.pt with --config
                   config/SoccerNetBall/SoccerNetBall_baseline.json: T-DEED plus a team head (P(right)).

A wrong or truncated file, a config that does not match the weights, an unknown key or a missing class list is an
error that names the file; nothing is written then (the folder appears whole, or not at all).
"""

from __future__ import annotations

import argparse
import sys

from util.cli import run_main, setup_logging


def get_args(argv=None) -> argparse.Namespace:
    from model.published import FORMATS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "source",
        help="the published checkpoint: a model folder (config + checkpoint), a .pt file, or hf://OWNER/REPO[@REV]",
    )
    p.add_argument(
        "-o", "--out", required=True, metavar="MODEL_DIR", help="the model folder to write (new or empty)"
    )
    p.add_argument(
        "--format",
        choices=list(FORMATS),
        help="the checkpoint's format (default: detected from its keys; see above)",
    )
    p.add_argument(
        "--config",
        metavar="ORIGINAL_CONFIG",
        help="the original project's config the model was trained with (JSON, or OpenSportsLib's YAML); needed for "
        "T-DEED, sn-teamspotting and a bare OpenSportsLib .pt; default: the one beside the checkpoint in SOURCE",
    )
    p.add_argument(
        "--classes",
        metavar="CLASS_TXT",
        help="the class names in the order of the model's outputs, one a line (background excluded); default: the "
        "built-in list of the dataset its config names (SoccerNet-Ball's 12, the 2023 edition's 2, SoccerNet-v2's 17)",
    )
    p.add_argument(
        "--fps",
        type=float,
        help="the frame rate the model was trained at, for a config whose dataset is not a SoccerNet one (the "
        "published SoccerNet models' rates are built in)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    from model.published import import_checkpoint

    setup_logging(args.verbose)
    result = import_checkpoint(
        args.source, args.out, fmt=args.format, config=args.config, classes_file=args.classes, fps=args.fps
    )
    config, source = result["config"], result["config"]["source"]
    print(f"imported {source['project']}")
    print(f"  from {source['file']} (sha256 {source['sha256'][:16]}..., licence: {source['licence']})")
    print(
        f"  {config['feature_arch']} + {config['temporal_arch']} ({config['arch_variant']} variant), "
        f"{len(config['classes'])} classes, clips of {config['clip_len']}, "
        f"{config['frame_width']}x{config['frame_height']} at {config['fps']:g} fps"
    )
    print(f"  trained on: {source['trained_on']}")
    for note in result["notes"]:
        print(f"  {note}")
    for key in result["dropped"]:
        print(f"  dropped: {key}")
    print(f"model folder: {result['model_dir']} (epoch {result['epoch']})")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, get_args()))
