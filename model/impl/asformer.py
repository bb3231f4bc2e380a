"""ASFormer (Yi et al., BMVC 2021): a transformer encoder-decoder for per-frame action segmentation.

The encoder maps per-frame features to logits through ``num_layers`` blocks; block i has a dilated temporal
convolution (dilation 2**i) and self-attention restricted to local windows whose size also grows as 2**i,
so early blocks look near and late blocks far. Each decoder refines the previous stage's class probabilities
with cross-attention: queries and keys from its own features, values from the previous stage's features.
Every stage returns logits, and training puts a loss on each.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def window_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block: int) -> torch.Tensor:
    """Attention of each block of ``block`` frames to a window of 2 * block (block // 2 on each side).

    q, k: (B, Dk, T); v: (B, Dv, T) -> (B, Dv, T). Window positions outside [0, T) are masked out.
    """
    batch, dk, frames = q.shape
    blocks = -(-frames // block)
    padded = blocks * block
    half = block // 2
    window = block + 2 * half
    pad = (half, padded - frames + half)
    keys = F.pad(k, pad).unfold(2, window, block)  # (B, Dk, blocks, window)
    values = F.pad(v, pad).unfold(2, window, block)  # (B, Dv, blocks, window)
    valid = F.pad(torch.ones_like(q[:1, :1]), pad).unfold(2, window, block)  # (1, 1, blocks, window)
    queries = F.pad(q, (0, padded - frames)).reshape(batch, dk, blocks, block)
    scores = torch.einsum("bdnq,bdnk->bnqk", queries, keys) / math.sqrt(dk)
    scores = scores.masked_fill(valid.reshape(1, blocks, 1, window) == 0, float("-inf"))
    out = torch.einsum("bnqk,bdnk->bdnq", scores.softmax(dim=-1), values)
    return out.reshape(batch, -1, padded)[:, :, :frames]


class WindowAttention(nn.Module):
    """Local (windowed) attention; values come from ``memory`` when given (decoder cross-attention)."""

    def __init__(self, dim: int, block: int, reduction: int = 2) -> None:
        super().__init__()
        self.block = block
        self.query = nn.Conv1d(dim, dim // reduction, 1)
        self.key = nn.Conv1d(dim, dim // reduction, 1)
        self.value = nn.Conv1d(dim, dim // reduction, 1)
        self.out = nn.Conv1d(dim // reduction, dim, 1)

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        values = self.value(x if memory is None else memory)
        attended = window_attention(self.query(x), self.key(x), values, self.block)
        return self.out(F.relu(attended))


class AttentionBlock(nn.Module):
    """Dilated convolution, then windowed attention added with weight ``alpha``, then a residual 1x1 conv."""

    def __init__(self, dim: int, dilation: int, alpha: float, dropout: float = 0.5) -> None:
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, 3, padding=dilation, dilation=dilation)
        self.norm = nn.InstanceNorm1d(dim)
        self.attention = WindowAttention(dim, block=dilation)
        self.proj = nn.Conv1d(dim, dim, 1)
        self.dropout = nn.Dropout(dropout)
        self.alpha = alpha

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None) -> torch.Tensor:
        h = F.relu(self.conv(x))
        h = self.alpha * self.attention(self.norm(h), memory) + h
        return x + self.dropout(self.proj(h))


class Stage(nn.Module):
    """Input 1x1 conv, ``num_layers`` attention blocks (dilation 1, 2, 4, ...), output 1x1 conv to logits."""

    def __init__(self, in_dim: int, dim: int, num_outputs: int, num_layers: int, alpha: float) -> None:
        super().__init__()
        self.inp = nn.Conv1d(in_dim, dim, 1)
        self.blocks = nn.ModuleList(AttentionBlock(dim, 2**i, alpha) for i in range(num_layers))
        self.out = nn.Conv1d(dim, num_outputs, 1)

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.inp(x)
        for block in self.blocks:
            h = block(h, memory)
        return self.out(h), h


class ASFormer(nn.Module):
    """Encoder + ``num_decoders`` decoders on (B, T, in_dim) -> logits (B, T, num_outputs) of every stage."""

    def __init__(
        self,
        in_dim: int,
        num_outputs: int,
        dim: int = 64,
        num_layers: int = 5,
        num_decoders: int = 3,
        channel_dropout: float = 0.3,
    ) -> None:
        super().__init__()
        # Dropping whole feature channels of the input regularises against over-reliance on a few of them.
        self.channel_dropout = nn.Dropout1d(channel_dropout)
        self.encoder = Stage(in_dim, dim, num_outputs, num_layers, alpha=1.0)
        # Later decoders lean less on attention (weighted residual), as in the paper.
        self.decoders = nn.ModuleList(
            Stage(num_outputs, dim, num_outputs, num_layers, alpha=math.exp(-s))
            for s in range(1, num_decoders + 1)
        )
        self.feature_dim = dim

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        logits, features = self.encoder(self.channel_dropout(x.transpose(1, 2)))
        stages = [logits]
        for decoder in self.decoders:
            logits, features = decoder(logits.softmax(dim=1), features)
            stages.append(logits)
        return {
            "logits": stages[-1].transpose(1, 2),
            "stage_logits": [s.transpose(1, 2) for s in stages],
            "features": features.transpose(1, 2),
        }
