"""Step 5's options, defined once: ``InferenceOptions``, what ``run_inference`` runs on and how.

``inference_spot.py``'s flags are named after its fields (``InferenceOptions.from_namespace``), the web app maps an
upload's choices onto it (``app.options``) and its job runner sends one to the worker process; ``run_inference``
takes it. Its fields carry the defaults (None: what the model folder recorded, or the predict path's and the
renderer's own defaults) and the checks (``validate``, run by the constructor: DataError with the message a user
reads); the drawing options are checked where they are defined, by ``model.render.RenderOptions``
(:meth:`InferenceOptions.render_options`), and the highlight reel's classes and team against the model
(:meth:`InferenceOptions.check_model`).

No torch here, nor anything heavy: the web app's server builds these without importing the model's code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from util.cli import ASPECT_MODES, DEFAULT_ASPECT
from util.io import DataError

# The drawing's defaults, here (nothing heavy) so that the web app's server can name them: slow motion in the whole
# annotated video (a highlight reel has none unless asked), and the highlight reel's length, a share of the match,
# never under REEL_MIN_S (or the whole video, when shorter) and at most a cap. 10 % and 5 minutes: a 90-minute
# match gives a 5-minute reel, a 20-minute one 2 minutes, a 10-minute one 1 minute; at real density (~1,700 ball
# actions a game) +- 5 s around every action covers most of the match, so the reel keeps the best-scoring ones.
DEFAULT_SLOWMO_FACTOR = 3
DEFAULT_REEL_SHARE = 0.10
DEFAULT_REEL_MAX_S = 300.0
REEL_MIN_S = 60.0


@dataclass(frozen=True)
class InferenceOptions:
    """What to run on and how; every field has a default (see ``run_inference`` for the outputs).

    Input, one of: ``video`` (a video file; ``video_name``, if given, is the id recorded for it, else the SoccerNet
    id of a library file or the file's stem) or ``frame_dir`` (+ ``video_name``, a video id under it). ``labels``:
    where the video's ground truth is ("auto": the Labels-ball.json beside a library's video file; None / "none":
    off; a Labels-ball.json; a library folder).

    The model: ``epoch`` (None: the one training selected on val), ``device`` (None: cuda when available),
    ``batch_size`` (None: ``model.predict.DEFAULT_BATCH_SIZE``), ``tta`` and ``window_overlap`` (None: the model's
    config.json), ``max_frames`` (None: every frame).

    The events: ``score_threshold`` (the lowest score shown, every class; None: per class, what the model recorded
    on val), ``nms_window`` (+- frames at the model's fps) or ``nms_window_s`` (seconds) (None: the model's).

    The drawing: ``visualize`` (frames/), ``create_video`` (annotated.mp4), ``slowmo_factor`` (each frame near an
    action repeated; 1 = off) over ``slowmo_span`` seconds each side (None: ``model.render``'s defaults),
    ``highlights_s`` (a highlight reel, each shown action +- that many seconds), of ``highlight_classes`` and
    ``highlight_team`` ("left" / "right") only when given, filled with the best-scoring of those actions up to
    ``reel_share`` of the match (1: no share limit) and at most ``reel_max_s`` seconds (0: no cap) (None: the
    renderer's defaults, ``DEFAULT_REEL_SHARE`` and ``DEFAULT_REEL_MAX_S``). ``slowmo_factor`` None: slow motion
    (``DEFAULT_SLOWMO_FACTOR``) in the whole video, none in a reel.
    """

    video: str | Path | None = None
    frame_dir: str | Path | None = None
    video_name: str | None = None
    labels: str | Path | None = "auto"
    epoch: int | None = None
    device: str | None = None
    batch_size: int | None = None
    tta: str | None = None
    window_overlap: float | None = None
    max_frames: int | None = None
    score_threshold: float | None = None
    nms_window: int | None = None
    nms_window_s: float | None = None
    visualize: bool = False
    create_video: bool = False
    slowmo_factor: int | None = None
    slowmo_span: float | None = None
    highlights_s: float | None = None
    highlight_classes: tuple[str, ...] | None = None
    highlight_team: str | None = None
    reel_share: float | None = None
    reel_max_s: float | None = None
    aspect: str = DEFAULT_ASPECT  # a video of another aspect ratio than the model's: ASPECT_MODES

    def __post_init__(self) -> None:
        if self.highlight_classes is not None and not isinstance(self.highlight_classes, tuple):
            object.__setattr__(self, "highlight_classes", tuple(self.highlight_classes))
        self.validate()

    def validate(self) -> None:
        """The checks that need no model (DataError naming the bad value)."""
        threshold, window = self.score_threshold, self.nms_window
        if window is None:
            window = self.nms_window_s
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise DataError(f"score threshold {threshold} is not between 0 and 1")
        if window is not None and window < 0:
            raise DataError(f"NMS window {window} is negative")
        if self.max_frames is not None and self.max_frames < 1:
            raise DataError(f"max_frames {self.max_frames} must be at least 1")
        if self.batch_size is not None and self.batch_size < 1:
            raise DataError(f"batch size {self.batch_size} must be at least 1")
        if self.aspect not in ASPECT_MODES:
            raise DataError(f"aspect must be one of {', '.join(ASPECT_MODES)}, not {self.aspect!r}")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_namespace(cls, args: Any) -> InferenceOptions:
        """The options an argparse namespace holds under the fields' names (the others keep their defaults)."""
        return cls(**{name: getattr(args, name) for name in cls.field_names() if hasattr(args, name)})

    def with_changes(self, **changes: Any) -> InferenceOptions:
        """A copy with ``changes`` (field names; TypeError for another), checked again."""
        return dataclasses.replace(self, **changes)

    @property
    def predict_overrides(self) -> dict[str, Any]:
        """The prediction settings given (``tta``, ``window_overlap``), as the config keys they override."""
        given = {"tta": self.tta, "window_overlap": self.window_overlap}
        return {k: v for k, v in given.items() if v is not None}

    def render_options(self) -> Any:
        """What is drawn, as ``model.render.RenderOptions`` (which checks it: DataError)."""
        from model.render import RenderOptions

        given = {
            "slowmo_factor": self.slowmo_factor,
            "slowmo_span_s": self.slowmo_span,
            "reel_share": self.reel_share,
            "reel_max_s": self.reel_max_s,
        }
        return RenderOptions(
            video=self.create_video,
            frames=self.visualize,
            highlights_s=self.highlights_s,
            highlight_classes=self.highlight_classes,
            highlight_team=self.highlight_team,
            **{k: v for k, v in given.items() if v is not None},
        )

    def check_model(self, classes: list[str], team: bool) -> None:
        """The highlight reel's classes must be the model's, and a reel of one team needs a team head."""
        unknown = sorted(set(self.highlight_classes or ()) - set(classes))
        if unknown:
            raise DataError(f"highlight classes {unknown} are not the model's ({', '.join(classes)})")
        if self.highlight_team is not None and not team:
            raise DataError(
                f"a highlight reel of the {self.highlight_team} team needs a model with a team head (--team)"
            )
