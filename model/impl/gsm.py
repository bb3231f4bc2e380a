"""Gated shift (GSM, Sudhakaran et al., CVPR 2020): a learned, per-position gate decides what to shift.

On the first ``channels // channel_div`` channels (the rest pass through), a small grouped 3D convolution over
(time, height, width) predicts two gates in [-1, 1] (tanh), one per half of those channels. Each half is split
into its gated part ``g * x`` and the residual ``x - g * x``; the gated part of the first half moves one frame
back in time, of the second half one frame forward (zero fill at the clip edges), and the residual stays.

Each group is gated as a whole: one gate value per (frame, y, x) and group, shared by its channels.
The gate convolution starts at zero, so a freshly inserted GSM is the identity: an ImageNet backbone keeps its
features until training opens the gates (the gradient of the zero-initialised weights is not zero).
"""

from __future__ import annotations

import torch
from torch import nn


class GatedShift(nn.Module):
    """Gated temporal shift of ``channels // channel_div`` channels; input and output (batch * clip_len, C, H, W)."""

    def __init__(self, channels: int, clip_len: int, channel_div: int = 4) -> None:
        super().__init__()
        self.clip_len = clip_len
        # An even number of gated channels, split into two groups (one gate each).
        self.gated = max(2, (channels // channel_div) // 2 * 2)
        self.norm = nn.BatchNorm3d(self.gated)
        self.act = nn.ReLU()
        self.gate = nn.Conv3d(self.gated, 2, kernel_size=3, padding=1, groups=2)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = x.shape[0]
        if frames % self.clip_len:
            raise ValueError(f"GatedShift: {frames} frames is not a whole number of clips of {self.clip_len}")
        clips = x.reshape(frames // self.clip_len, self.clip_len, *x.shape[1:])  # (N, T, C, H, W)
        moved = clips[:, :, : self.gated]
        # (N, C, T, H, W) for the 3D convolution; a channels_last input gives channels_last_3d here.
        gate = torch.tanh(self.gate(self.act(self.norm(moved.transpose(1, 2)))))  # (N, 2, T, H, W)
        half = self.gated // 2
        back, fwd = slice(0, half), slice(half, self.gated)
        gated_back = gate[:, 0].unsqueeze(2) * moved[:, :, back]  # one gate per (t, y, x) for the whole group
        gated_fwd = gate[:, 1].unsqueeze(2) * moved[:, :, fwd]
        # Written into a tensor laid out like x, so a channels_last input stays channels_last.
        out = torch.empty_like(clips)
        out[:, :, back] = moved[:, :, back] - gated_back
        out[:, :-1, back] += gated_back[:, 1:]  # frame t gets frame t + 1's gated part
        out[:, :, fwd] = moved[:, :, fwd] - gated_fwd
        out[:, 1:, fwd] += gated_fwd[:, :-1]  # frame t gets frame t - 1's
        out[:, :, self.gated :] = clips[:, :, self.gated :]
        return out.flatten(0, 1)

    def extra_repr(self) -> str:
        return f"gated_channels={self.gated}, clip_len={self.clip_len}"
