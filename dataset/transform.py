"""Batched clip augmentation and mixup, on whatever device the batch is on (the GPU when there is one).

DataLoader workers only decode JPEGs; a batch of uint8 clips ``(B, T, H, W, 3)`` then goes to the device, where
``to_clips`` makes it ``(B, T, 3, H, W)`` float in [0, 1] and ``ClipAugment`` applies, per clip (every frame of a
clip gets the same draw): random crop, horizontal flip, colour jitter (hue, saturation, brightness, contrast) and
Gaussian blur. All random draws come from a CPU ``torch.Generator``, so a seeded run is the same on any device.
Every decision (which clips a transform applies to) is taken on those CPU draws, and what the device needs
of them (indices, factors, the hue matrices) goes to it with ``non_blocking``: augmentation never reads a
value back from the device, which would stall the host until the GPU has caught up (a sync).
``mixup_clips`` mixes each clip with its neighbour in the batch and mixes the targets into soft targets.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# The gray that saturation and contrast blend with: torchvision's rgb_to_grayscale weights (BT.601's, with red's
# 0.299 written 0.2989), so the jitter is torchvision's adjust_saturation / adjust_contrast to rounding.
_LUMA = (0.2989, 0.587, 0.114)
MIXUP_ALPHA = 0.2


def to_clips(frames: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 ``(B, T, H, W, 3)`` -> float ``(B, T, 3, H, W)`` in [0, 1] on ``device``."""
    if device is not None:
        frames = frames.to(device, non_blocking=True)
    return frames.permute(0, 1, 4, 2, 3).float().div_(255.0)


def center_crop(clips: torch.Tensor, crop_hw: tuple[int, int] | None) -> torch.Tensor:
    """Deterministic centre crop of ``(..., H, W)`` to ``crop_hw`` (None: unchanged)."""
    if crop_hw is None:
        return clips
    height, width = clips.shape[-2:]
    crop_h, crop_w = min(crop_hw[0], height), min(crop_hw[1], width)
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return clips[..., top : top + crop_h, left : left + crop_w]


def _gray(clips: torch.Tensor) -> torch.Tensor:
    r, g, b = clips.unbind(dim=-3)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(-3)


_TO_YIQ = ((0.299, 0.587, 0.114), (0.596, -0.274, -0.322), (0.211, -0.523, 0.312))


@functools.cache
def _yiq(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB -> YIQ and its inverse, on the CPU in ``dtype`` (float32 for the half types, which the CPU does not
    invert): computed once per dtype."""
    if dtype not in (torch.float32, torch.float64):
        dtype = torch.float32
    to_yiq = torch.tensor(_TO_YIQ, dtype=dtype)
    return to_yiq, torch.linalg.inv(to_yiq)


def _hue_matrices(angle: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(n, 3, 3) RGB matrices that rotate hue by ``angle`` (n,) radians: a rotation of the chroma plane in YIQ
    space. Computed on the CPU, where the angles were drawn."""
    to_yiq, from_yiq = _yiq(dtype)
    angle = angle.to(to_yiq.dtype)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(len(angle), 3, 3, dtype=to_yiq.dtype)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2], rot[:, 2, 1], rot[:, 2, 2] = cos, -sin, sin, cos
    return from_yiq @ rot @ to_yiq


