"""Temporal shift (TSM, Lin et al., ICCV 2019): move a fraction of the channels one frame along time.

Frames of a clip arrive flattened as ``(batch * clip_len, C, H, W)`` (a 2D CNN sees single frames). The
first ``C // fold_div`` channels of frame t are taken from frame t + 1 (shifted back in time), the next
``C // fold_div`` from frame t - 1 (shifted forward); the rest stay in place. Frames that would come from
outside the clip are zeros. The shift has no parameters and costs no multiply-adds.
"""

from __future__ import annotations

import torch
from torch import nn


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """channels_last when a 4D ``x`` is laid out so (and not also plainly contiguous), else contiguous."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def shift_frames(
    y: torch.Tensor, clip_len: int, step: int, memory_format=torch.contiguous_format
) -> torch.Tensor:
    """Frame t of each clip takes frame t + ``step`` (``step`` = +1 or -1) of ``y`` (batch * clip_len, c, H, W);
    frames from outside the clip are zeros."""
    clips = y.reshape(y.shape[0] // clip_len, clip_len, *y.shape[1:])
    zeros = clips.new_zeros((clips.shape[0], 1, *clips.shape[2:]))
    parts = [clips[:, 1:], zeros] if step > 0 else [zeros, clips[:, :-1]]
    return torch.cat(parts, dim=1).reshape(y.shape).contiguous(memory_format=memory_format)


def temporal_shift(x: torch.Tensor, clip_len: int, fold_div: int = 8) -> torch.Tensor:
    """Shift ``C // fold_div`` channels back and as many forward by one frame, zero-filled at the clip edges."""
    frames, channels = x.shape[:2]
    if frames % clip_len:
        raise ValueError(f"temporal_shift: {frames} frames is not a whole number of clips of {clip_len}")
    fold = channels // fold_div
    layout = memory_format_of(x)
    # split + one cat: the backward pass is one cat of gradient views, not full-size zero fills per slice
    # (several times faster on CPU than writing slices into an empty tensor).
    back, fwd, rest = x.split([fold, fold, channels - 2 * fold], dim=1)
    return torch.cat(
        [shift_frames(back, clip_len, 1, layout), shift_frames(fwd, clip_len, -1, layout), rest], dim=1
    )


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
