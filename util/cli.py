"""Helpers shared by the top-level scripts: one-line errors and a consistent exit status."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from util.io import DataError

EXIT_USAGE = 2
# How the predict path may run a model (model/predict.py): test-time augmentation, and the windows' default overlap.
TTA_MODES = ("none", "flip")
# How step 5 fits a video of another aspect ratio than the model's frames (dataset.source.aspect_fit).
ASPECT_MODES = ("letterbox", "crop", "stretch")
DEFAULT_ASPECT = "letterbox"
DEFAULT_OVERLAP = 0.5


def add_prediction_flags(group: Any, default: str) -> None:
    """``--tta`` and ``--window_overlap`` (default None = ``default``, said in the help) on an argparse group."""
    group.add_argument(
        "--tta",
        choices=TTA_MODES,
        help=f"test-time augmentation: flip = mean of each window and its horizontal mirror (default: {default})",
    )
    group.add_argument(
        "--window_overlap",
        type=float,
        help=f"fraction of frames consecutive prediction windows share, in [0, 1) (default: {default})",
    )


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )


def run_main(main: Callable[[Any], int | None], args: Any) -> int:
    """Run a script's ``main(args)``; user errors (DataError) become one line on stderr and exit 2."""
    try:
        code = main(args)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)
