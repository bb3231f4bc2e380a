"""Frame-level 2D CNN backbones (torchvision ResNets, timm RegNets), spatially pooled to one vector per frame.

``BACKBONES`` maps every name the CLI accepts (``rn18``, ``rn18_tsm``, ``rny008_gsm``, ...) to a builder; the
names are a base network times an optional temporal shift (``model/shift.py``). ImageNet weights come from
the libraries' own loaders: torchvision's (cached under ``$TORCH_HOME/hub``) and timm's Hugging Face Hub
download (cached under ``$HF_HOME/hub``). Without network and cache, :class:`PretrainedWeightsError` says how
to pre-fetch them or to start from scratch.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import timm
import torch
import torchvision
from torch import nn

from model.shift import DEFAULT_VARIANT, SHIFTS, insert_shift
from util.io import DataError


class PretrainedWeightsError(DataError):
    """ImageNet weights could not be downloaded (offline) and are not cached."""


def _torch_cache() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _hf_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _offline_message(name: str, source: str, cache: Path, env: str, error: Exception) -> str:
    return (
        f"cannot download the ImageNet weights of backbone {name!r} ({source}): {error}. "
        f"Run once with internet access so they are cached in {cache} (set {env} to move that cache), "
        f"or copy that folder from a machine that has them, or pass --no_pretrained to start from scratch."
    )


def _torchvision_resnet(arch: str, weights: str, pretrained: bool, classifier: bool) -> tuple[nn.Module, int]:
    net = getattr(torchvision.models, arch)(weights=None)
    if pretrained:
        url = torchvision.models.get_weight(weights).url
        try:
            state = torch.hub.load_state_dict_from_url(
                url, progress=False, check_hash=True, weights_only=True
            )
        except OSError as e:  # URLError, socket errors
            raise PretrainedWeightsError(_offline_message(arch, url, _torch_cache(), "TORCH_HOME", e)) from e
        net.load_state_dict(state)
    feature_dim = net.fc.in_features
    if not classifier:
        net.fc = nn.Identity()
    return net, feature_dim


def _timm_model(arch: str, pretrained: bool, classifier: bool) -> tuple[nn.Module, int]:
    try:
        net = timm.create_model(arch, pretrained=pretrained, num_classes=1000 if classifier else 0)
    except OSError as e:  # huggingface_hub's LocalEntryNotFoundError, connection errors
        source = f"timm {arch} from the Hugging Face Hub"
        raise PretrainedWeightsError(_offline_message(arch, source, _hf_cache(), "HF_HOME", e)) from e
    return net, net.num_features


# Base networks: (pretrained, imagenet_classifier) -> (module, feature_dim).
BASE_BACKBONES: dict[str, Callable[[bool, bool], tuple[nn.Module, int]]] = {
    "rn18": functools.partial(_torchvision_resnet, "resnet18", "ResNet18_Weights.IMAGENET1K_V1"),
    "rn50": functools.partial(_torchvision_resnet, "resnet50", "ResNet50_Weights.IMAGENET1K_V1"),
    "rny002": functools.partial(_timm_model, "regnety_002"),
    "rny008": functools.partial(_timm_model, "regnety_008"),
}


def build_backbone(
    name: str,
    clip_len: int,
    pretrained: bool = True,
    imagenet_classifier: bool = False,
    variant: str = DEFAULT_VARIANT,
) -> tuple[nn.Module, int]:
    """Backbone ``name`` (e.g. "rny002_gsm") -> (module mapping (N, 3, H, W) to (N, feature_dim), feature_dim).

    ``imagenet_classifier=True`` keeps the 1000-way ImageNet classifier (for counting parameters as the
    libraries publish them); the module then outputs class logits instead of features. ``variant`` says where the
    shifts go and how wide they are (``model.shift.VARIANTS``: this project's, E2E-Spot's or T-DEED's).
    """
    if name not in BACKBONES:
        raise DataError(f"unknown backbone {name!r}; valid: {', '.join(BACKBONES)}")
    base, _, shift = name.partition("_")
    net, feature_dim = BASE_BACKBONES[base](pretrained, imagenet_classifier)
    if shift:
        insert_shift(net, shift, clip_len, variant)
    return net, feature_dim


def _backbone_names() -> list[str]:
    return [base + suffix for base in BASE_BACKBONES for suffix in ["", *(f"_{s}" for s in SHIFTS)]]


# Every accepted name -> builder (clip_len, pretrained, imagenet_classifier) -> (module, feature_dim).
BACKBONES: dict[str, Callable[..., tuple[nn.Module, int]]] = {
    name: functools.partial(build_backbone, name) for name in _backbone_names()
}
