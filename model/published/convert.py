"""What every converter shares: the converted checkpoint, backbone keys, the gated shifts' interleave fold, class
lists and their order, and the checked values of an original config."""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from model.published.read import Source
from util.io import DataError
from util.postprocess import PostProcess
from util.soccernet import CLASSES, CLASSES_2023, CLASSES_V2

KNOWN_ORDERS = (list(CLASSES), list(CLASSES_2023), list(CLASSES_V2))


@dataclass
class Imported:
    """A converted checkpoint: this project's config and state dict, and what the conversion dropped or noted."""

    config: dict[str, Any]
    state: dict[str, torch.Tensor]
    epoch: int
    postprocess: PostProcess
    dropped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _backbone_key(key: str) -> str:
    """An original ``_features.*`` key -> this project's ``backbone.*`` (shift wrappers renamed)."""
    key = "backbone." + key[len("_features.") :]
    key = key.replace(".conv1.net.", ".conv1.conv.")
    key = re.sub(r"\.conv1\.gsm?\.bn\.", ".conv1.shift.norm.", key)
    key = re.sub(r"\.conv1\.gsm?\.conv3D\.", ".conv1.shift.gate.", key)
    return re.sub(r"\.conv1\.gs\.channel_conv([12])\.", lambda m: f".conv1.shift.fuse.{int(m[1]) - 1}.", key)


def interleave_order(gated: int) -> torch.Tensor:
    """sigma with output channel p of E2E-Spot's / T-DEED's gated shift = its input channel sigma[p]: within
    each half of the ``gated`` channels, the two quarters interleave (0, q, 1, q + 1, ...; q = gated / 4)."""
    q = gated // 4
    half = [i * q + j for j in range(q) for i in range(2)]
    return torch.tensor(half + [gated // 2 + c for c in half])


def _fold_interleave(state: dict[str, torch.Tensor], where: Path) -> int:
    """Fold every gated shift's output interleave into the input columns of the convolution after it."""
    folded = 0
    for gate_key in [k for k in state if k.endswith(".conv1.shift.gate.weight")]:
        block = gate_key[: -len("shift.gate.weight")]
        gated = 2 * state[gate_key].shape[1]
        conv_key = next((block + s for s in ("conv.conv.weight", "conv.weight") if block + s in state), None)
        if conv_key is None or gated % 4:
            raise DataError(
                f"{where}: the gated shift at {block} has no convolution after it, or an odd width ({gated})"
            )
        # Their conv reads column p from channel sigma[p] of the un-interleaved output: here column sigma[p].
        weight = state[conv_key].clone()
        weight[:, interleave_order(gated)] = state[conv_key][:, :gated]
        state[conv_key] = weight
        folded += 1
    return folded


def _class_rows(weight: torch.Tensor, original: list[str], target: list[str]) -> torch.Tensor:
    """The class-output rows of ``weight`` (row 0 = background) reordered from ``original`` to ``target``."""
    order = [0] + [1 + original.index(c) for c in target]
    return weight[order]


def _classes_for(
    given: list[str] | None, known: list[str] | None, count: int, what: str, source_file: Path
) -> list[str]:
    """The checkpoint's class names in its head's order: --classes, else the built-in list for its dataset."""
    classes = given if given is not None else known
    if classes is None:
        raise DataError(
            f"{source_file}: no built-in class list for {what}; pass --classes CLASS_TXT (one class a line, in the "
            f"order of the model's outputs, background excluded)"
        )
    if len(set(classes)) != len(classes):
        raise DataError(f"{source_file}: the class list names a class twice ({', '.join(classes)})")
    if len(classes) != count:
        raise DataError(
            f"{source_file}: the model has {count} class outputs but the class list has {len(classes)} "
            f"({', '.join(classes[:5])}...); pass the matching --classes"
        )
    return list(classes)


def _canonical(classes: list[str]) -> list[str]:
    """This project's order for a known class set (so that fine-tuning keeps the head), else as given."""
    for order in KNOWN_ORDERS:
        if sorted(order) == sorted(classes):
            return list(order)
    return list(classes)


def _check_keys(state: dict[str, torch.Tensor], prefixes: tuple[str, ...], source_file: Path) -> None:
    unknown = [k for k in state if not k.startswith(prefixes)]
    if unknown:
        raise DataError(
            f"{source_file}: unknown key(s) for this format: {', '.join(unknown[:6])}"
            + (f" and {len(unknown) - 6} more" if len(unknown) > 6 else "")
            + "; is --format right?"
        )


def _backbone(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return OrderedDict(
        (_backbone_key(k), state.pop(k)) for k in [k for k in state if k.startswith("_features.")]
    )


def _epoch_of(path: Path, container: dict[str, Any]) -> int:
    match = re.fullmatch(r"checkpoint_(\d+)\.pt", path.name)
    if match:
        return int(match.group(1))
    epoch = container.get("epoch")
    return int(epoch) if isinstance(epoch, int | float) and epoch >= 0 else 0


def _geometry(width: int, height: int, crop: int | None) -> dict[str, Any]:
    """The frame keys of config.json: frames are read at the authors' size (``source_*``; a frame folder or a
    video of another size is resized to it, as training here records it), then centre-cropped to ``frame_*``."""
    return {
        "source_width": int(width),
        "source_height": int(height),
        "frame_width": min(crop, width) if crop else int(width),
        "frame_height": min(crop, height) if crop else int(height),
        "crop_dim": crop,
    }


def _integer(config: dict, key: str, where: Path | None, default: Any = None, minimum: int = 1) -> int:
    """An integer setting of an original config (a float with an integer value is taken), or DataError."""
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or int(value) != value:
        raise DataError(f"{where}: {key} must be an integer, not {value!r}")
    if value < minimum:
        raise DataError(f"{where}: {key} must be at least {minimum}, not {value!r}")
    return int(value)


def _positive(config: dict, key: str, where: Path | None, default: Any = None) -> float:
    value = config.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and value > 0)
    ):
        raise DataError(f"{where}: {key} must be a positive number, not {value!r}")
    return float(value)


def _crop(config: dict, where: Path | None) -> int | None:
    """crop_dim: None, 0 or negative = no crop (E2E-Spot null, T-DEED -1), else the square crop's side."""
    if config.get("crop_dim") is None:
        return None
    crop = _integer(config, "crop_dim", where, minimum=-1)
    return crop if crop > 0 else None


def _original_config(src: Source, needs: str) -> dict[str, Any]:
    """The original project's config, or DataError: ``needs`` says which file and where to find it."""
    if src.original_config is None:
        raise DataError(f"{src.weights_file}: {needs}")
    return src.original_config


def _frames(
    known: tuple[float, int, int] | None, fps: float | None, size: tuple[int, int], what: str
) -> tuple[float, int, int]:
    """(fps, width, height) of a model's frames: the dataset's, with --fps overriding the rate."""
    if known is None and fps is None:
        raise DataError(
            f"{what} is not a SoccerNet one: the frame rate it was trained at is unknown; pass --fps"
        )
    width, height = known[1:] if known else size
    return (fps if fps is not None else known[0]), width, height


def _backbone_name(name: Any, where: Path | None) -> str:
    from model.common import BACKBONES

    if not isinstance(name, str) or name not in BACKBONES:
        raise DataError(f"{where}: backbone {name!r} cannot be imported (supported: {', '.join(BACKBONES)})")
    return name
