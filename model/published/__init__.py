"""Published checkpoints (E2E-Spot, OpenSportsLib, T-DEED, sn-teamspotting) -> an ordinary model folder of this project.

``import_checkpoint(source, out_dir)`` reads what a project publishes, converts its weights to this project's
modules and writes ``config.json`` (architecture, classes by name, frame rate and size, clip length, window overlap,
and ``source``: where the weights came from, their sha256 and licence), ``checkpoint_NNN.pt`` and ``selection.json``
(the original's own post-processing). After that nothing downstream knows where the model came from: eval,
inference, the web app, ``extract_features.py`` and ``train_e2e.py --init_from`` take the folder as any other.

What the conversion does (each checked against the original code's outputs by ``tests/test_published.py``):

- the network follows the original's arithmetic through ``arch_variant`` (``model.shift.VARIANTS``, the T-DEED
  head's ``exact`` mode): E2E-Spot's and T-DEED's gated-shift width, T-DEED's shifts in RegNet stages s3-s4 only
  and its GSF, positional table, pooling and upsampling;
- the gated shifts' channel interleave (0, C/4, 1, C/4 + 1, ... within each half) is folded into the input
  columns of the following 1x1 convolution;
- T-DEED's SGP layers become this project's (B, T, C) layers: LayerNorm weights (1, C, 1) -> (C), 1x1 convolutions
  -> linear layers, and the SGP-Mixer's merge takes its six inputs in another order;
- T-DEED's displacement is (frame - event) in frames; this project's head predicts (event - frame) in units of the
  radius R: W = -W' / R, b = -b' / R. sn-teamspotting's team output is already P(right);
- two-head T-DEED checkpoints (SoccerNet-Ball + SoccerNet-v2, trained jointly) keep both: the first is the model's
  class head, the second its ``joint_head`` (``joint_classes``: SoccerNet-v2's 17), which only joint training
  (``train_e2e.py --joint``) uses;
- the class outputs are put in this project's order when the classes are a known list (SoccerNet-Ball's 12, the
  2023 edition's 2, SoccerNet-v2's 17; E2E-Spot sorted its classes alphabetically), so a model fine-tuned from an
  import keeps its head; column 0 stays background.

The rooms: ``read`` (the formats table, reading a folder, a file or ``hf://OWNER/REPO``, telling the format from the
keys), ``convert`` (what every converter shares: backbone keys, the interleave fold, class lists, config values),
``e2e_spot`` (E2E-Spot and OpenSportsLib's packaging of it), ``opensportslib`` (OpenSportsLib's config.yaml),
``tdeed`` (T-DEED and sn-teamspotting, T-DEED with a team head: one converter), ``write`` (checking the weights
against the network and writing the folder). This module ties them together: ``import_checkpoint``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from model.common import CONFIG_NAME, check_config
from model.published.convert import KNOWN_ORDERS, Imported, interleave_order
from model.published.e2e_spot import E2E_CLASSES, E2E_FRAMES, E2E_OVERLAP, E2E_POST, convert_e2e
from model.published.read import (
    FORMATS,
    HF_PREFIX,
    WEIGHT_SUFFIXES,
    Format,
    Source,
    detect_format,
    read_source,
    sha256_of,
)
from model.published.tdeed import TDEED_CLASSES, TDEED_FRAMES, TDEED_HEAD, TDEED_OVERLAP, convert_tdeed
from model.published.write import _check_weights, _write_folder, trained_on
from util.io import DataError, load_text_lines

# What other code imports from here (the names the rooms above hold stay importable from model.published).
__all__ = [
    "CONVERTERS",
    "E2E_CLASSES",
    "E2E_FRAMES",
    "E2E_OVERLAP",
    "E2E_POST",
    "FORMATS",
    "HF_PREFIX",
    "KNOWN_ORDERS",
    "TDEED_CLASSES",
    "TDEED_FRAMES",
    "TDEED_HEAD",
    "TDEED_OVERLAP",
    "WEIGHT_SUFFIXES",
    "Format",
    "Imported",
    "Source",
    "convert_e2e",
    "convert_tdeed",
    "detect_format",
    "import_checkpoint",
    "interleave_order",
    "read_source",
    "sha256_of",
    "trained_on",
]


CONVERTERS: dict[str, Callable[[Source, list[str] | None, str], Imported]] = {
    "e2e-spot": convert_e2e,
    "opensportslib": convert_e2e,
    "tdeed": convert_tdeed,
    "sn-teamspotting": convert_tdeed,
}


def import_checkpoint(
    source: str | Path,
    out_dir: str | Path,
    fmt: str | None = None,
    config: str | Path | None = None,
    classes_file: str | Path | None = None,
    fps: float | None = None,
) -> dict[str, Any]:
    """Import a published checkpoint into the model folder ``out_dir`` (created; it must not exist or be empty).

    Returns ``{"model_dir", "format", "config", "epoch", "notes", "dropped"}``. Nothing is written on any error.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DataError(f"{out_dir}: exists and is not an empty folder; choose another -o")
    if fmt is not None and fmt not in FORMATS:
        raise DataError(f"unknown --format {fmt!r}; valid: {', '.join(FORMATS)}")
    src = read_source(source, config)
    if not src.state:
        raise DataError(f"{src.weights_file}: holds no weights")
    fmt = fmt or detect_format(src.state, src.original_config)
    if fps is not None:
        if not (math.isfinite(fps) and fps > 0):
            raise DataError(f"--fps must be a positive number, not {fps}")
        src.fps = float(fps)
    classes = load_text_lines(classes_file) if classes_file else None
    try:
        imported = CONVERTERS[fmt](src, classes, fmt)
    except (KeyError, IndexError, ValueError, TypeError, AttributeError, RuntimeError) as e:
        # A key or a shape the format always has is missing or different: not what its config says it is.
        raise DataError(
            f"{src.weights_file}: not a {fmt} checkpoint of the architecture its config "
            f"({src.config_file or 'none'}) describes ({type(e).__name__}: {e}); is --format right?"
        ) from e
    _check_weights(imported, src.weights_file, src.config_file)
    imported.config["source"] = {
        "format": fmt,
        "project": FORMATS[fmt].project,
        "code": FORMATS[fmt].code,
        "published_at": FORMATS[fmt].weights,
        "licence": FORMATS[fmt].licence,
        "file": str(source) if str(source).startswith(HF_PREFIX) else str(src.weights_file.resolve()),
        "weights_file": src.weights_file.name,
        "sha256": sha256_of(src.weights_file),
        "config_file": str(src.config_file) if src.config_file else None,
        "original_config": json.loads(json.dumps(src.original_config, default=str)),
        "dropped": imported.dropped,
        "notes": imported.notes,
        "trained_on": trained_on(fmt, imported.config, src),
    }
    config_checked = check_config(imported.config, source=CONFIG_NAME)
    _write_folder(out_dir, config_checked, imported)
    return {
        "model_dir": str(out_dir),
        "format": fmt,
        "config": config_checked,
        "epoch": imported.epoch,
        "notes": imported.notes,
        "dropped": imported.dropped,
    }
