"""Reading what a project publishes: the formats table, a folder, a checkpoint file or ``hf://OWNER/REPO``, its
config, and which format its key names are."""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from util.io import DataError, load_json

HF_PREFIX = "hf://"
WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".tar")


@dataclass(frozen=True)
class Format:
    """One publisher's checkpoint format: who made it, where it is published, under which licence."""

    name: str
    project: str
    code: str
    weights: str
    licence: str
    container: str
    needs_config: bool


FORMATS: dict[str, Format] = {
    "e2e-spot": Format(
        "e2e-spot",
        "E2E-Spot (Hong et al., ECCV 2022)",
        "github.com/jhong93/spot",
        "github.com/jhong93/e2e-spot-models: a folder per model, config.json + checkpoint_NNN.pt",
        "BSD-3-Clause (the code's; the model repository states none)",
        "a folder with config.json and checkpoint_NNN.pt (a bare state dict)",
        False,
    ),
    "opensportslib": Format(
        "opensportslib",
        "OpenSportsLib (OpenSportsLab), E2E-Spot's model",
        "github.com/OpenSportsLab/opensportslib",
        "Hugging Face Hub OpenSportsLab/OSL-loc-snbas-2025-e2e (12 classes), OSL-loc-snbas-2023-e2e (2 classes)",
        "AGPL-3.0 (model card)",
        "a trainer dict .pt (model_state_dict with backbone./head. keys) and its config.yaml, or hf://OWNER/REPO",
        True,
    ),
    "tdeed": Format(
        "tdeed",
        "T-DEED (Xarles et al., CVPRW 2024), 1st in the SoccerNet Ball Action Spotting Challenge 2024",
        "github.com/arturxe2/T-DEED",
        "the Google Drive folder linked from T-DEED's README (checkpoints/SoccerNetBall/<name>/checkpoint_best.pt)",
        "GPL-3.0 (the repository's)",
        "checkpoint_best.pt (a bare state dict) and its config JSON (config/SoccerNetBall/*.json)",
        True,
    ),
    "sn-teamspotting": Format(
        "sn-teamspotting",
        "sn-teamspotting: T-DEED with a team head, the SoccerNet Team Ball Action Spotting 2025 baseline",
        "github.com/SoccerNet/sn-teamspotting",
        "the Google Drive folder linked from sn-teamspotting's README",
        "GPL-3.0 (the repository's)",
        "checkpoint_best.pt (a bare state dict) and config/SoccerNetBall/SoccerNetBall_baseline.json",
        True,
    ),
}


@dataclass
class Source:
    """What was read: the weights file, the state dict in it (prefixes stripped), the original config."""

    weights_file: Path
    state: dict[str, torch.Tensor]
    original_config: dict[str, Any] | None
    config_file: Path | None
    container: dict[str, Any] = field(default_factory=dict)  # the trainer dict's other entries (epoch, ...)
    fps: float | None = None  # --fps: the frame rate, where the original config does not say it


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _torch_load(path: Path) -> Any:
    """torch.load with weights_only=True (numpy scalars in a trainer dict allowed); DataError naming the file."""
    import pickle

    import numpy as np

    safe = [np.dtype, type(np.dtype(np.float64)), type(np.dtype(np.float32)), type(np.dtype(np.int64))]
    scalar = getattr(getattr(np, "_core", np.core).multiarray, "scalar", None)
    if scalar is not None:
        safe.append(scalar)
    try:
        with torch.serialization.safe_globals(safe):
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise DataError(f"{path}: file not found") from e
    except pickle.UnpicklingError as e:
        # A whole file holding Python objects other than tensors and plain values: loading them would run code.
        unsupported = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if unsupported:
            raise DataError(
                f"{path}: holds a Python object of type {unsupported.group(1)}, which is not loaded (only tensors "
                f"and plain values are, for safety); save its state dict alone (torch.save(model.state_dict()))"
            ) from e
        raise DataError(
            f"{path}: cannot load it as a PyTorch checkpoint (the file is damaged or not a checkpoint)"
        ) from e
    except Exception as e:  # noqa: BLE001 - any other failure: truncated, damaged, not a checkpoint
        first = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()
        raise DataError(
            f"{path}: cannot load it as a PyTorch checkpoint ({first[0] if first else type(e).__name__}); the file "
            f"is truncated, damaged or not a checkpoint: download it again"
        ) from e


def _strip_prefixes(state: dict[str, Any], path: Path) -> dict[str, torch.Tensor]:
    """Keys without DataParallel's / wrappers' ``module.``, ``model.``, ``_model.`` prefixes."""
    out = OrderedDict()
    for key, value in state.items():
        if not isinstance(key, str) or not torch.is_tensor(value):
            raise DataError(f"{path}: its state dict has an entry {key!r} that is not a named tensor")
        for prefix in ("module.", "_model.", "model."):
            if key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = value
    return out


