"""A model folder read once: ``ModelFolder(path)``, the one object eval, inference, the app, ``--init_from`` and the
feature writer receive.

A model folder (``train_e2e.py -s DIR``, ``import_checkpoint.py``) holds ``config.json`` (the network), the weights
``checkpoint_NNN.pt`` (+ ``optim_NNN.pt``), ``selection.json`` (the decisions training made on val: the epoch, the
post-processing, the display thresholds; written by ``model.usage.save_selection``) and ``loss.json``. A
``ModelFolder`` answers what each step asks of it: the config as written (:attr:`~ModelFolder.config_json`) or
checked with its defaults filled in (:attr:`~ModelFolder.config`), the epochs that have weights, the selection
(:attr:`~ModelFolder.selection`), the epoch used by default and its weights file.

Each file is read once, when first asked for (the web app asks for config.json and selection.json alone, and never
imports torch: only :attr:`~ModelFolder.config` does; numpy comes with the selection). The object is a snapshot of the folder as it was read: a step
that needs to see a folder change (training writes into it) makes a new one.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Any

from util.io import DataError, load_json

CONFIG_NAME = "config.json"
SELECTION_NAME = "selection.json"
HISTORY_NAME = "loss.json"
_CHECKPOINT = re.compile(r"checkpoint_(\d+)\.pt")


def checkpoint_path(model_dir: str | Path, epoch: int) -> Path:
    return Path(model_dir) / f"checkpoint_{epoch:03d}.pt"


def optim_path(model_dir: str | Path, epoch: int) -> Path:
    return Path(model_dir) / f"optim_{epoch:03d}.pt"


def list_epochs(model_dir: str | Path) -> list[int]:
    """Epochs that have a checkpoint_NNN.pt in ``model_dir``, ascending."""
    folder = Path(model_dir)
    if not folder.is_dir():
        return []
    found = (_CHECKPOINT.fullmatch(p.name) for p in folder.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


class ModelFolder:
    """One model folder, each of its files read once (module docstring). Path-like: ``Path(folder)`` is its
    path, and it prints as its path in messages."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def of(cls, folder: str | Path | ModelFolder) -> ModelFolder:
        """``folder`` itself when it is one already (what it read is kept), else the folder at that path."""
        return folder if isinstance(folder, ModelFolder) else cls(folder)

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"ModelFolder({str(self.path)!r})"

    # ---- the network

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_NAME

    @cached_property
    def config_json(self) -> dict[str, Any]:
        """config.json as written (no defaults filled in, not checked: no torch); DataError when missing or not a
        JSON object."""
        path = self.config_path
        if not path.is_file():
            raise DataError(
                f"{self.path}: no {CONFIG_NAME}; not a model directory (train_e2e.py -s DIR makes one)"
            )
        config = load_json(path)
        if not isinstance(config, dict):
            raise DataError(f"{path}: expected a JSON object")
        return config

    @cached_property
    def config(self) -> dict[str, Any]:
        """config.json checked (``model.common.check_config``: DataError naming the file), defaults filled in."""
        from model.common import check_config

        return check_config(self.config_json, source=str(self.config_path))

    # ---- the weights

    @cached_property
    def epochs(self) -> list[int]:
        """Epochs that have a checkpoint_NNN.pt, ascending."""
        return list_epochs(self.path)

    @property
    def ready(self) -> bool:
        """A config.json and at least one checkpoint: the folder can be run (the web app's test)."""
        return self.config_path.is_file() and bool(self.epochs)

    def checkpoint_path(self, epoch: int) -> Path:
        return checkpoint_path(self.path, epoch)

    def optim_path(self, epoch: int) -> Path:
        return optim_path(self.path, epoch)

    def existing_epoch(self, epoch: int | None = None) -> int:
        """``epoch`` when it has weights, None = the latest that has; DataError (listing them) otherwise."""
        if not self.epochs:
            raise DataError(f"{self.path}: no checkpoint_NNN.pt; train a model into this folder first")
        if epoch is None:
            return self.epochs[-1]
        if epoch not in self.epochs:
            raise DataError(
                f"{self.path}: no checkpoint for epoch {epoch}; available: {', '.join(map(str, self.epochs))}"
            )
        return epoch

    def selected_epoch(self) -> tuple[int, str]:
        """(the epoch the folder is used with by default, why); DataError when it has no checkpoint of it."""
        selection, epochs = self.selection, self.epochs
        if selection["epoch"] is None:
            raise DataError(f"{self.path}: no checkpoint_NNN.pt; train a model into this folder first")
        if selection["epoch"] not in epochs:
            raise DataError(
                f"{self.path}: {SELECTION_NAME} selects epoch {selection['epoch']}, whose checkpoint is missing "
                f"(checkpoints: {epochs or 'none'}); pass --epoch to use another, or restore checkpoint_"
                f"{selection['epoch']:03d}.pt"
            )
        return selection["epoch"], selection["why"]

    # ---- how it is used

    @cached_property
    def selection(self) -> dict[str, Any]:
        """How the folder is used: ``{epoch, postprocess (PostProcess), display_threshold, class_thresholds
        ({class: threshold}, possibly empty: classes missing from it use display_threshold), target_precision, why,
        recorded, record}`` (``record``: selection.json as written, {} without one).

        From ``selection.json`` when training wrote one (its epoch even when that checkpoint was deleted: loading
        it then fails, saying so, rather than silently using other weights); else (an older or unfinished folder)
        the epoch with the best val mAP in ``loss.json``, else the latest checkpoint, and the default
        post-processing. ``epoch`` is None when there is neither; ``why`` says where the choice came from.
        """
        from util.postprocess import DEFAULT_DISPLAY_THRESHOLD, PostProcess  # numpy: not before it is needed

        path = self.path / SELECTION_NAME
        record = load_json(path) if path.is_file() else None
        if record is not None and not isinstance(record, dict):
            raise DataError(f"{path}: expected a JSON object (written by train_e2e.py)")
        if record is not None:
            return _recorded_selection(path, record)
        best = self._best_in_history()
        if best is not None:
            epoch, why = best, "the best val mAP in loss.json (no selection.json)"
        else:
            epoch, why = (
                (self.epochs[-1] if self.epochs else None),
                "the latest checkpoint (no selection.json)",
            )
        post = PostProcess(nms_per_team=self._team_nms() == "class_team")
        return {"epoch": epoch, "postprocess": post, "display_threshold": DEFAULT_DISPLAY_THRESHOLD,
                "class_thresholds": {}, "target_precision": None, "why": why, "recorded": False,
                "record": {}}  # fmt: skip

    def _team_nms(self) -> str:
        """The default post-processing's NMS: per (class, team) for a model spotting teams as classes (its
        config's ``team_nms``), else per class."""
        from util.postprocess import team_nms_mode

        if not self.config_path.is_file():
            return "class"
        try:
            return team_nms_mode(self.config_json)
        except ValueError as e:
            raise DataError(f"{self.config_path}: {e}") from None

    def _best_in_history(self) -> int | None:
        # Older model folders have no selection.json: the best val mAP that loss.json recorded, if any.
        path = self.path / HISTORY_NAME
        history = load_json(path) if path.is_file() else []
        scored = {
            h["epoch"]: h["val_mAP"]
            for h in history
            if isinstance(h, dict) and h.get("epoch") in self.epochs and h.get("val_mAP") is not None
        }
        return max(scored, key=lambda e: (scored[e], e)) if scored else None


def _recorded_selection(path: Path, record: dict) -> dict[str, Any]:
    """``ModelFolder.selection`` from the selection.json at ``path``; DataError when it is not a valid one."""
    from util.postprocess import DEFAULT_DISPLAY_THRESHOLD, PostProcess

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
