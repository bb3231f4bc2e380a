"""T-DEED's temporal part (Xarles et al., CVPRW 2024): an encoder-decoder of SGP layers over per-frame features.

SGP (Scalable-Granularity Perception, from TriDet, Shi et al. CVPR 2023) mixes frames without attention. On
layer-normed features it adds two branches to the input:
- instant level: each frame's features scaled per channel, times a per-channel gate computed from the clip's
  mean feature (so every frame is compared with the clip as a whole);
- window level: two depthwise temporal convolutions at two granularities, kernel k and a wider one of about
  r * (k + 1) frames, summed and gated by a third depthwise convolution of kernel k;
then a 4x MLP behind a group norm, both with residuals.

The encoder runs an SGP layer at each of ``levels`` resolutions and halves the frame rate after it (max pooling
by 2), a bottleneck SGP layer runs at the coarsest one, and the decoder goes back up: at each level T-DEED's
SGP-Mixer upsamples the coarser sequence (linear interpolation) and merges it with the encoder's output at that
level (the skip connection), then an SGP layer follows. The SGP-Mixer runs SGP's two branches on each of its two
inputs and concatenates the four results with both inputs, a per-frame linear layer and GELU bring the six
back to ``dim`` channels, then comes the MLP: T-DEED's SGP-Mixer as its code has it, not a simplification. A per-frame linear classifier (behind dropout) reads the decoder's output.

Defaults are T-DEED's SoccerNet-Ball configuration: 2 levels, kernel 9, r = 4 (wide kernel 41), width = the
backbone's feature width (368 for RegNet-Y 200MF, 768 for 800MF). Where this head differs from T-DEED's code:
- any clip length T >= 1: each level runs at its exact length ceil(T / 2**level) (a last odd frame is pooled
  alone, the upsampled sequence is cropped to the skip's length). This is what padding to a multiple of
  2**levels and cropping back computes when the padding is masked out of every norm, mean and pooling, without
  a mask to carry; T-DEED's code pools and upsamples to sizes fixed by its training clip length;
- upsampling interpolates on the half-frame grid (align_corners=False), so it does not depend on T;
- no learned positional encoding (T-DEED adds a clip_len x D table to the features: this head has no fixed
  clip length) and no displacement output (this project has no displacement target);
- inputs wider than ``MAX_DIM`` are first projected to ``MAX_DIM`` by a per-frame linear layer (T-DEED only used
  RegNet-Y widths; a ResNet-50's 2048 would make the MLPs 16x larger);
- features stay (B, T, C), so T-DEED's 1x1 convolutions are per-frame linear layers (same parameters; CPU
  PyTorch runs them much faster).

``exact=True`` (a model of ``arch_variant`` "tdeed", e.g. an imported T-DEED or sn-teamspotting checkpoint) computes
what T-DEED's code computes on its clips: a learned positional table of ``clip_len`` rows added to the features
first (``positional``; a shorter clip takes its first rows), pooling by adaptive max pooling to ceil(T / 2), and
upsampling by linear interpolation with aligned corners to the skip's length. At T = ``clip_len`` these are T-DEED's
fixed pool and upsample sizes; a longer clip than ``clip_len`` is refused.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MAX_DIM = 768
INIT_STD = 0.1  # T-DEED's (and TriDet's) initialisation of the branch convolutions


def wide_kernel(kernel_size: int, r: float) -> int:
    """The wider window's kernel: about r * (kernel_size + 1), made odd (kernel 9, r = 4 -> 41)."""
    return round((kernel_size + 1) * r) | 1


def depthwise(dim: int, kernel_size: int) -> nn.Conv1d:
    """A per-channel temporal convolution on (B, C, T) that keeps the length (odd kernel, zero padding)."""
    conv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
    nn.init.normal_(conv.weight, std=INIT_STD)
    nn.init.zeros_(conv.bias)
    return conv


def halve(x: torch.Tensor) -> torch.Tensor:
    """(B, T, C) -> (B, ceil(T / 2), C) by max pooling pairs of frames; an odd last frame is pooled alone."""
    return F.max_pool1d(x.transpose(1, 2), 2, ceil_mode=True).transpose(1, 2)


def upsample(x: torch.Tensor, length: int) -> torch.Tensor:
    """(B, L, C) -> (B, length, C), length in {2L - 1, 2L}: linear interpolation by 2, cropped."""
    up = F.interpolate(x.transpose(1, 2), scale_factor=2.0, mode="linear", align_corners=False)
    return up[..., :length].transpose(1, 2)


