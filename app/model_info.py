"""What the web app tells about its model, from one ``ModelFolder`` read per request (the folder may be trained or
replaced while the server runs): whether it can run, the thresholds the upload form starts at, the classes and
team head the form offers, the card on the upload page and the classes' colours. None of it imports torch, and a
folder that cannot be read gives empty answers, never an error page.
"""

from __future__ import annotations

from pathlib import Path

from model.folder import ModelFolder
from util.io import DataError


def model_ready(folder: ModelFolder) -> bool:
    return folder.ready


def default_threshold(folder: ModelFolder, setting: float | None) -> float:
    """The threshold the upload form starts at: the app's setting, else the model's display threshold."""
    if setting is not None:
        return float(setting)
    from util.postprocess import DEFAULT_DISPLAY_THRESHOLD

    try:
        return float(folder.selection["display_threshold"])
    except DataError:
        return DEFAULT_DISPLAY_THRESHOLD


def model_thresholds(folder: ModelFolder, setting: float | None) -> dict:
    """The per-class display thresholds the model recorded on val (selection.json) and their target precision:
    ``{"classes": {class: threshold}, "target_precision": p}`` ({} classes when it recorded none, or the app's
    DEFAULT_THRESHOLD ``setting`` replaces them)."""
    if setting is not None:
        return {"classes": {}, "target_precision": None}
    try:
        usage = folder.selection
    except DataError:
        return {"classes": {}, "target_precision": None}
    return {"classes": dict(usage["class_thresholds"]), "target_precision": usage["target_precision"]}


def model_outputs(folder: ModelFolder) -> dict:
    """What the model spots, for the form's reel choices: ``{"classes": [...], "team": bool}`` from its
    config.json (no classes when it cannot be read: the form then offers no choice)."""
    try:
        config = folder.config_json
        classes = [c for c in config.get("classes") or [] if isinstance(c, str)]
        return {"classes": classes, "team": bool(config.get("team"))}
    except DataError:
        return {"classes": [], "team": False}


def model_card(folder: ModelFolder) -> dict | None:
    """Which model the app runs, for the upload page: ``{name, architecture, trained_on, licence, source, epoch}``
    (None when config.json cannot be read). A published model says its project and what it was trained on
    (import_checkpoint.py records it); a model trained here, its dataset and the epoch chosen on val."""
    try:
        config = folder.config_json
        epoch = folder.selection.get("epoch")
    except DataError:
        return None
    architecture = f"{config.get('feature_arch')} + {config.get('temporal_arch')}"
    classes = config.get("classes") or []
    geometry = (
        f"{config.get('frame_width')}x{config.get('frame_height')} at {float(config.get('fps') or 0):g} fps"
    )
    source = config.get("source") if isinstance(config.get("source"), dict) else None
    if source:
        return {
            "name": source.get("project", "a published model"),
            "architecture": architecture,
            "trained_on": source.get("trained_on") or geometry,
            "licence": source.get("licence"),
            "source": source.get("weights_file"),
            "epoch": epoch,
        }
    dataset = Path(str(config.get("dataset") or "")).name or "its labels"
    return {
        "name": f"trained with this toolkit ({folder.path.name})",
        "architecture": architecture,
        "trained_on": f"{dataset} ({len(classes)} classes), {geometry}",
        "licence": None,
        "source": None,
        "epoch": epoch,
    }


def class_css(folder: ModelFolder) -> str:
    """One CSS rule per class giving ``--c``, the class's colour in the annotated video and timeline plot."""
    from util.soccernet import CLASSES
    from util.visualize import class_colors

    classes = list(CLASSES)
    try:
        model_classes = folder.config_json.get("classes") or []
        classes += [c for c in model_classes if isinstance(c, str) and c not in classes]
    except DataError:
        pass
    rules = []
    for name, (r, g, b) in class_colors(classes).items():
        selector = name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
        rules.append(f'[data-label="{selector}"] {{ --c: rgb({r}, {g}, {b}); }}')
    return "\n".join(rules) + "\n"
