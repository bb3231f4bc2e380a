"""How a model directory is used, without torch (the web app reads it before any job runs).

``selection.json`` holds the decisions training made on val (``model.select``): the epoch, the post-processing
(windows in seconds) and the display thresholds (one per class, holding a target precision on val). Eval, inference and
the app take them by default; a directory without one (older, or unfinished) falls back to the best val mAP in
``loss.json``, else the latest checkpoint, and the default post-processing.

Training writes it (:func:`save_selection`); reading it is :class:`model.folder.ModelFolder`'s (``.selection``,
``.selected_epoch()``), which every later step receives. :func:`load_selection` and :func:`selected_epoch` read a
folder by its path, for callers that hold no ``ModelFolder``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from model.folder import SELECTION_NAME, ModelFolder, list_epochs
from util.io import store_json

__all__ = ["SELECTION_NAME", "list_epochs", "load_selection", "save_selection", "selected_epoch"]


def save_selection(model_dir: str | Path, selection: dict[str, Any]) -> Path:
    """Write ``selection.json``: ``{epoch, criterion, metric, value, postprocess: {...}, display_threshold, ...}``."""
    path = Path(model_dir) / SELECTION_NAME
    store_json(path, selection)
    return path


def load_selection(model_dir: str | Path | ModelFolder) -> dict[str, Any]:
    """How a model directory is used (``ModelFolder.selection``: epoch, postprocess, display_threshold,
    class_thresholds, target_precision, why, recorded, record)."""
    return ModelFolder.of(model_dir).selection


def selected_epoch(model_dir: str | Path | ModelFolder) -> tuple[int, str]:
    """(the epoch a model directory is used with by default, why); DataError when it has no checkpoint of it."""
    return ModelFolder.of(model_dir).selected_epoch()