def halve_exact(x: torch.Tensor) -> torch.Tensor:
    """T-DEED's pooling: (B, T, C) -> (B, ceil(T / 2), C) by adaptive max pooling."""
    return F.adaptive_max_pool1d(x.transpose(1, 2), -(-x.shape[1] // 2)).transpose(1, 2)


def upsample_exact(x: torch.Tensor, length: int) -> torch.Tensor:
    """T-DEED's upsampling: (B, L, C) -> (B, length, C), linear interpolation with aligned corners."""
    return F.interpolate(x.transpose(1, 2), size=length, mode="linear", align_corners=True).transpose(1, 2)


class ChannelScale(nn.Module):
    """weight * x + bias per channel: T-DEED's 1x1 depthwise convolution, written out (PyTorch's CPU convolution
    runs a 1x1 grouped one group by group, ~100x slower)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dim) * INIT_STD)
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight + self.bias


class Granularities(nn.Module):
    """SGP's instant-level and window-level branches on normalised (B, T, C) features."""

    def __init__(self, dim: int, kernel_size: int, r: float) -> None:
        super().__init__()
        self.scale = ChannelScale(dim)  # each frame's features, scaled per channel
        self.context = ChannelScale(dim)  # their gate, from the clip's mean feature
        self.narrow = depthwise(dim, kernel_size)
        self.wide = depthwise(dim, wide_kernel(kernel_size, r))
        self.gate = depthwise(dim, kernel_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        instant = self.scale(x) * F.relu(self.context(x.mean(dim=1, keepdim=True)))
        channels_first = x.transpose(1, 2)
        window = (self.narrow(channels_first) + self.wide(channels_first)) * self.gate(channels_first)
        return instant, window.transpose(1, 2)


class TimeGroupNorm(nn.GroupNorm):
    """GroupNorm of (B, T, C): statistics per sample over the frames and the channels of each group."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class FeedForward(nn.Sequential):
    """Group norm (16 groups when the width allows), then a per-frame 4x MLP with GELU."""

    def __init__(self, dim: int, expansion: int = 4) -> None:
        super().__init__(
            TimeGroupNorm(math.gcd(16, dim), dim),
            nn.Linear(dim, expansion * dim),
            nn.GELU(),
            nn.Linear(expansion * dim, dim),
        )


class SGPLayer(nn.Module):
    """x + norm(x) + instant + window, then + MLP: a length-preserving layer on (B, T, C)."""

    def __init__(self, dim: int, kernel_size: int, r: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.branches = Granularities(dim, kernel_size, r)
        self.mlp = FeedForward(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        instant, window = self.branches(h)
        x = x + h + instant + window
        return x + self.mlp(x)


class SGPMixer(nn.Module):
    """Decoder merge: a coarse (B, L, C) sequence and the encoder's (B, T, C) skip -> (B, T, C)."""

    def __init__(self, dim: int, kernel_size: int, r: float, exact: bool = False) -> None:
        super().__init__()
        self.upsample = upsample_exact if exact else upsample
        self.norm = nn.LayerNorm(dim)
        self.skip_norm = nn.LayerNorm(dim)
        self.branches = Granularities(dim, kernel_size, r)
        self.skip_branches = Granularities(dim, kernel_size, r)
        self.merge = nn.Linear(6 * dim, dim)
        nn.init.normal_(self.merge.weight, std=INIT_STD)
        nn.init.zeros_(self.merge.bias)
        self.mlp = FeedForward(dim)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        skip = self.skip_norm(skip)
        x = self.upsample(self.norm(x), skip.shape[1])
        parts = [*self.branches(x), *self.skip_branches(skip), x, skip]
        out = F.gelu(self.merge(torch.cat(parts, dim=-1)))
        return out + self.mlp(out)


class TDEEDHead(nn.Module):
    """(B, T, in_dim) -> encoder (``levels`` halvings) -> bottleneck -> decoder with skips -> per-frame logits."""

    def __init__(
        self,
        in_dim: int,
        num_outputs: int,
        levels: int = 2,
        kernel_size: int = 9,
        r: float = 4.0,
        dim: int | None = None,
        dropout: float = 0.5,
        clip_len: int | None = None,
        exact: bool = False,
    ) -> None:
        super().__init__()
        if exact and not clip_len:
            raise ValueError("TDEEDHead(exact=True) needs the clip length of its positional table")
        dim = dim or min(in_dim, MAX_DIM)
        self.clip_len = clip_len
        # T-DEED's learned positional table, initialised as T-DEED does: N(0, (1 / clip_len)^2).
        self.positional = nn.Parameter(torch.randn(clip_len, in_dim) / clip_len) if exact else None
        self.halve = halve_exact if exact else halve
        self.proj = nn.Identity() if dim == in_dim else nn.Linear(in_dim, dim)
        self.encoder = nn.ModuleList(SGPLayer(dim, kernel_size, r) for _ in range(levels))
        self.bottleneck = SGPLayer(dim, kernel_size, r)
        # mixers[i] and decoder[i] work at the resolution of encoder[i].
        self.mixers = nn.ModuleList(SGPMixer(dim, kernel_size, r, exact) for _ in range(levels))
        self.decoder = nn.ModuleList(SGPLayer(dim, kernel_size, r) for _ in range(levels))
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, num_outputs)
        self.feature_dim = dim

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.positional is not None:
            if x.shape[1] > self.clip_len:
                raise ValueError(
                    f"TDEEDHead: {x.shape[1]} frames is more than its clip length {self.clip_len}"
                )
            x = x + self.positional[: x.shape[1]]
        h = self.proj(x)
        skips = []
        for layer in self.encoder:
            h = layer(h)
            skips.append(h)
            h = self.halve(h)
        h = self.bottleneck(h)
        for level in reversed(range(len(skips))):
            h = self.decoder[level](self.mixers[level](h, skips[level]))
        features = self.dropout(h)
        return {"logits": self.fc(features), "features": features}
