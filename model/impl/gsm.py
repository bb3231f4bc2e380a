"""Gated shift (GSM, Sudhakaran et al., CVPR 2020) and its fused form (GSF, Sudhakaran et al., TPAMI 2023).

On the first ``gated`` channels (the rest pass through), a small grouped 3D convolution over (time, height, width)
predicts two gates in [-1, 1] (tanh), one per half of those channels. Each half is split into its gated part
``g * x`` and the residual ``x - g * x``; the gated part of the first half moves one frame back in time (frame t
takes frame t + 1's), of the second half one frame forward (zero fill at the clip edges).

- GSM adds the moved part and the residual.
- GSF ("gate-shift-fuse", ``fuse=True``) mixes them instead: per half, the moved part and the residual are
  averaged over space into two (channel x time) maps, a 3x3 convolution over those two maps and a sigmoid give a
  weight w per channel and frame, and the output is w * moved + (1 - w) * residual.

Each group is gated as a whole: one gate value per (frame, y, x) and group, shared by its channels. The gate
convolution starts at zero, so a freshly inserted GSM is the identity: an ImageNet backbone keeps its features until
training opens the gates (the gradient of the zero-initialised weights is not zero).

How many channels are gated differs between codebases (``model.shift`` holds the rules): this project's first
models gate an even number, (C // 4) rounded down to even; E2E-Spot and T-DEED gate (C // 4) rounded up to a
multiple of 4. Their code also interleaves the two quarters of each half on the way out; that is a fixed channel
permutation, which the importer folds into the next 1x1 convolution (``model.published``), so it costs nothing here.
"""

from __future__ import annotations

import torch
from torch import nn

from model.impl.tsm import memory_format_of, shift_frames


def house_gated_channels(channels: int, channel_div: int = 4) -> int:
    """This project's original rule: an even number, at least 2: (channels // channel_div) rounded down to even."""
    return max(2, (channels // channel_div) // 2 * 2)


def published_gated_channels(channels: int, channel_div: int = 4) -> int:
    """E2E-Spot's and T-DEED's rule: (channels // channel_div) rounded up to a multiple of 4."""
    return max(4, -(-(channels // channel_div) // 4) * 4)


class GatedShift(nn.Module):
    """Gated temporal shift of ``gated`` channels; input and output (batch * clip_len, C, H, W).

    ``gated``: how many channels are gated (even; default :func:`house_gated_channels`); ``fuse``: GSF's fusion of
    the moved and the residual parts instead of their sum.
    """

    def __init__(
        self, channels: int, clip_len: int, channel_div: int = 4, gated: int | None = None, fuse: bool = False
    ) -> None:
        super().__init__()
        self.clip_len = clip_len
        self.gated = gated if gated is not None else house_gated_channels(channels, channel_div)
        if self.gated % 2 or not 2 <= self.gated <= channels:
            raise ValueError(
                f"GatedShift: cannot gate {self.gated} of {channels} channels (an even number needed)"
            )
        # Batch norm per channel over (clip, time, y, x): BatchNorm2d over the flattened frames computes exactly
        # BatchNorm3d's statistics, on the 4D layout the backbone already has (several times faster on CPU than
        # on a transposed 5D view); its parameters and state-dict keys are BatchNorm3d's.
        self.norm = nn.BatchNorm2d(self.gated)
        self.act = nn.ReLU()
        self.gate = nn.Conv3d(self.gated, 2, kernel_size=3, padding=1, groups=2)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)
        # GSF: one 3x3 convolution over the (moved, residual) pair of (channel x time) maps per half.
        self.fuse = nn.ModuleList(nn.Conv2d(2, 1, 3, padding=1) for _ in range(2)) if fuse else None

    def _fused(self, fuse: nn.Module, moved: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """GSF: w * moved + (1 - w) * residual, w from the spatial means of both, per channel and frame."""
        frames, channels = moved.shape[:2]
        means = torch.stack([moved.mean(dim=(2, 3)), residual.mean(dim=(2, 3))], dim=1)  # (N * T, 2, c)
        maps = means.reshape(frames // self.clip_len, self.clip_len, 2, channels).permute(0, 2, 3, 1)
        weight = torch.sigmoid(fuse(maps))  # (N, 1, c, T)
        weight = weight.permute(0, 3, 2, 1).reshape(frames, channels, 1, 1)
        return moved * weight + residual * (1 - weight)

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
        # Frame t gets frame t + 1's gated part of the first group, frame t - 1's of the second.
        shifted_back = shift_frames(gated_back, self.clip_len, 1, layout)
        shifted_fwd = shift_frames(gated_fwd, self.clip_len, -1, layout)
        if self.fuse is None:
            # The residual stays; split + cat keep the backward pass free of full-size zero fills.
            parts = [back - gated_back + shifted_back, fwd - gated_fwd + shifted_fwd]
        else:
            parts = [
                self._fused(self.fuse[0], shifted_back, back - gated_back),
                self._fused(self.fuse[1], shifted_fwd, fwd - gated_fwd),
            ]
        return torch.cat([*parts, rest], dim=1)

    def extra_repr(self) -> str:
        return f"gated_channels={self.gated}, clip_len={self.clip_len}, fuse={self.fuse is not None}"