def _rotate_hue(clips: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply one hue rotation ``matrix`` (n, 3, 3) (:func:`_hue_matrices`) to each clip."""
    out = torch.einsum("nij,ntjhw->ntihw", matrix, clips)
    return out.clamp_(0, 1)


def _to(values: torch.Tensor, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A CPU tensor of draws (or of what was computed from them) on ``device``, not waiting for the device."""
    return values.to(device, dtype, non_blocking=True)


def _blur(clips: torch.Tensor, sigma: torch.Tensor, kernel_size: int = 5) -> torch.Tensor:
    """Separable Gaussian blur, one sigma per clip, reflect padding."""
    n, t, c, h, w = clips.shape
    half = kernel_size // 2
    x = torch.arange(kernel_size, device=clips.device, dtype=clips.dtype) - half
    kernel = torch.exp(-(x[None] ** 2) / (2 * sigma[:, None] ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (n, k)
    weight = kernel.repeat_interleave(t * c, dim=0)  # (n*t*c, k)
    flat = clips.reshape(1, n * t * c, h, w)
    flat = F.pad(flat, (half, half, half, half), mode="reflect")
    flat = F.conv2d(flat, weight[:, None, None, :], groups=n * t * c)
    flat = F.conv2d(flat, weight[:, None, :, None], groups=n * t * c)
    return flat.reshape(n, t, c, h, w)


@dataclass
class ClipAugment:
    """Training augmentation of float clips ``(B, T, 3, H, W)``; each transform applies to a clip with its
    probability, with the same parameters on every frame of the clip (E2E-Spot's choice of ranges)."""

    crop_hw: tuple[int, int] | None = None
    flip_p: float = 0.5
    jitter_p: float = 0.25
    hue: float = 0.2  # fraction of a full turn, either way
    saturation: tuple[float, float] = (0.7, 1.2)
    brightness: tuple[float, float] = (0.7, 1.2)
    contrast: tuple[float, float] = (0.7, 1.2)
    blur_p: float = 0.25
    blur_sigma: tuple[float, float] = (0.1, 2.0)

    def __call__(self, clips: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment; returns the clips and a (B,) bool tensor of which clips were flipped horizontally
        (their left/right team targets must be swapped)."""
        original = clips
        clips = self._crop(clips, generator)
        n = clips.shape[0]
        flipped_cpu = torch.rand(n, generator=generator) < self.flip_p
        flipped = _to(flipped_cpu, clips.device)
        if flipped_cpu.any():
            clips = torch.where(flipped[:, None, None, None, None], clips.flip(-1), clips)

        def pick(p: float) -> torch.Tensor:
            return torch.rand(n, generator=generator) < p

        def uniform(lo: float, hi: float) -> torch.Tensor:
            return lo + (hi - lo) * torch.rand(n, generator=generator)

        # Draw every parameter whether used or not, so the stream of draws does not depend on the data.
        draws = [(pick(self.jitter_p), uniform(-self.hue, self.hue))]
        draws += [
            (pick(self.jitter_p), uniform(*r)) for r in (self.saturation, self.brightness, self.contrast)
        ]
        blur = (pick(self.blur_p), uniform(*self.blur_sigma))
        device, dtype = clips.device, clips.dtype
        if clips is original:  # the jitter below writes in place; leave the caller's tensor alone
            clips = clips.clone()
        (hue_on, hue), (sat_on, sat), (bri_on, bri), (con_on, con) = draws
        # The draws are CPU tensors: any() and nonzero() read them where they are, never the device.
        if hue_on.any():
            idx = _to(hue_on.nonzero().squeeze(1), device)
            matrix = _hue_matrices(hue[hue_on] * 2 * math.pi, dtype)
            clips[idx] = _rotate_hue(clips[idx], _to(matrix, device, dtype))
        for on, factor, op in ((sat_on, sat, "sat"), (bri_on, bri, "bri"), (con_on, con, "con")):
            if on.any():
                idx = _to(on.nonzero().squeeze(1), device)
                f = _to(factor[on], device, dtype)[:, None, None, None, None]
                clips[idx] = _adjust(clips[idx], f, op)
        if blur[0].any():
            idx = _to(blur[0].nonzero().squeeze(1), device)
            clips[idx] = _blur(clips[idx], _to(blur[1][blur[0]], device, dtype))
        return clips, flipped

    def _crop(self, clips: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.crop_hw is None:
            return clips
        height, width = clips.shape[-2:]
        crop_h, crop_w = min(self.crop_hw[0], height), min(self.crop_hw[1], width)
        tops = torch.randint(0, height - crop_h + 1, (clips.shape[0],), generator=generator).tolist()
        lefts = torch.randint(0, width - crop_w + 1, (clips.shape[0],), generator=generator).tolist()
        return torch.stack(
            [
                c[..., t : t + crop_h, left : left + crop_w]
                for c, t, left in zip(clips, tops, lefts, strict=True)
            ]
        )


def _adjust(clips: torch.Tensor, factor: torch.Tensor, op: str) -> torch.Tensor:
    """Saturation / brightness / contrast as torchvision defines them (blend with gray, black, mean gray)."""
    if op == "bri":
        return (clips * factor).clamp_(0, 1)
    gray = _gray(clips)
    if op == "sat":
        return (gray + factor * (clips - gray)).clamp_(0, 1)
    mean = gray.mean(dim=(-3, -2, -1), keepdim=True)  # per frame
    return (mean + factor * (clips - mean)).clamp_(0, 1)


def swap_team(team: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
    """Left/right team targets of horizontally flipped clips swap (right = 1 becomes left = 0)."""
    return torch.where(flipped[:, None], 1.0 - team, team)


def swap_team_classes(targets: torch.Tensor, flipped: torch.Tensor) -> torch.Tensor:
    """Team-as-classes targets (B, T, 2C + 1: background, (class, left) x C, (class, right) x C) of horizontally
    flipped clips: their left and right halves swap."""
    num_classes = (targets.shape[-1] - 1) // 2
    swapped = torch.cat(
        [targets[..., :1], targets[..., 1 + num_classes :], targets[..., 1 : 1 + num_classes]], -1
    )
    return torch.where(flipped[:, None, None], swapped, targets)


def frame_targets(
    labels: torch.Tensor,
    team: torch.Tensor,
    team_mask: torch.Tensor,
    flipped: torch.Tensor | None,
    num_classes: int,
    team_classes: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch's per-frame class targets and team targets, both of the clips as augmented (``flipped``: (B,) bool,
    None = no flip): one-hot (B, T, C + 1) from ``labels`` (B, T) (0 = background); with ``team_classes``
    (B, T, 2C + 1), each event in the half of its team, (class, left) then (class, right), an event of unknown
    team (``team_mask`` 0) split evenly between them."""
    if flipped is not None:
        team = swap_team(team, flipped)
    one_hot = F.one_hot(labels, num_classes + 1).float()
    if not team_classes:
        return one_hot, team
    right = torch.where(team_mask > 0, team, 0.5).unsqueeze(-1).to(one_hot.dtype)
    events = one_hot[..., 1:]
    return torch.cat([one_hot[..., :1], events * (1.0 - right), events * right], -1), team


def mixup_clips(
    clips: torch.Tensor,
    targets: torch.Tensor,
    team: torch.Tensor,
    team_mask: torch.Tensor,
    generator: torch.Generator,
    alpha: float = MIXUP_ALPHA,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mix clip i with clip i+1 of the batch (cyclically) with weight lambda ~ Beta(alpha, alpha).

    ``targets`` (B, T, C+1) are probabilities (one-hot or already soft) and are mixed with the same weights, so
    each frame's target still sums to 1. The team target becomes the weighted mean of the two clips' known teams
    and its mask the total weight of the clips that know it; ``team`` and ``team_mask`` may carry trailing
    dimensions (B, T, ...), several masked targets mixed alike (training stacks the displacement there).
    """
    n = clips.shape[0]
    if n < 2:
        return clips, targets, team, team_mask
    lam = _to(_beta(alpha, n, generator), clips.device, clips.dtype)
    other = torch.roll(torch.arange(n, device=clips.device), -1)
    lam_c = lam[:, None, None, None, None]
    clips = lam_c * clips + (1 - lam_c) * clips[other]
    lam_t = lam[:, None, None].to(targets.dtype)
    targets = lam_t * targets + (1 - lam_t) * targets[other]
    lam_m = lam.view(-1, *([1] * (team.dim() - 1))).to(team.dtype)
    weight_a = lam_m * team_mask
    weight_b = (1 - lam_m) * team_mask[other]
    mask = weight_a + weight_b
    team = torch.where(mask > 0, (weight_a * team + weight_b * team[other]) / mask.clamp_min(1e-12), 0.0)
    return clips, targets, team, mask


def _beta(alpha: float, n: int, generator: torch.Generator) -> torch.Tensor:
    """Beta(alpha, alpha) samples from a seeded generator (torch.distributions takes no generator)."""
    # Johnk's method: with X = U^(1/alpha), Y = V^(1/alpha), X / (X + Y) given X + Y <= 1 is Beta(alpha, alpha).
    out = torch.empty(n, dtype=torch.float64)
    filled = 0
    while filled < n:
        u = torch.rand(4 * n, generator=generator, dtype=torch.float64)
        v = torch.rand(4 * n, generator=generator, dtype=torch.float64)
        x, y = u.pow(1 / alpha), v.pow(1 / alpha)
        ok = (x + y <= 1) & (x + y > 0)
        take = (x[ok] / (x[ok] + y[ok]))[: n - filled]
        out[filled : filled + len(take)] = take
        filled += len(take)
    return out.float()
