"""How a model directory is used, without torch (the web app reads it before any job runs).

``selection.json`` holds the decisions training made on val (``model.select``): the epoch, the post-processing
(windows in seconds) and the display thresholds (one per class, holding a target precision on val). Eval, inference and the app take them by default
(:func:`load_selection`); a directory without one (older, or unfinished) falls back to the best val mAP in
``loss.json``, else the latest checkpoint, and the default post-processing.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from util.io import DataError, load_json, store_json
from util.postprocess import DEFAULT_DISPLAY_THRESHOLD, PostProcess

log = logging.getLogger(__name__)

SELECTION_NAME = "selection.json"


def list_epochs(model_dir: str | Path) -> list[int]:
    """Epochs that have a checkpoint_NNN.pt in ``model_dir``, ascending."""
    folder = Path(model_dir)
    if not folder.is_dir():
        return []
    found = (re.fullmatch(r"checkpoint_(\d+)\.pt", p.name) for p in folder.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


def save_selection(model_dir: str | Path, selection: dict[str, Any]) -> Path:
    """Write ``selection.json``: ``{epoch, criterion, metric, value, postprocess: {...}, display_threshold, ...}``."""
    path = Path(model_dir) / SELECTION_NAME
    store_json(path, selection)
    return path


def _best_in_history(model_dir: Path, epochs: list[int]) -> int | None:
    # Older model directories have no selection.json: the best val mAP that loss.json recorded, if any.
    path = model_dir / "loss.json"
    history = load_json(path) if path.is_file() else []
    scored = {
        h["epoch"]: h["val_mAP"]
        for h in history if isinstance(h, dict) and h.get("epoch") in epochs and h.get("val_mAP") is not None
    }  # fmt: skip
    return max(scored, key=lambda e: (scored[e], e)) if scored else None


def load_selection(model_dir: str | Path) -> dict[str, Any]:
    """How a model directory is used: ``{epoch, postprocess (PostProcess), display_threshold, class_thresholds
    ({class: threshold}, possibly empty: classes missing from it use display_threshold), target_precision, why,
    recorded}``.

    From ``selection.json`` when training wrote one (its epoch even when that checkpoint was deleted: loading it
    then fails, saying so, rather than silently using other weights); else (an older or unfinished directory) the
    epoch with the best val mAP in ``loss.json``, else the latest checkpoint, and the default post-processing.
    ``epoch`` is None when there is neither; ``why`` says where the choice came from, for the user.
    """
    model_dir = Path(model_dir)
    epochs = list_epochs(model_dir)
    path = model_dir / SELECTION_NAME
    record = load_json(path) if path.is_file() else None
    if record is not None and not isinstance(record, dict):
        raise DataError(f"{path}: expected a JSON object (written by train_e2e.py)")
    if record is not None:
        try:
            post = PostProcess.from_dict(record.get("postprocess") or {})
            epoch = int(record["epoch"])
            display = float(record.get("display_threshold", DEFAULT_DISPLAY_THRESHOLD))
            per_class = {str(c): float(t) for c, t in (record.get("class_thresholds") or {}).items()}
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise DataError(f"{path}: not a valid selection ({e}); train again or delete the file") from None
        metric = record.get("metric") or record.get("criterion")
        value = record.get("value")
        why = record.get("why") or (
            f"the best on val by {metric}" + (f" ({value:.4f})" if isinstance(value, float) else "")
        )
        return {"epoch": epoch, "postprocess": post, "display_threshold": display, "class_thresholds": per_class,
                "target_precision": record.get("target_precision"), "why": why, "recorded": True,
                "record": record}  # fmt: skip
    best = _best_in_history(model_dir, epochs)
    if best is not None:
        epoch, why = best, "the best val mAP in loss.json (no selection.json)"
    else:
        epoch, why = (epochs[-1] if epochs else None), "the latest checkpoint (no selection.json)"
    return {"epoch": epoch, "postprocess": PostProcess(), "display_threshold": DEFAULT_DISPLAY_THRESHOLD,
            "class_thresholds": {}, "target_precision": None, "why": why, "recorded": False,
            "record": record or {}}  # fmt: skip


def selected_epoch(model_dir: str | Path) -> tuple[int, str]:
    """(the epoch a model directory is used with by default, why); DataError when it has no checkpoint of it."""
    selection = load_selection(model_dir)
    epochs = list_epochs(model_dir)
    if selection["epoch"] is None:
        raise DataError(f"{model_dir}: no checkpoint_NNN.pt; train a model into this folder first")
    if selection["epoch"] not in epochs:
        raise DataError(
            f"{model_dir}: {SELECTION_NAME} selects epoch {selection['epoch']}, whose checkpoint is missing "
            f"(checkpoints: {epochs or 'none'}); pass --epoch to use another, or restore checkpoint_"
            f"{selection['epoch']:03d}.pt"
        )
    return selection["epoch"], selection["why"]
