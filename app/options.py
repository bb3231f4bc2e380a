"""An upload's options: the form's (and the API's) fields -> the job's options -> the ``InferenceOptions`` it runs with.

The job's options are what the user chose, kept in its status.json and shown by the API: ``threshold`` (every
class) or ``thresholds: "model"`` (the per-class ones the model recorded), ``slowmo_factor`` (1-4, or "auto": 3 in
the whole video, off in a highlight reel; the job runner resolves it with ``annotated``), ``annotated`` (auto |
full | highlights | none), ``highlight_classes`` / ``highlight_team`` (a reel of those actions only),
``reel_share`` / ``reel_max_s`` (the reel's bounds, when given; else step 5's defaults: 10 % of the match, never
under a minute, at most 5 minutes) and ``labels`` (a Labels-ball.json came with the upload). :func:`parse_options`
checks the fields (ValueError, said to the user); :func:`inference_options` turns a job's options into step 5's
one options type, as the job runner sends it to its worker, and its checks run on every upload before it is queued.
"""

from __future__ import annotations

import math
from pathlib import Path

from model.inference_options import DEFAULT_SLOWMO_FACTOR, InferenceOptions
from util.cli import ASPECT_MODES, DEFAULT_ASPECT
from util.io import DataError

SLOWMO_CHOICES = (1, 2, 3, 4)
SLOWMO_AUTO = "auto"  # 3x in the whole video, off in a highlight reel
ANNOTATED_CHOICES = ("auto", "full", "highlights", "none")
HIGHLIGHT_SPAN_S = 5.0  # a highlight reel keeps each action +- this many seconds


def parse_options(
    form,
    default_threshold: float,
    default_slowmo: int | str,
    per_class: bool = False,
    outputs: dict | None = None,
) -> dict:
    """Threshold, slow-motion factor and annotated-video kind from the upload form; bad values raise ValueError.

    ``slowmo`` is a factor of SLOWMO_CHOICES or "auto"; absent, ``default_slowmo``, where step 5's own default
    (DEFAULT_SLOWMO_FACTOR, the app's DEFAULT_SLOWMO) stands for "auto": no slow motion in a reel unless asked.
    ``reel_share`` / ``reel_max_s`` bound a highlight reel (step 5's defaults when absent).
    ``aspect`` (``ASPECT_MODES``) fits a video of another aspect ratio than the model's; only recorded when it is
    not the default (letterbox). ``thresholds=model`` (the form's checkbox), or no ``threshold`` when the model recorded per-class thresholds
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
    given = form.get("slowmo")
    if not given:
        given = SLOWMO_AUTO if default_slowmo == DEFAULT_SLOWMO_FACTOR else default_slowmo
    slowmo = _slowmo_choice(given)
    annotated = form.get("annotated") or "auto"
    if annotated not in ANNOTATED_CHOICES:
        raise ValueError(f"annotated must be one of {', '.join(ANNOTATED_CHOICES)}")
    options.update(_reel_choice(form, outputs or {"classes": [], "team": False}))
    options.update(_reel_bounds(form))
    if any(key in options for key in ("highlight_classes", "highlight_team", "reel_share", "reel_max_s")):
        if annotated == "auto":
            annotated = "highlights"
        elif annotated != "highlights":
            raise ValueError(
                "a reel of chosen actions or of one team, or its bounds, must be annotated=highlights"
            )
    aspect = form.get("aspect") or DEFAULT_ASPECT
    if aspect not in ASPECT_MODES:
        raise ValueError(f"aspect must be one of {', '.join(ASPECT_MODES)}")
    if aspect != DEFAULT_ASPECT:
        options["aspect"] = aspect
    return {**options, "slowmo_factor": slowmo, "annotated": annotated}


def _slowmo_choice(value) -> int | str:
    """A slow-motion factor of SLOWMO_CHOICES, or "auto"; ValueError for anything else."""
    if str(value).strip().lower() == SLOWMO_AUTO:
        return SLOWMO_AUTO
    choices = f"{', '.join(map(str, SLOWMO_CHOICES))} or {SLOWMO_AUTO}"
    try:
        slowmo = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"slow motion must be one of {choices}") from None
    if slowmo not in SLOWMO_CHOICES:
        raise ValueError(f"slow motion must be one of {choices}")
    return slowmo


def resolved_slowmo(slowmo, annotated: str) -> int:
    """A job's slow-motion factor once its annotated kind is known: "auto" (or none recorded) is off in a highlight
    reel and DEFAULT_SLOWMO_FACTOR in the whole video."""
    if slowmo in (None, SLOWMO_AUTO):
        return 1 if annotated == "highlights" else DEFAULT_SLOWMO_FACTOR
    return int(slowmo)


def _reel_bounds(form) -> dict:
    """The form's highlight-reel bounds, each only when given: ``reel_share`` (above 0, at most 1) and
    ``reel_max_s`` (seconds, 0: no cap); ValueError for another value."""
    bounds = {}
    share, cap = form.get("reel_share") or "", form.get("reel_max_s") or ""
    if share:
        value = float(share)
        if not 0.0 < value <= 1.0:  # (NaN fails too)
            raise ValueError("reel_share must be above 0 and at most 1 (1: no share limit)")
        bounds["reel_share"] = value
    if cap:
        value = float(cap)
        if not (value >= 0.0 and math.isfinite(value)):
            raise ValueError("reel_max_s must be 0 (no cap) or a positive number of seconds")
        bounds["reel_max_s"] = value
    return bounds


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
    ``labels`` (None: none), slow motion over step 5's span (``inference_spot.py``'s; "auto": off in a reel, 3x in
    the whole video), a highlight reel (the "highlights" kind; the runner resolves "auto" first) of +-
    ``HIGHLIGHT_SPAN_S`` within the reel's bounds, and the server's ``overrides`` (``INFERENCE_KWARGS``: device,
    batch_size, ...). DataError when they do not hold together."""
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
        reel_share=options.get("reel_share") if reel else None,
        reel_max_s=options.get("reel_max_s") if reel else None,
        slowmo_factor=resolved_slowmo(options.get("slowmo_factor", 1), annotated),
        aspect=options.get("aspect", DEFAULT_ASPECT),
    )
    return chosen.with_changes(**overrides) if overrides else chosen


def check_options(options: dict) -> None:
    """An upload's job options hold together as step 5's options (``inference_options``: the form's checks are
    the stricter, so this only guards them); ValueError, said to the user, when not."""
    try:
        inference_options(options, Path("upload"), "upload", None)
    except DataError as e:
        raise ValueError(str(e)) from None
