"""The training objective: per-frame class loss (weighted cross-entropy or focal), MS-TCN smoothing, the team and
displacement terms; the learning-rate schedule; and the EMA of the weights."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from model.common import SMOOTHING_WEIGHT, smoothing_loss, unwrap_model


def focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, weight: torch.Tensor, gamma: float
) -> torch.Tensor:
    """Focal loss against target distributions: the mean over rows of -sum_c w_c t_c (1 - p_c)^gamma log p_c
    (``logits`` and ``targets`` (N, C)); gamma 0 is ``F.cross_entropy`` with the same weights."""
    log_p = F.log_softmax(logits, dim=-1)
    focus = (1.0 - log_p.exp()).pow(gamma)
    return -(weight * targets * focus * log_p).sum(dim=-1).mean()


def spot_loss(
    output: dict,
    targets: torch.Tensor,
    class_weights: torch.Tensor,
    team: torch.Tensor | None = None,
    team_mask: torch.Tensor | None = None,
    focal_gamma: float | None = None,
    displacement: torch.Tensor | None = None,
    displacement_mask: torch.Tensor | None = None,
    displacement_radius: int = 1,
) -> torch.Tensor:
    """Weighted cross-entropy (or focal loss with ``focal_gamma``) on every stage against per-frame target
    distributions (B, T, C+1), MS-TCN smoothing for multi-stage heads, the team loss at frames with a known
    team (``team_mask``), and T-DEED's displacement loss (:func:`displacement_loss`) at frames within
    ``displacement_radius`` of an event (``displacement_mask``)."""
    stages = output.get("stage_logits") or [output["logits"]]
    loss = targets.new_zeros(())
    for logits in stages:
        loss = loss + class_loss(logits, targets, class_weights, focal_gamma)
        if len(stages) > 1:
            loss = loss + SMOOTHING_WEIGHT * smoothing_loss(logits)
    if team is not None and "team" in output:
        bce = F.binary_cross_entropy_with_logits(output["team"].float(), team, reduction="none")
        loss = loss + (bce * team_mask).sum() / team_mask.sum().clamp_min(1.0)
    if displacement is not None and "displacement" in output:
        loss = loss + displacement_loss(
            output["displacement"], displacement, displacement_mask, displacement_radius
        )
    return loss


def class_loss(
    logits: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor, focal_gamma: float | None = None
) -> torch.Tensor:
    """Weighted cross-entropy (or focal loss with ``focal_gamma``) of (B, T, K) logits against per-frame target
    distributions of the same shape."""
    num_outputs = targets.shape[-1]
    flat, flat_targets = logits.float().reshape(-1, num_outputs), targets.reshape(-1, num_outputs)
    if focal_gamma is None:
        return F.cross_entropy(flat, flat_targets, weight=class_weights)
    return focal_loss(flat, flat_targets, class_weights, focal_gamma)


def joint_loss(
    output: dict,
    targets: torch.Tensor,
    class_weights: torch.Tensor,
    joint_targets: torch.Tensor,
    joint_weights: torch.Tensor,
    joint_weight: float = 1.0,
    **extras,
) -> torch.Tensor:
    """The loss of a joint batch (``--joint``): its first ``len(targets)`` clips are the first dataset's, with
    every term of :func:`spot_loss` (``extras``: team, displacement, focal) on the first head's outputs; the rest
    are the second dataset's, with the class loss of the second head ("joint_logits") against ``joint_targets``,
    weighted ``joint_weight``."""
    rows = targets.shape[0]
    first = {
        k: [s[:rows] for s in v] if isinstance(v, list) else v[:rows]
        for k, v in output.items()
        if k != "joint_logits"
    }
    second = class_loss(
        output["joint_logits"][rows:], joint_targets, joint_weights, extras.get("focal_gamma")
    )
    return spot_loss(first, targets, class_weights, **extras) + joint_weight * second


def displacement_loss(
    predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, radius: int
) -> torch.Tensor:
    """Mean squared error of the displacement (frames) at the frames within ``radius`` of an event (``mask``),
    in units of the radius (targets in [-1, 1]), so the term weighs the same at any radius."""
    error = ((predicted.float() - target) / radius) ** 2
    return (error * mask).sum() / mask.sum().clamp_min(1.0)


def lr_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up from 1% to 100% over ``warmup_steps``, then cosine decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return 0.01 + 0.99 * step / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


class Ema:
    """Exponential moving average of a model's weights (buffers are copied as they are).

    The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` after n updates, so the average does not stay
    anchored to the random initial weights in a short run.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.updates = 0
        self.model = copy.deepcopy(unwrap_model(model)).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        source = unwrap_model(model)
        for ema_p, p in zip(self.model.parameters(), source.parameters(), strict=True):
            ema_p.lerp_(p.detach(), 1.0 - decay)
        for ema_b, b in zip(self.model.buffers(), source.buffers(), strict=True):
            ema_b.copy_(b)
