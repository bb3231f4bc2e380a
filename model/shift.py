"""Insert a temporal shift (TSM or GSM) into every residual block of a 2D CNN backbone.

The shift goes on the residual branch, just before the block's first convolution (TSM's "residual shift"):
the identity path still carries each frame's own features, so ImageNet weights stay useful. Blocks recognised:
torchvision's ResNet ``BasicBlock`` / ``Bottleneck`` and timm's RegNet ``Bottleneck``.
"""

from __future__ import annotations

from collections.abc import Callable

import timm.models.regnet
import torchvision.models.resnet
from torch import nn

from model.impl.gsm import GatedShift
from model.impl.tsm import TemporalShift

RESIDUAL_BLOCKS = (
    torchvision.models.resnet.BasicBlock,
    torchvision.models.resnet.Bottleneck,
    timm.models.regnet.Bottleneck,
)

# name -> (in_channels, clip_len) -> shift module. Backbone names take the key as a suffix: "rn18_tsm".
SHIFTS: dict[str, Callable[[int, int], nn.Module]] = {
    "tsm": lambda channels, clip_len: TemporalShift(clip_len, fold_div=8),
    "gsm": lambda channels, clip_len: GatedShift(channels, clip_len, channel_div=4),
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


def insert_shift(backbone: nn.Module, shift: str, clip_len: int) -> int:
    """Put a ``shift`` ("tsm" or "gsm") before conv1 of every residual block; returns the number of blocks."""
    if shift not in SHIFTS:
        raise ValueError(f"unknown temporal shift {shift!r}; valid: {', '.join(SHIFTS)}")
    blocks = [m for m in backbone.modules() if isinstance(m, RESIDUAL_BLOCKS)]
    if not blocks:
        raise ValueError(f"no residual block found in {type(backbone).__name__} to insert {shift} into")
    for block in blocks:
        block.conv1 = ShiftThenConv(SHIFTS[shift](_in_channels(block.conv1), clip_len), block.conv1)
    return len(blocks)
