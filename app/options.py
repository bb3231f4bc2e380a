"""An upload's options: the form's (and the API's) fields -> the job's options -> the ``InferenceOptions`` it runs with.

The job's options are what the user chose, kept in its status.json and shown by the API: ``threshold`` (every
class) or ``thresholds: "model"`` (the per-class ones the model recorded), ``slowmo_factor``, ``annotated`` (auto |
full | highlights | none), ``highlight_classes`` / ``highlight_team`` (a reel of those actions only) and ``labels``
(a Labels-ball.json came with the upload). :func:`parse_options` checks the fields (ValueError, said to the user);
:func:`inference_options` turns a job's options into step 5's one options type, as the job runner sends it to its
worker, and its checks run on every upload before it is queued.
"""

from __future__ import annotations

import math
from pathlib import Path

from model.inference_options import InferenceOptions
from util.io import DataError

SLOWMO_CHOICES = (1, 2, 3, 4)
ANNOTATED_CHOICES = ("auto", "full", "highlights", "none")
HIGHLIGHT_SPAN_S = 5.0  # a highlight reel keeps each action +- this many seconds


def parse_options(
    form, default_threshold: float, default_slowmo: int, per_class: bool = False, outputs: dict | None = None
) -> dict:
    """Threshold, slow-motion factor and annotated-video kind from the upload form; bad values raise ValueError.

    ``thresholds=model`` (the form's checkbox), or no ``threshold`` when the model recorded per-class thresholds
    (``per_class``), keeps the model's per-class thresholds (no "threshold" in the options); a ``threshold``
    applies to every class. ``highlight_classes`` (repeated, or comma-separated) and ``highlight_team`` cut the
    highlight reel around those actions only: they must be among the model's ``outputs`` (``model_outputs``),
    and they make "auto" a highlight reel."""
    wanted = form.get("thresholds")
    if wanted not in (None, "", "model", "one"):
        raise ValueError("thresholds must be 'model' or 'one'")
    options: dict = {}
    if per_class and (wanted == "model" or (not form.get("threshold") and wanted != "one")):
        options["thresholds"] = "model"
    else:
        threshold = float(form.get("threshold") or default_threshold)
        if not (0.0 < threshold < 1.0) or math.isnan(threshold):
            raise ValueError("the detection threshold must be between 0 and 1")
        options["threshold"] = threshold
    slowmo = int(form.get("slowmo") or default_slowmo)
    if slowmo not in SLOWMO_CHOICES:
        raise ValueError(f"slow motion must be one of {', '.join(map(str, SLOWMO_CHOICES))}")
    annotated = form.get("annotated") or "auto"
    if annotated not in ANNOTATED_CHOICES:
        raise ValueError(f"annotated must be one of {', '.join(ANNOTATED_CHOICES)}")
    options.update(_reel_choice(form, outputs or {"classes": [], "team": False}))
    if "highlight_classes" in options or "highlight_team" in options:
        if annotated == "auto":
            annotated = "highlights"
        elif annotated != "highlights":
            raise ValueError("a reel of chosen actions or of one team must be annotated=highlights")
    return {**options, "slowmo_factor": slowmo, "annotated": annotated}


def _reel_choice(form, outputs: dict) -> dict:
    """The form's highlight-reel selection: ``{"highlight_classes": [...], "highlight_team": "left"}``, each
    only when chosen; a class the model does not spot, or a team without a team head, raises ValueError."""
    chosen = {}
    names = [n.strip() for value in form.getlist("highlight_classes") for n in value.split(",") if n.strip()]
    if names:
        unknown = sorted(set(names) - set(outputs["classes"]))
        if unknown:
            raise ValueError(
                f"highlight_classes must be among the model's classes ({', '.join(outputs['classes'])}): "
                f"{', '.join(unknown)} is not"
            )
        chosen["highlight_classes"] = [c for c in outputs["classes"] if c in names]  # the model's order
    team = form.get("highlight_team") or ""
    if team not in ("", "either"):
        if team not in ("left", "right"):
            raise ValueError("highlight_team must be 'left' or 'right' (or empty: either)")
        if not outputs["team"]:
            raise ValueError("highlight_team must be empty: this model does not tell the teams apart")
        chosen["highlight_team"] = team
    return chosen


def inference_options(
    options: dict, video: Path, video_name: str, labels: Path | None, **overrides
) -> InferenceOptions:
    """What a job with these (job) ``options`` runs: ``video`` recorded as ``video_name``, its ground truth from
    ``labels`` (None: none), slow motion over step 5's span (``inference_spot.py``'s), a highlight reel (the
    "highlights" kind; the runner resolves "auto" first) of +- ``HIGHLIGHT_SPAN_S``, and the server's ``overrides``
    (``INFERENCE_KWARGS``: device, batch_size, ...). DataError when they do not hold together."""
    annotated = options.get("annotated", "full")
    reel = annotated == "highlights"
    chosen = InferenceOptions(
        video=video,
        video_name=video_name,
        score_threshold=float(options["threshold"]) if "threshold" in options else None,
        labels=labels if labels is not None else "none",
        create_video=annotated != "none",
        highlights_s=HIGHLIGHT_SPAN_S if reel else None,
        highlight_classes=options.get("highlight_classes") if reel else None,
        highlight_team=options.get("highlight_team") if reel else None,
        slowmo_factor=int(options.get("slowmo_factor", 1)),
    )
    return chosen.with_changes(**overrides) if overrides else chosen


def check_options(options: dict) -> None:
    """An upload's job options hold together as step 5's options (``inference_options``: the form's checks are
    the stricter, so this only guards them); ValueError, said to the user, when not."""
    try:
        inference_options(options, Path("upload"), "upload", None)
    except DataError as e:
        raise ValueError(str(e)) from None
