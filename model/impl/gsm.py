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

from model.impl.tsm import memory_format_of, shift_frames


class GatedShift(nn.Module):
    """Gated temporal shift of ``channels // channel_div`` channels; input and output (batch * clip_len, C, H, W)."""

    def __init__(self, channels: int, clip_len: int, channel_div: int = 4) -> None:
        super().__init__()
        self.clip_len = clip_len
        # An even number of gated channels, split into two groups (one gate each).
        self.gated = max(2, (channels // channel_div) // 2 * 2)
        # Batch norm per channel over (clip, time, y, x): BatchNorm2d over the flattened frames computes exactly
        # BatchNorm3d's statistics, on the 4D layout the backbone already has (several times faster on CPU than
        # on a transposed 5D view); its parameters and state-dict keys are BatchNorm3d's.
        self.norm = nn.BatchNorm2d(self.gated)
        self.act = nn.ReLU()
        self.gate = nn.Conv3d(self.gated, 2, kernel_size=3, padding=1, groups=2)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames, channels = x.shape[:2]
        if frames % self.clip_len:
            raise ValueError(f"GatedShift: {frames} frames is not a whole number of clips of {self.clip_len}")
        layout = memory_format_of(x)
        moved, rest = x.split([self.gated, channels - self.gated], dim=1)
        features = self.act(self.norm(moved))
        # (N, C, T, H, W) for the 3D convolution over the gated channels.
        clips = features.reshape(frames // self.clip_len, self.clip_len, *moved.shape[1:]).transpose(1, 2)
        gate = torch.tanh(self.gate(clips))  # (N, 2, T, H, W)
        gate = gate.transpose(1, 2).reshape(frames, 2, *x.shape[2:])  # (N * T, 2, H, W)
        half = self.gated // 2
        back, fwd = moved.split([half, half], dim=1)
        gated_back = gate[:, :1] * back  # one gate per (t, y, x) for the whole group
        gated_fwd = gate[:, 1:] * fwd
        # Frame t gets frame t + 1's gated part of the first group, frame t - 1's of the second; the residual
        # stays. split + cat keep the backward pass free of full-size zero fills.
        return torch.cat(
            [
                back - gated_back + shift_frames(gated_back, self.clip_len, 1, layout),
                fwd - gated_fwd + shift_frames(gated_fwd, self.clip_len, -1, layout),
                rest,
            ],
            dim=1,
        )

    def extra_repr(self) -> str:
        return f"gated_channels={self.gated}, clip_len={self.clip_len}"
