"""Temporal shift (TSM, Lin et al., ICCV 2019): move a fraction of the channels one frame along time.

Frames of a clip arrive flattened as ``(batch * clip_len, C, H, W)`` (a 2D CNN sees single frames). The
first ``C // fold_div`` channels of frame t are taken from frame t + 1 (shifted back in time), the next
``C // fold_div`` from frame t - 1 (shifted forward); the rest stay in place. Frames that would come from
outside the clip are zeros. The shift has no parameters and costs no multiply-adds.
"""

from __future__ import annotations

import torch
from torch import nn


def temporal_shift(x: torch.Tensor, clip_len: int, fold_div: int = 8) -> torch.Tensor:
    """Shift ``C // fold_div`` channels back and as many forward by one frame, zero-filled at the clip edges."""
    frames, channels = x.shape[:2]
    if frames % clip_len:
        raise ValueError(f"temporal_shift: {frames} frames is not a whole number of clips of {clip_len}")
    fold = channels // fold_div
    x = x.reshape(frames // clip_len, clip_len, *x.shape[1:])
    # Written into a tensor laid out like x, so a channels_last input stays channels_last.
    out = torch.empty_like(x)
    out[:, :-1, :fold] = x[:, 1:, :fold]  # frame t gets frame t + 1
    out[:, -1, :fold] = 0
    out[:, 1:, fold : 2 * fold] = x[:, :-1, fold : 2 * fold]  # frame t gets frame t - 1
    out[:, 0, fold : 2 * fold] = 0
    out[:, :, 2 * fold :] = x[:, :, 2 * fold :]
    return out.flatten(0, 1)


class TemporalShift(nn.Module):
    """Parameter-free temporal shift of ``1 / fold_div`` of the channels each way."""

    def __init__(self, clip_len: int, fold_div: int = 8) -> None:
        super().__init__()
        self.clip_len = clip_len
        self.fold_div = fold_div

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return temporal_shift(x, self.clip_len, self.fold_div)

    def extra_repr(self) -> str:
        return f"clip_len={self.clip_len}, fold_div={self.fold_div}"
