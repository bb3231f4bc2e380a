"""OpenSportsLib's config.yaml (MODEL, DATA): the settings of its E2E-Spot checkpoints, which the converter of
model/published/e2e_spot.py then reads like E2E-Spot's own."""

from __future__ import annotations

from typing import Any

from model.published.convert import _backbone_name, _crop, _integer, _original_config, _positive
from model.published.read import Source
from util.io import DataError
from util.postprocess import PostProcess


def _osl_settings(src: Source) -> dict[str, Any]:
    config = _original_config(
        src,
        "an OpenSportsLib checkpoint needs its config.yaml (it says the frame rate, classes and architecture): pass "
        "--config CONFIG_YAML, or import hf://OWNER/REPO",
    )
    where = src.config_file
    data, model = config.get("DATA"), config.get("MODEL")
    try:
        backbone, head = model["backbone"]["type"], model["head"]["type"]
        clip_len = _integer(data, "clip_len", where)
        fps = src.fps or _positive(data, "extract_fps", where)
    except (KeyError, TypeError) as e:
        raise DataError(
            f"{where}: not an OpenSportsLib localization config (MODEL.backbone.type, MODEL.head.type, "
            f"DATA.clip_len, DATA.extract_fps needed; missing {e})"
        ) from None
    classes = data.get("classes")
    test = data.get("test") if isinstance(data.get("test"), dict) else {}
    overlap_len = _integer(test, "overlap_len", where, default=clip_len // 2, minimum=0)
    if overlap_len >= clip_len:
        raise DataError(
            f"{where}: DATA.test.overlap_len {overlap_len} must be less than DATA.clip_len {clip_len}"
        )
    window_s = float(_integer(test, "nms_window", where, minimum=0)) / fps if "nms_window" in test else 1.0
    if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        raise DataError(f"{where}: DATA.classes must be a list of class names")
    return {
        "feature_arch": _backbone_name(backbone, where),
        "temporal_arch": str(head),
        "clip_len": clip_len,
        "num_classes": len(classes) if classes else None,
        "classes": classes,
        "what": "this OpenSportsLib config (no DATA.classes)",
        "dataset": str(data.get("dataset_name") or "OpenSportsLib's data"),
        "frames": (
            fps,
            _integer(data, "target_width", where, default=398),
            _integer(data, "target_height", where, default=224),
        ),
        "crop": _crop(data, where),
        "overlap": overlap_len / clip_len,
        "post": PostProcess(nms_window_s=window_s, soft=False, threshold=0.01),
    }