def _state_dict_in(obj: Any, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(state dict, the rest of a trainer dict) from what torch.load returned."""
    if not isinstance(obj, dict):
        raise DataError(f"{path}: holds a {type(obj).__name__}, not a state dict or a trainer dict")
    for key in ("model_state_dict", "state_dict", "model"):
        if isinstance(obj.get(key), dict):
            rest = {k: v for k, v in obj.items() if k != key}
            return _strip_prefixes(obj[key], path), rest
    if obj and all(torch.is_tensor(v) for v in obj.values()):
        return _strip_prefixes(obj, path), {}
    raise DataError(
        f"{path}: neither a state dict nor a trainer dict with model_state_dict (keys: {', '.join(list(obj)[:8])})"
    )


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataError(f"{path}: config file not found")
    if path.suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise DataError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from e
    else:
        data = load_json(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping of settings")
    return data


def _hf_snapshot(spec: str) -> Path:
    """``hf://OWNER/REPO[@REVISION]`` -> the local snapshot folder (downloaded, or from the local cache offline)."""
    match = re.fullmatch(r"hf://([\w.-]+/[\w.-]+)(?:@([\w./-]+))?", spec)
    if not match:
        raise DataError(f"{spec}: expected hf://OWNER/REPO or hf://OWNER/REPO@REVISION")
    repo, revision = match.group(1), match.group(2)
    from huggingface_hub import constants, snapshot_download

    patterns = [f"*{s}" for s in WEIGHT_SUFFIXES] + ["*.yaml", "*.yml", "*.json", "*.md"]
    try:
        return Path(snapshot_download(repo, revision=revision, allow_patterns=patterns))
    except Exception as first:  # noqa: BLE001 - offline, unknown repo, no permission: try the cache, then say so
        try:
            return Path(
                snapshot_download(repo, revision=revision, allow_patterns=patterns, local_files_only=True)
            )
        except Exception:  # noqa: BLE001
            raise DataError(
                f"{spec}: cannot download it from the Hugging Face Hub ({type(first).__name__}: "
                f"{str(first).splitlines()[0] if str(first) else ''}) and it is not in the local cache "
                f"({constants.HF_HUB_CACHE}). On a machine with internet access run once: "
                f"huggingface-cli download {repo}, then copy that cache folder here (or set HF_HOME), or download "
                f"the .pt and config.yaml by hand and pass the .pt file with --config"
            ) from first


def _weights_in(folder: Path) -> Path:
    """The checkpoint of a published folder: the highest checkpoint_NNN.pt, else checkpoint_best.pt, else the
    first .pt/.pth/.bin (OpenSportsLib's rule)."""
    numbered = sorted(folder.glob("checkpoint_[0-9]*.pt"))
    if numbered:
        return numbered[-1]
    if (folder / "checkpoint_best.pt").is_file():
        return folder / "checkpoint_best.pt"
    found = sorted(p for p in folder.rglob("*") if p.suffix in WEIGHT_SUFFIXES and p.is_file())
    if not found:
        raise DataError(
            f"{folder}: no checkpoint file (checkpoint_NNN.pt, checkpoint_best.pt, *.pt, *.pth, *.bin)"
        )
    return found[0]


def _config_in(folder: Path) -> Path | None:
    # YAML first: a Hub snapshot of OpenSportsLib may also hold a config.json of another kind.
    for name in ("config.yaml", "config.yml", "config.json"):
        if (folder / name).is_file():
            return folder / name
    found = sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))
    return found[0] if found else None


def read_source(source: str | Path, config: str | Path | None = None) -> Source:
    """Read what a project publishes: a folder (config + checkpoint), a checkpoint file, or ``hf://OWNER/REPO``."""
    text = str(source)
    folder = _hf_snapshot(text) if text.startswith(HF_PREFIX) else None
    path = folder or Path(text)
    if not path.exists():
        raise DataError(f"{path}: not found; give a checkpoint file, a model folder or hf://OWNER/REPO")
    if path.is_dir():
        weights = _weights_in(path)
        config_file = Path(config) if config else _config_in(path)
    else:
        weights, config_file = path, Path(config) if config else None
    state, rest = _state_dict_in(_torch_load(weights), weights)
    original = _read_config(config_file) if config_file else None
    return Source(weights, state, original, config_file, rest)


def detect_format(state: dict[str, torch.Tensor], config: dict[str, Any] | None) -> str:
    """The format whose key names ``state`` has (and, for T-DEED's two forks, whose config asks for a team)."""
    keys = list(state)
    if any(k.startswith("backbone._features.") for k in keys):
        return "opensportslib"
    if any(k.startswith("_temp_fine.") for k in keys) or "temp_enc" in state:
        if any(k.startswith("_pred_team.") for k in keys) or (config or {}).get("event_team"):
            return "sn-teamspotting"
        return "tdeed"
    if any(k.startswith("_features.") for k in keys) and any(k.startswith("_pred_fine.") for k in keys):
        return "e2e-spot"
    raise DataError(
        "cannot tell the checkpoint's format from its keys (first: "
        f"{', '.join(keys[:5])}); pass --format {{{', '.join(FORMATS)}}}"
    )
