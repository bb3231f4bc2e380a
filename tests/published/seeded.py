"""Weights generated from a seed, the same on every machine: what stands in for a published checkpoint in the tests.

The published files cannot be downloaded here, so ``make_references.py`` fills the original projects' own models
with these values (by key name and shape, from a manifest of their state dict) and records their outputs; the tests
generate the same values again, write them in the original file format and import them. Every tensor comes from
torch's CPU generator seeded by the CRC-32 of (seed, key name), so a key's values do not depend on the other keys.

Scales keep a random network's activations in a useful range: weights ~ N(0, 1 / fan_in) (class outputs 4x that,
so that the scores are far from uniform), norm weights around 1, running variances in [0.5, 1.5], biases and means
small; gated-shift gates are far from zero, so every shift moves channels.
"""

from __future__ import annotations

import math
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence

import torch

NORM_MODULES = ("bn", "ln", "ln1", "ln2", "gn", "norm", "skip_norm")


def _generator(seed: int, name: str) -> torch.Generator:
    # torch's CPU generator (mt19937) keeps 32 bits of a seed: seed and name are hashed together into them.
    return torch.Generator().manual_seed(zlib.crc32(f"{seed}:{name}".encode()))


def seeded_tensor(name: str, shape: Sequence[int], dtype: str, seed: int) -> torch.Tensor:
    """The value of key ``name`` (its shape and torch dtype name, e.g. "float32")."""
    shape = tuple(int(s) for s in shape)
    if dtype != "float32":  # num_batches_tracked
        return torch.zeros(shape, dtype=getattr(torch, dtype))
    g = _generator(seed, name)
    normal = torch.randn(shape, generator=g)
    parts = name.split(".")
    leaf, module = parts[-1], parts[-2] if len(parts) > 1 else ""
    if leaf == "running_var":
        return 0.5 + torch.rand(shape, generator=g)
    if leaf == "running_mean":
        return 0.1 * normal
    if module in NORM_MODULES:
        return 1.0 + 0.1 * normal if leaf == "weight" else 0.1 * normal
    if leaf == "temp_enc":
        return 0.1 * normal
    if leaf.startswith("bias"):
        return 0.05 * normal
    fan_in = math.prod(shape[1:]) if len(shape) > 1 else 1
    # Class outputs 4x larger: scores far from uniform, so that a wrong feature anywhere shows in them.
    gain = 4.0 if module == "_fc_out" else 1.0
    return gain * normal / math.sqrt(fan_in)


def seeded_state_dict(manifest: Iterable[Sequence], seed: int) -> OrderedDict[str, torch.Tensor]:
    """``[(name, shape, dtype), ...]`` -> a state dict with those keys in that order."""
    return OrderedDict((name, seeded_tensor(name, shape, dtype, seed)) for name, shape, dtype in manifest)


def manifest_of(state: dict[str, torch.Tensor]) -> list[list]:
    """A state dict's ``[(name, shape, dtype), ...]``, for JSON."""
    return [[k, list(v.shape), str(v.dtype).removeprefix("torch.")] for k, v in state.items()]
