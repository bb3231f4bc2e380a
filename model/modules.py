"""Temporal heads: per-frame features (B, T, D) -> per-frame logits (B, T, num_outputs).

Every head returns a dict: "logits" (B, T, num_outputs); "features" (B, T, head.feature_dim), the per-frame
representation the logits are read from (extra outputs such as the team head read it too); and, for
multi-stage heads (mstcn, asformer), "stage_logits": the logits of every stage, last = "logits", so training
can put a loss on each stage. ``HEADS`` maps a name to its builder ``(in_dim, num_outputs) -> module``.

Heads: ``gru``, ``deeper_gru`` (3 layers), ``mstcn`` (MS-TCN), ``asformer`` (:mod:`model.impl.asformer`), ``fc``
(per-frame linear) and ``tdeed`` (T-DEED's SGP encoder-decoder, :mod:`model.impl.tdeed`).

MS-TCN's smoothing loss (:func:`smoothing_loss`, weight ``SMOOTHING_WEIGHT`` in the paper) penalises
frame-to-frame jumps of the log-probabilities; training adds it for every stage of a multi-stage head.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from model.impl.asformer import ASFormer
from model.impl.tdeed import TDEEDHead

MAX_GRU_HIDDEN = 768
# MS-TCN (Farha & Gall, CVPR 2019): truncation tau and weight lambda of the smoothing loss.
SMOOTHING_TAU = 4.0
SMOOTHING_WEIGHT = 0.15


def smoothing_loss(logits: torch.Tensor, tau: float = SMOOTHING_TAU) -> torch.Tensor:
    """Truncated MSE between log-probabilities of consecutive frames of (B, T, C) logits (MS-TCN eq. 6).

    The earlier frame is detached, as in the paper, so each frame is pulled towards its predecessor.
    """
    if logits.shape[1] < 2:
        return logits.sum() * 0
    log_probs = F.log_softmax(logits.float(), dim=-1)
    jumps = log_probs[:, 1:] - log_probs[:, :-1].detach()
    return jumps.square().clamp(max=tau * tau).mean()


class FCHead(nn.Module):
    """Per-frame linear classifier: no temporal context beyond what the backbone's shift gives."""

    def __init__(self, in_dim: int, num_outputs: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_dim, num_outputs)
        self.feature_dim = in_dim

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.dropout(x)
        return {"logits": self.fc(x), "features": x}


class GRUHead(nn.Module):
    """Bidirectional GRU (hidden size = input size, at most 768) then a per-frame linear classifier."""

    def __init__(self, in_dim: int, num_outputs: int, num_layers: int = 1, dropout: float = 0.5) -> None:
        super().__init__()
        hidden = min(in_dim, MAX_GRU_HIDDEN)
        self.gru = nn.GRU(in_dim, hidden, num_layers=num_layers, batch_first=True, bidirectional=True)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * hidden, num_outputs)
        self.feature_dim = 2 * hidden

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.dropout(self.gru(x)[0])
        return {"logits": self.fc(features), "features": features}


class DilatedResidual(nn.Module):
    """MS-TCN layer: dilated 3-tap conv, ReLU, 1x1 conv, dropout, residual."""

    def __init__(self, dim: int, dilation: int, dropout: float = 0.5) -> None:
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, 3, padding=dilation, dilation=dilation)
        self.proj = nn.Conv1d(dim, dim, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.proj(F.relu(self.conv(x))))


class TCNStage(nn.Module):
    """One MS-TCN stage on (B, in_dim, T): 1x1 conv, dilated residual layers (1, 2, 4, ...), 1x1 conv."""

    def __init__(self, in_dim: int, dim: int, num_outputs: int, num_layers: int) -> None:
        super().__init__()
        self.inp = nn.Conv1d(in_dim, dim, 1)
        self.layers = nn.Sequential(*(DilatedResidual(dim, 2**i) for i in range(num_layers)))
        self.out = nn.Conv1d(dim, num_outputs, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.layers(self.inp(x))
        return self.out(h), h


class MSTCNHead(nn.Module):
    """Multi-stage TCN: the first stage reads features, each next stage refines the previous probabilities."""

    def __init__(
        self, in_dim: int, num_outputs: int, num_stages: int = 3, num_layers: int = 5, dim: int = 256
    ) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            TCNStage(in_dim if s == 0 else num_outputs, dim, num_outputs, num_layers)
            for s in range(num_stages)
        )
        self.feature_dim = dim

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        h = x.transpose(1, 2)
        stage_logits = []
        for i, stage in enumerate(self.stages):
            logits, features = stage(h if i == 0 else stage_logits[-1].softmax(dim=1))
            stage_logits.append(logits)
        stage_logits = [s.transpose(1, 2) for s in stage_logits]
        return {
            "logits": stage_logits[-1],
            "stage_logits": stage_logits,
            "features": features.transpose(1, 2),
        }


HEADS: dict[str, Callable[[int, int], nn.Module]] = {
    "gru": GRUHead,
    "deeper_gru": lambda in_dim, num_outputs: GRUHead(in_dim, num_outputs, num_layers=3),
    "mstcn": MSTCNHead,
    "asformer": ASFormer,
    "fc": FCHead,
    "tdeed": TDEEDHead,
}
