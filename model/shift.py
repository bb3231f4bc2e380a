"""Insert a temporal shift (TSM, GSM or GSF) into the residual blocks of a 2D CNN backbone.

The shift goes on the residual branch, just before the block's first convolution (TSM's "residual shift"):
the identity path still carries each frame's own features, so ImageNet weights stay useful. Blocks recognised:
torchvision's ResNet ``BasicBlock`` / ``Bottleneck`` and timm's RegNet ``Bottleneck``.

Where the shifts go and how many channels a gated shift gates is an architecture *variant*, recorded in a model's
config.json as ``arch_variant`` (:data:`VARIANTS`), so that published checkpoints run exactly as their authors'
code ran them:

- ``house``: this project's models before the importer existed (and the default): every residual block, gated
  channels (C // 4) rounded down to even;
- ``e2e-spot``: E2E-Spot (and OpenSportsLib, which runs E2E-Spot's code): every block, (C // 4) rounded up to a
  multiple of 4;
- ``tdeed``: T-DEED and sn-teamspotting: the same channels, but only in the last two stages of a RegNet
  (``s3``, ``s4``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import timm.models.regnet
import torchvision.models.resnet
from torch import nn

from model.impl.gsm import GatedShift, house_gated_channels, published_gated_channels
from model.impl.tsm import TemporalShift

RESIDUAL_BLOCKS = (
    torchvision.models.resnet.BasicBlock,
    torchvision.models.resnet.Bottleneck,
    timm.models.regnet.Bottleneck,
)


@dataclass(frozen=True)
class ShiftVariant:
    """Where a backbone's shifts go and how many channels a gated shift gates."""

    gated_channels: Callable[[int], int]  # a block's input channels -> gated channels
    regnet_stages: tuple[str, ...] | None = None  # RegNet stages that shift (None: all)
    describe: str = ""  # for --help


VARIANTS: dict[str, ShiftVariant] = {
    "house": ShiftVariant(
        house_gated_channels, None, "this project's, shifts in every block, gating C//4 rounded down to even"
    ),
    "e2e-spot": ShiftVariant(
        published_gated_channels, None, "E2E-Spot's, every block, C//4 rounded up to a multiple of 4"
    ),
    "tdeed": ShiftVariant(
        published_gated_channels, ("s3", "s4"), "T-DEED's, E2E-Spot's width in RegNet stages s3-s4 only"
    ),
}
DEFAULT_VARIANT = "house"

# name -> (in_channels, clip_len, variant) -> shift module. Backbone names take the key as a suffix: "rn18_tsm".
SHIFTS: dict[str, Callable[[int, int, ShiftVariant], nn.Module]] = {
    "tsm": lambda channels, clip_len, variant: TemporalShift(clip_len, fold_div=8),
    "gsm": lambda channels, clip_len, variant: GatedShift(
        channels, clip_len, gated=variant.gated_channels(channels)
    ),
    "gsf": lambda channels, clip_len, variant: GatedShift(
        channels, clip_len, gated=variant.gated_channels(channels), fuse=True
    ),
}


class ShiftThenConv(nn.Module):
    """A block's first convolution, preceded by a temporal shift."""

    def __init__(self, shift: nn.Module, conv: nn.Module) -> None:
        super().__init__()
        self.shift = shift
        self.conv = conv

    def forward(self, x):
        return self.conv(self.shift(x))


def _in_channels(conv: nn.Module) -> int:
    first = next(m for m in conv.modules() if isinstance(m, nn.Conv2d))
    return first.in_channels


def shifted_blocks(backbone: nn.Module, variant: str = DEFAULT_VARIANT) -> list[nn.Module]:
    """The residual blocks of ``backbone`` that a shift of ``variant`` goes into, in order."""
    stages = VARIANTS[variant].regnet_stages
    if stages is not None and isinstance(backbone, timm.models.regnet.RegNet):
        roots = [getattr(backbone, name) for name in stages]
    else:
        roots = [backbone]
    return [m for root in roots for m in root.modules() if isinstance(m, RESIDUAL_BLOCKS)]


def insert_shift(backbone: nn.Module, shift: str, clip_len: int, variant: str = DEFAULT_VARIANT) -> int:
    """Put a ``shift`` ("tsm", "gsm" or "gsf") before conv1 of the residual blocks ``variant`` shifts; returns
    the number of blocks."""
    if shift not in SHIFTS:
        raise ValueError(f"unknown temporal shift {shift!r}; valid: {', '.join(SHIFTS)}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown architecture variant {variant!r}; valid: {', '.join(VARIANTS)}")
    blocks = shifted_blocks(backbone, variant)
    if not blocks:
        raise ValueError(f"no residual block found in {type(backbone).__name__} to insert {shift} into")
    for block in blocks:
        module = SHIFTS[shift](_in_channels(block.conv1), clip_len, VARIANTS[variant])
        block.conv1 = ShiftThenConv(module, block.conv1)
    return len(blocks)
