"""Published checkpoints (E2E-Spot, OpenSportsLib, T-DEED, sn-teamspotting) -> an ordinary model folder of this project.

``import_checkpoint(source, out_dir)`` reads what a project publishes, converts its weights to this project's
modules and writes ``config.json`` (architecture, classes by name, frame rate and size, clip length, window overlap,
and ``source``: where the weights came from, their sha256 and licence), ``checkpoint_NNN.pt`` and ``selection.json``
(the original's own post-processing). After that nothing downstream knows where the model came from: eval,
inference, the web app, ``extract_features.py`` and ``train_e2e.py --init_from`` take the folder as any other.

What the conversion does (each checked against the original code's outputs by ``tests/test_published.py``):

- the network follows the original's arithmetic through ``arch_variant`` (``model.shift.VARIANTS``, the T-DEED
  head's ``exact`` mode): E2E-Spot's and T-DEED's gated-shift width, T-DEED's shifts in RegNet stages s3-s4 only
  and its GSF, positional table, pooling and upsampling;
- the gated shifts' channel interleave (0, C/4, 1, C/4 + 1, ... within each half) is folded into the input
  columns of the following 1x1 convolution;
- T-DEED's SGP layers become this project's (B, T, C) layers: LayerNorm weights (1, C, 1) -> (C), 1x1 convolutions
  -> linear layers, and the SGP-Mixer's merge takes its six inputs in another order;
- T-DEED's displacement is (frame - event) in frames; this project's head predicts (event - frame) in units of the
  radius R: W = -W' / R, b = -b' / R. sn-teamspotting's team output is already P(right);
- two-head T-DEED checkpoints (SoccerNet-Ball + SoccerNet-v2, trained jointly) keep the first head and drop the
  second (listed in ``source.dropped``);
- the class outputs are put in this project's order when the classes are a known list (SoccerNet-Ball's 12, the
  2023 edition's 2, SoccerNet-v2's 17; E2E-Spot sorted its classes alphabetically), so a model fine-tuned from an
  import keeps its head; column 0 stays background.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from model.common import CONFIG_NAME, build_model, check_config, checkpoint_path, default_config, save_config
from model.usage import save_selection
from util.io import DataError, _umask, atomic_open, load_json, load_text_lines
from util.postprocess import DEFAULT_DISPLAY_THRESHOLD, PostProcess
from util.soccernet import CLASSES, CLASSES_2023, CLASSES_V2

log = logging.getLogger(__name__)

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

# The frames each project's SoccerNet models were trained on: (fps, width, height). E2E-Spot: 398x224 frames at
# 2 fps for SoccerNet-v2 (data/soccernetv2/README) and 25 fps for the Ball task; T-DEED and sn-teamspotting: 796x448
# frames extracted at 25 fps, read at a stride of 2 (SoccerNet-Ball: 12.5 fps) or 12 (SoccerNet-v2).
E2E_FRAMES = {"soccernetv2": (2.0, 398, 224), "soccernet_ball": (25.0, 398, 224)}
TDEED_FRAMES = {"soccernetball": (25.0 / 2, 796, 448), "soccernet": (25.0 / 12, 796, 448)}
# E2E-Spot's parse scripts sort the class names: index i + 1 of the head is sorted(classes)[i].
E2E_CLASSES = {("soccernetv2", 17): sorted(CLASSES_V2), ("soccernet_ball", 2): sorted(CLASSES_2023)}
E2E_CLASSES[("soccernet_ball", 12)] = sorted(CLASSES)
# T-DEED's data/soccernetball/class.txt (and sn-teamspotting's) is SoccerNet-Ball's order.
TDEED_CLASSES = {("soccernetball", 12): list(CLASSES), ("soccernet", 17): list(CLASSES_V2)}
KNOWN_ORDERS = (list(CLASSES), list(CLASSES_2023), list(CLASSES_V2))

# The authors' own post-processing: E2E-Spot hard NMS +-2 frames at 2 fps (eval_soccernetv2.py) and +-25 at 25 fps
# (data/soccernet_ball/README), i.e. +-1 s; T-DEED / sn-teamspotting soft NMS over +-12 frames at 12.5 fps
# (util/eval.py WINDOWS_SNB), threshold 0.01 both.
E2E_POST = PostProcess(nms_window_s=1.0, soft=False, threshold=0.01)
# Inference windows: E2E-Spot and OpenSportsLib overlap by half a clip; T-DEED by three quarters (train_tdeed.py).
E2E_OVERLAP = 0.5
TDEED_OVERLAP = 0.75
# T-DEED's SoccerNet-Ball head (n_layers, sgp_ks, sgp_r): what model.impl.tdeed.TDEEDHead builds.
TDEED_HEAD = (2, 9, 4)


@dataclass
class Imported:
    """A converted checkpoint: this project's config and state dict, and what the conversion dropped or noted."""

    config: dict[str, Any]
    state: dict[str, torch.Tensor]
    epoch: int
    postprocess: PostProcess
    dropped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class Source:
    """What was read: the weights file, the state dict in it (prefixes stripped), the original config."""

    weights_file: Path
    state: dict[str, torch.Tensor]
    original_config: dict[str, Any] | None
    config_file: Path | None
    container: dict[str, Any] = field(default_factory=dict)  # the trainer dict's other entries (epoch, ...)
    fps: float | None = None  # --fps: the frame rate, where the original config does not say it


# ---------------------------------------------------------------------------------------------------------------
# Reading


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


# ---------------------------------------------------------------------------------------------------------------
# Key conversion


def _backbone_key(key: str) -> str:
    """An original ``_features.*`` key -> this project's ``backbone.*`` (shift wrappers renamed)."""
    key = "backbone." + key[len("_features.") :]
    key = key.replace(".conv1.net.", ".conv1.conv.")
    key = re.sub(r"\.conv1\.gsm?\.bn\.", ".conv1.shift.norm.", key)
    key = re.sub(r"\.conv1\.gsm?\.conv3D\.", ".conv1.shift.gate.", key)
    return re.sub(r"\.conv1\.gs\.channel_conv([12])\.", lambda m: f".conv1.shift.fuse.{int(m[1]) - 1}.", key)


def interleave_order(gated: int) -> torch.Tensor:
    """sigma with output channel p of E2E-Spot's / T-DEED's gated shift = its input channel sigma[p]: within
    each half of the ``gated`` channels, the two quarters interleave (0, q, 1, q + 1, ...; q = gated / 4)."""
    q = gated // 4
    half = [i * q + j for j in range(q) for i in range(2)]
    return torch.tensor(half + [gated // 2 + c for c in half])


def _fold_interleave(state: dict[str, torch.Tensor], where: Path) -> int:
    """Fold every gated shift's output interleave into the input columns of the convolution after it."""
    folded = 0
    for gate_key in [k for k in state if k.endswith(".conv1.shift.gate.weight")]:
        block = gate_key[: -len("shift.gate.weight")]
        gated = 2 * state[gate_key].shape[1]
        conv_key = next((block + s for s in ("conv.conv.weight", "conv.weight") if block + s in state), None)
        if conv_key is None or gated % 4:
            raise DataError(
                f"{where}: the gated shift at {block} has no convolution after it, or an odd width ({gated})"
            )
        # Their conv reads column p from channel sigma[p] of the un-interleaved output: here column sigma[p].
        weight = state[conv_key].clone()
        weight[:, interleave_order(gated)] = state[conv_key][:, :gated]
        state[conv_key] = weight
        folded += 1
    return folded


def _class_rows(weight: torch.Tensor, original: list[str], target: list[str]) -> torch.Tensor:
    """The class-output rows of ``weight`` (row 0 = background) reordered from ``original`` to ``target``."""
    order = [0] + [1 + original.index(c) for c in target]
    return weight[order]


def _sgp_layer(
    prefix: str, state: dict[str, torch.Tensor], out: str, result: dict[str, torch.Tensor]
) -> None:
    """One T-DEED SGPBlock (``prefix``) -> this project's SGPLayer (``out``)."""
    flat = {
        "ln.weight": "norm.weight", "ln.bias": "norm.bias",
        "fc.weight": "branches.scale.weight", "fc.bias": "branches.scale.bias",
        "global_fc.weight": "branches.context.weight", "global_fc.bias": "branches.context.bias",
        "convw.weight": "branches.narrow.weight", "convw.bias": "branches.narrow.bias",
        "convkw.weight": "branches.wide.weight", "convkw.bias": "branches.wide.bias",
        "psi.weight": "branches.gate.weight", "psi.bias": "branches.gate.bias",
        "gn.weight": "mlp.0.weight", "gn.bias": "mlp.0.bias",
        "mlp.0.weight": "mlp.1.weight", "mlp.0.bias": "mlp.1.bias",
        "mlp.2.weight": "mlp.3.weight", "mlp.2.bias": "mlp.3.bias",
    }  # fmt: skip
    for theirs, ours in flat.items():
        result[f"{out}.{ours}"] = _to_linear(state.pop(f"{prefix}.{theirs}"), f"{out}.{ours}")


def _sgp_mixer(
    prefix: str, state: dict[str, torch.Tensor], out: str, result: dict[str, torch.Tensor]
) -> None:
    """One T-DEED SGPMixer -> this project's: branch 1 reads the skip (z), branch 2 the coarse input (x)."""
    names = {"fc": "scale", "global_fc": "context", "convw": "narrow", "convkw": "wide", "psi": "gate"}
    for theirs, ours in names.items():
        for param in ("weight", "bias"):
            for index, branch in ((1, "skip_branches"), (2, "branches")):
                name = f"{out}.{branch}.{ours}.{param}"
                result[name] = _to_linear(state.pop(f"{prefix}.{theirs}{index}.{param}"), name)
    for theirs, ours in (("ln1", "skip_norm"), ("ln2", "norm"), ("gn", "mlp.0")):
        for param in ("weight", "bias"):
            result[f"{out}.{ours}.{param}"] = state.pop(f"{prefix}.{theirs}.{param}").reshape(-1)
    for theirs, ours in (("mlp.0", "mlp.1"), ("mlp.2", "mlp.3")):
        result[f"{out}.{ours}.weight"] = state.pop(f"{prefix}.{theirs}.weight").squeeze(-1)
        result[f"{out}.{ours}.bias"] = state.pop(f"{prefix}.{theirs}.bias")
    # T-DEED concatenates [window(z), window(x), instant(z), instant(x), z, x]; this project
    # [instant(x), window(x), instant(z), window(z), x, z].
    merge = state.pop(f"{prefix}.concat_fc.weight").squeeze(-1)
    dim = merge.shape[0]
    blocks = merge.split(dim, dim=1)
    result[f"{out}.merge.weight"] = torch.cat([blocks[i] for i in (3, 1, 2, 0, 5, 4)], dim=1)
    result[f"{out}.merge.bias"] = state.pop(f"{prefix}.concat_fc.bias")


def _to_linear(value: torch.Tensor, ours: str) -> torch.Tensor:
    """A T-DEED (B, C, T) parameter for this project's (B, T, C) layer ``ours`` (its full name): LayerNorm weights
    (1, C, 1) and 1x1 depthwise convolutions (C, 1, 1) -> (C), 1x1 convolutions (O, I, 1) -> (O, I); depthwise
    temporal kernels (C, 1, k) stay."""
    if ours.split(".")[-2] in ("narrow", "wide", "gate") or value.dim() != 3:
        return value
    if value.shape[0] == 1 or value.shape[1] == 1:
        return value.reshape(-1)
    return value.squeeze(-1)


def _linear(result: dict, state: dict, theirs: str, ours: str, scale: float = 1.0) -> None:
    result[f"{ours}.weight"] = state.pop(f"{theirs}.weight") * scale
    result[f"{ours}.bias"] = state.pop(f"{theirs}.bias") * scale


# ---------------------------------------------------------------------------------------------------------------
# Formats


def _classes_for(
    given: list[str] | None, known: list[str] | None, count: int, what: str, source_file: Path
) -> list[str]:
    """The checkpoint's class names in its head's order: --classes, else the built-in list for its dataset."""
    classes = given if given is not None else known
    if classes is None:
        raise DataError(
            f"{source_file}: no built-in class list for {what}; pass --classes CLASS_TXT (one class a line, in the "
            f"order of the model's outputs, background excluded)"
        )
    if len(set(classes)) != len(classes):
        raise DataError(f"{source_file}: the class list names a class twice ({', '.join(classes)})")
    if len(classes) != count:
        raise DataError(
            f"{source_file}: the model has {count} class outputs but the class list has {len(classes)} "
            f"({', '.join(classes[:5])}...); pass the matching --classes"
        )
    return list(classes)


def _canonical(classes: list[str]) -> list[str]:
    """This project's order for a known class set (so that fine-tuning keeps the head), else as given."""
    for order in KNOWN_ORDERS:
        if sorted(order) == sorted(classes):
            return list(order)
    return list(classes)


def _check_keys(state: dict[str, torch.Tensor], prefixes: tuple[str, ...], source_file: Path) -> None:
    unknown = [k for k in state if not k.startswith(prefixes)]
    if unknown:
        raise DataError(
            f"{source_file}: unknown key(s) for this format: {', '.join(unknown[:6])}"
            + (f" and {len(unknown) - 6} more" if len(unknown) > 6 else "")
            + "; is --format right?"
        )


def _backbone(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return OrderedDict(
        (_backbone_key(k), state.pop(k)) for k in [k for k in state if k.startswith("_features.")]
    )


def _epoch_of(path: Path, container: dict[str, Any]) -> int:
    match = re.fullmatch(r"checkpoint_(\d+)\.pt", path.name)
    if match:
        return int(match.group(1))
    epoch = container.get("epoch")
    return int(epoch) if isinstance(epoch, int | float) and epoch >= 0 else 0


def convert_e2e(src: Source, classes: list[str] | None, fmt: str) -> Imported:
    """E2E-Spot's ``E2EModel.Impl`` (or OpenSportsLib's, keys under backbone./head.) -> this project's model."""
    state = OrderedDict(src.state)
    if fmt == "opensportslib":
        _check_keys(state, ("backbone._features.", "head._pred_fine."), src.weights_file)
        state = OrderedDict((k.split(".", 1)[1], v) for k, v in state.items())
        settings = _osl_settings(src)
    else:
        _check_keys(state, ("_features.", "_pred_fine."), src.weights_file)
        settings = _e2e_settings(src)
    heads = {"gru": "gru", "deeper_gru": "deeper_gru", "": "fc", "fc": "fc"}
    if settings["temporal_arch"] not in heads:
        raise DataError(
            f"{src.config_file or src.weights_file}: temporal_arch {settings['temporal_arch']!r} is not supported "
            f"by the importer (gru, deeper_gru and no head are; every published SoccerNet model uses gru)"
        )
    fc_key = "_pred_fine._fc_out" if settings["temporal_arch"] in ("", "fc") else "_pred_fine._fc_out._fc_out"
    if f"{fc_key}.weight" not in state:
        raise DataError(f"{src.weights_file}: no {fc_key}.weight; the weights do not match its config's head")
    count = state[f"{fc_key}.weight"].shape[0] - 1
    if settings["num_classes"] is not None and settings["num_classes"] not in (count, count + 1):
        raise DataError(
            f"{src.config_file}: {settings['num_classes']} classes but {src.weights_file} has {count} class "
            f"outputs: the config does not match the weights"
        )
    names = _classes_for(
        classes, settings["classes"], count, settings["what"], src.config_file or src.weights_file
    )
    target = _canonical(names)
    result = _backbone(state)
    folded = _fold_interleave(result, src.weights_file)
    for key in [k for k in state if k.startswith("_pred_fine._gru.")]:
        result["head.gru." + key[len("_pred_fine._gru.") :]] = state.pop(key)
    result["head.fc.weight"] = _class_rows(state.pop(f"{fc_key}.weight"), names, target)
    result["head.fc.bias"] = _class_rows(state.pop(f"{fc_key}.bias"), names, target)
    _check_keys(state, (), src.weights_file)  # nothing left over
    fps, width, height = settings["frames"]
    config = default_config(
        feature_arch=settings["feature_arch"],
        temporal_arch=heads[settings["temporal_arch"]],
        arch_variant="e2e-spot",
        clip_len=int(settings["clip_len"]),
        classes=target,
        fps=float(fps),
        **_geometry(width, height, settings["crop"]),
        window_overlap=float(settings["overlap"]),
        pretrained=False,
    )
    notes = [f"{folded} gated shift(s): E2E-Spot's channel interleave folded into the next convolution"]
    if target != names:
        notes.append("class outputs reordered to this project's order: " + ", ".join(target))
    return Imported(config, result, _epoch_of(src.weights_file, src.container), settings["post"], [], notes)


def _geometry(width: int, height: int, crop: int | None) -> dict[str, Any]:
    """The frame keys of config.json: frames are read at the authors' size (``source_*``; a frame folder or a
    video of another size is resized to it, as training here records it), then centre-cropped to ``frame_*``."""
    return {
        "source_width": int(width),
        "source_height": int(height),
        "frame_width": min(crop, width) if crop else int(width),
        "frame_height": min(crop, height) if crop else int(height),
        "crop_dim": crop,
    }


def _integer(config: dict, key: str, where: Path | None, default: Any = None, minimum: int = 1) -> int:
    """An integer setting of an original config (a float with an integer value is taken), or DataError."""
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or int(value) != value:
        raise DataError(f"{where}: {key} must be an integer, not {value!r}")
    if value < minimum:
        raise DataError(f"{where}: {key} must be at least {minimum}, not {value!r}")
    return int(value)


def _positive(config: dict, key: str, where: Path | None, default: Any = None) -> float:
    value = config.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (math.isfinite(value) and value > 0)
    ):
        raise DataError(f"{where}: {key} must be a positive number, not {value!r}")
    return float(value)


def _crop(config: dict, where: Path | None) -> int | None:
    """crop_dim: None, 0 or negative = no crop (E2E-Spot null, T-DEED -1), else the square crop's side."""
    if config.get("crop_dim") is None:
        return None
    crop = _integer(config, "crop_dim", where, minimum=-1)
    return crop if crop > 0 else None


def _original_config(src: Source, needs: str) -> dict[str, Any]:
    """The original project's config, or DataError: ``needs`` says which file and where to find it."""
    if src.original_config is None:
        raise DataError(f"{src.weights_file}: {needs}")
    return src.original_config


def _e2e_settings(src: Source) -> dict[str, Any]:
    config = _original_config(
        src,
        "an E2E-Spot checkpoint needs its config.json (the folder of e2e-spot-models holds both; or pass --config)",
    )
    where = src.config_file
    for key in ("feature_arch", "temporal_arch", "clip_len", "num_classes"):
        if key not in config:
            raise DataError(f"{where}: no {key!r}; not an E2E-Spot config.json")
    if config.get("modality", "rgb") != "rgb":
        raise DataError(f"{where}: modality {config['modality']!r}: only RGB models can be imported")
    dataset = str(config.get("dataset", ""))
    frames = _frames(E2E_FRAMES.get(dataset), src.fps, (398, 224), f"{where}: dataset {dataset!r}")
    num_classes = _integer(config, "num_classes", where)
    return {
        "feature_arch": _backbone_name(config["feature_arch"], where),
        "temporal_arch": str(config["temporal_arch"]),
        "clip_len": _integer(config, "clip_len", where),
        "num_classes": num_classes,
        "classes": E2E_CLASSES.get((dataset, num_classes)),
        "what": f"E2E-Spot's dataset {dataset!r} with {num_classes} classes",
        "dataset": dataset,
        "frames": frames,
        "crop": _crop(config, where),
        "overlap": E2E_OVERLAP,
        "post": E2E_POST,
    }


def _osl_settings(src: Source) -> dict[str, Any]:
    config = _original_config(
        src,
        "an OpenSportsLib checkpoint needs its config.yaml (it says the frame rate, classes and architecture): pass "
        "--config CONFIG_YAML, or import hf://OWNER/REPO",
    )
    where = src.config_file
    data, model = config.get("DATA"), config.get("MODEL")
    try:
        backbone, head = model["backbone"]["type"], model["head"]["type"]
        clip_len = _integer(data, "clip_len", where)
        fps = src.fps or _positive(data, "extract_fps", where)
    except (KeyError, TypeError) as e:
        raise DataError(
            f"{where}: not an OpenSportsLib localization config (MODEL.backbone.type, MODEL.head.type, "
            f"DATA.clip_len, DATA.extract_fps needed; missing {e})"
        ) from None
    classes = data.get("classes")
    test = data.get("test") if isinstance(data.get("test"), dict) else {}
    overlap_len = _integer(test, "overlap_len", where, default=clip_len // 2, minimum=0)
    if overlap_len >= clip_len:
        raise DataError(
            f"{where}: DATA.test.overlap_len {overlap_len} must be less than DATA.clip_len {clip_len}"
        )
    window_s = float(_integer(test, "nms_window", where, minimum=0)) / fps if "nms_window" in test else 1.0
    if classes is not None and not (isinstance(classes, list) and all(isinstance(c, str) for c in classes)):
        raise DataError(f"{where}: DATA.classes must be a list of class names")
    return {
        "feature_arch": _backbone_name(backbone, where),
        "temporal_arch": str(head),
        "clip_len": clip_len,
        "num_classes": len(classes) if classes else None,
        "classes": classes,
        "what": "this OpenSportsLib config (no DATA.classes)",
        "dataset": str(data.get("dataset_name") or "OpenSportsLib's data"),
        "frames": (
            fps,
            _integer(data, "target_width", where, default=398),
            _integer(data, "target_height", where, default=224),
        ),
        "crop": _crop(data, where),
        "overlap": overlap_len / clip_len,
        "post": PostProcess(nms_window_s=window_s, soft=False, threshold=0.01),
    }


def _frames(
    known: tuple[float, int, int] | None, fps: float | None, size: tuple[int, int], what: str
) -> tuple[float, int, int]:
    """(fps, width, height) of a model's frames: the dataset's, with --fps overriding the rate."""
    if known is None and fps is None:
        raise DataError(
            f"{what} is not a SoccerNet one: the frame rate it was trained at is unknown; pass --fps"
        )
    width, height = known[1:] if known else size
    return (fps if fps is not None else known[0]), width, height


def _backbone_name(name: Any, where: Path | None) -> str:
    from model.common import BACKBONES

    if not isinstance(name, str) or name not in BACKBONES:
        raise DataError(f"{where}: backbone {name!r} cannot be imported (supported: {', '.join(BACKBONES)})")
    return name


def _tdeed_settings(src: Source, fmt: str) -> dict[str, Any]:
    """The T-DEED config's architecture, checked: what this project's T-DEED network reproduces."""
    name = "sn-teamspotting" if fmt == "sn-teamspotting" else "T-DEED"
    config = _original_config(
        src, f"a {name} checkpoint needs its config JSON (config/SoccerNetBall/*.json): pass --config"
    )
    where = src.config_file
    for key in ("feature_arch", "temporal_arch", "clip_len", "num_classes", "dataset"):
        if key not in config:
            raise DataError(f"{where}: no {key!r}; not a T-DEED config")
    if config["temporal_arch"] != "ed_sgp_mixer":
        raise DataError(f"{where}: temporal_arch {config['temporal_arch']!r}; T-DEED's is ed_sgp_mixer")
    head = (
        _integer(config, "n_layers", where, default=2),
        _integer(config, "sgp_ks", where, default=9),
        _positive(config, "sgp_r", where, default=4),
    )
    if head != TDEED_HEAD:
        raise DataError(
            f"{where}: n_layers {head[0]}, sgp_ks {head[1]}, sgp_r {head[2]:g}: only T-DEED's SoccerNet-Ball head "
            f"(2, 9, 4) can be imported"
        )
    dataset = str(config["dataset"])
    return {
        "feature_arch": _backbone_name(config["feature_arch"], where),
        "clip_len": _integer(config, "clip_len", where),
        "num_classes": _integer(config, "num_classes", where),
        "dataset": dataset,
        "frames": _frames(TDEED_FRAMES.get(dataset), src.fps, (796, 448), f"{where}: dataset {dataset!r}"),
        "crop": _crop(config, where),
        "radius": _integer(config, "radi_displacement", where, default=0, minimum=0),
        "levels": head[0],
    }


def _tdeed_temporal(state: dict, result: dict, levels: int, where: Path) -> None:
    """T-DEED's positional table and SGP encoder-decoder -> this project's T-DEED head (exact mode)."""
    if "temp_enc" not in state:
        raise DataError(f"{where}: no temp_enc (T-DEED's positional table)")
    result["head.positional"] = state.pop("temp_enc")
    # _sgp: 0..n-1 encoder, n bottleneck, n+1..2n decoder deepest first; _sgpMixer.i works at level i, as here.
    for i in range(2 * levels + 1):
        if i < levels:
            out = f"head.encoder.{i}"
        else:
            out = "head.bottleneck" if i == levels else f"head.decoder.{2 * levels - i}"
        _sgp_layer(f"_temp_fine._sgp.{i}", state, out, result)
    for i in range(levels):
        _sgp_mixer(f"_temp_fine._sgpMixer.{i}", state, f"head.mixers.{i}", result)


def _tdeed_class_head(state: dict, src: Source, settings: dict) -> tuple[str, list[str]]:
    """(the key of the class head used at inference, what was dropped): the first of two heads (SoccerNet-Ball's;
    the second, SoccerNet-v2's, was trained jointly) or the only one."""
    dropped = []
    if "_pred_fine._fc1._fc_out.weight" in state:
        for key in [k for k in state if k.startswith("_pred_fine._fc2.")]:
            dropped.append(f"{key} {tuple(state.pop(key).shape)}")
        fc = "_pred_fine._fc1._fc_out"
    else:
        fc = "_pred_fine._fc_out"
    if f"{fc}.weight" not in state or f"{fc}.bias" not in state:
        raise DataError(f"{src.weights_file}: no class head ({fc}.weight and .bias)")
    count = state[f"{fc}.weight"].shape[0] - 1
    if count != settings["num_classes"]:
        raise DataError(
            f"{src.config_file}: num_classes {settings['num_classes']} but {src.weights_file} has {count} class "
            f"outputs: the config does not match the weights"
        )
    return fc, dropped


def convert_tdeed(src: Source, classes: list[str] | None, fmt: str) -> Imported:
    """T-DEED's ``TDEEDModel.Impl`` (and sn-teamspotting's, with ``_pred_team``) -> this project's model."""
    settings = _tdeed_settings(src, fmt)
    state, where = OrderedDict(src.state), src.weights_file
    prefixes = ("_features.", "temp_enc", "_temp_fine.", "_pred_fine.", "_pred_displ.", "_pred_team.")
    _check_keys(state, prefixes, where)
    team, radius = fmt == "sn-teamspotting", settings["radius"]
    for needed, head in ((team, "_pred_team"), (radius > 0, "_pred_displ")):
        if needed and not {f"{head}._fc_out.weight", f"{head}._fc_out.bias"} <= set(state):
            raise DataError(f"{where}: no {head} head, which its config ({src.config_file}) asks for")
    fc, dropped = _tdeed_class_head(state, src, settings)
    count = settings["num_classes"]
    names = _classes_for(
        classes, TDEED_CLASSES.get((settings["dataset"], count)), count, f"dataset {settings['dataset']!r}",
        src.config_file,
    )  # fmt: skip
    target = _canonical(names)
    result = _backbone(state)
    folded = _fold_interleave(result, where)
    _tdeed_temporal(state, result, settings["levels"], where)
    result["head.fc.weight"] = _class_rows(state.pop(f"{fc}.weight"), names, target)
    result["head.fc.bias"] = _class_rows(state.pop(f"{fc}.bias"), names, target)
    if radius > 0:  # T-DEED: frame - event, in frames; here: (event - frame) / R
        _linear(result, state, "_pred_displ._fc_out", "displacement_head", -1.0 / radius)
    for key in [k for k in state if k.startswith("_pred_displ.")]:  # a head its config does not use
        dropped.append(f"{key} {tuple(state.pop(key).shape)}")
    if team:
        _linear(result, state, "_pred_team._fc_out", "team_head")
    _check_keys(state, (), where)  # nothing left over
    fps, width, height = settings["frames"]
    ours = default_config(
        feature_arch=settings["feature_arch"],
        temporal_arch="tdeed",
        arch_variant="tdeed",
        clip_len=settings["clip_len"],
        classes=target,
        fps=fps,
        **_geometry(width, height, settings["crop"]),
        team=team,
        displacement=radius,
        window_overlap=TDEED_OVERLAP,
        pretrained=False,
    )
    post = PostProcess(nms_window_s=12 / fps, soft=True, threshold=0.01)
    notes = [f"{folded} gated shift(s): T-DEED's channel interleave folded into the next convolution"]
    if radius:
        notes.append(f"displacement: T-DEED's (frame - event) in frames -> (event - frame) / {radius}")
    if any("_fc2." in d for d in dropped):
        notes.append(
            "second (SoccerNet-v2) head dropped: only the first, SoccerNet-Ball's, is used at inference"
        )
    if target != names:
        notes.append("class outputs reordered to this project's order")
    return Imported(ours, result, _epoch_of(src.weights_file, src.container), post, dropped, notes)


CONVERTERS: dict[str, Callable[[Source, list[str] | None, str], Imported]] = {
    "e2e-spot": convert_e2e,
    "opensportslib": convert_e2e,
    "tdeed": convert_tdeed,
    "sn-teamspotting": convert_tdeed,
}


# ---------------------------------------------------------------------------------------------------------------
# Writing


def _check_weights(imported: Imported, weights_file: Path, config_file: Path | None) -> None:
    """Load the converted weights into the network the config describes: every key, every shape."""
    model = build_model({**imported.config, "channels_last": False})
    target = model.state_dict()
    missing = [k for k in target if k not in imported.state]
    extra = [k for k in imported.state if k not in target]
    shapes = [
        f"{k} {tuple(imported.state[k].shape)} vs {tuple(v.shape)}"
        for k, v in target.items() if k in imported.state and imported.state[k].shape != v.shape
    ]  # fmt: skip
    if missing or extra or shapes:
        what = "; ".join(
            part for part in (
                f"missing {', '.join(missing[:4])}" if missing else "",
                f"unexpected {', '.join(extra[:4])}" if extra else "",
                f"shapes {', '.join(shapes[:3])}" if shapes else "",
            ) if part
        )  # fmt: skip
        raise DataError(
            f"{weights_file}: the weights do not match the network of its config"
            f"{f' ({config_file})' if config_file else ''}: {what}"
        )
    model.load_state_dict(imported.state)


def import_checkpoint(
    source: str | Path,
    out_dir: str | Path,
    fmt: str | None = None,
    config: str | Path | None = None,
    classes_file: str | Path | None = None,
    fps: float | None = None,
) -> dict[str, Any]:
    """Import a published checkpoint into the model folder ``out_dir`` (created; it must not exist or be empty).

    Returns ``{"model_dir", "format", "config", "epoch", "notes", "dropped"}``. Nothing is written on any error.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise DataError(f"{out_dir}: exists and is not an empty folder; choose another -o")
    if fmt is not None and fmt not in FORMATS:
        raise DataError(f"unknown --format {fmt!r}; valid: {', '.join(FORMATS)}")
    src = read_source(source, config)
    if not src.state:
        raise DataError(f"{src.weights_file}: holds no weights")
    fmt = fmt or detect_format(src.state, src.original_config)
    if fps is not None:
        if not (math.isfinite(fps) and fps > 0):
            raise DataError(f"--fps must be a positive number, not {fps}")
        src.fps = float(fps)
    classes = load_text_lines(classes_file) if classes_file else None
    try:
        imported = CONVERTERS[fmt](src, classes, fmt)
    except (KeyError, IndexError, ValueError, TypeError, AttributeError, RuntimeError) as e:
        # A key or a shape the format always has is missing or different: not what its config says it is.
        raise DataError(
            f"{src.weights_file}: not a {fmt} checkpoint of the architecture its config "
            f"({src.config_file or 'none'}) describes ({type(e).__name__}: {e}); is --format right?"
        ) from e
    _check_weights(imported, src.weights_file, src.config_file)
    imported.config["source"] = {
        "format": fmt,
        "project": FORMATS[fmt].project,
        "code": FORMATS[fmt].code,
        "published_at": FORMATS[fmt].weights,
        "licence": FORMATS[fmt].licence,
        "file": str(source) if str(source).startswith(HF_PREFIX) else str(src.weights_file.resolve()),
        "weights_file": src.weights_file.name,
        "sha256": sha256_of(src.weights_file),
        "config_file": str(src.config_file) if src.config_file else None,
        "original_config": json.loads(json.dumps(src.original_config, default=str)),
        "dropped": imported.dropped,
        "notes": imported.notes,
        "trained_on": trained_on(fmt, imported.config, src),
    }
    config_checked = check_config(imported.config, source=CONFIG_NAME)
    _write_folder(out_dir, config_checked, imported)
    return {
        "model_dir": str(out_dir),
        "format": fmt,
        "config": config_checked,
        "epoch": imported.epoch,
        "notes": imported.notes,
        "dropped": imported.dropped,
    }


def trained_on(fmt: str, config: dict[str, Any], src: Source) -> str:
    """One line for people: what the model was trained on, at which frame rate and size."""
    fps, size = float(config["fps"]), f"{config['source_width']}x{config['source_height']}"
    classes, original = sorted(config["classes"]), src.original_config or {}
    if classes == sorted(CLASSES_V2):
        data = "SoccerNet-v2 action spotting"
    elif classes in (sorted(CLASSES), sorted(CLASSES_2023)):
        data = "SoccerNet Ball Action Spotting"
    else:
        data = str(
            original.get("dataset") or (original.get("DATA") or {}).get("dataset_name") or "its own data"
        )
    extra = ", jointly with SoccerNet-v2" if original.get("pretrain") or original.get("joint_train") else ""
    names = f"{src.weights_file.parent.name} {src.config_file.name if src.config_file else ''}".lower()
    if "challenge" in names:
        extra += (
            "; a challenge model: trained on the train and test games (T-DEED) or train, val and test (E2E-Spot), "
            "so its test mAP is not a clean number"
        )
    return f"{data} ({len(classes)} classes{extra}), {size} frames at {fps:g} fps"


def _write_folder(out_dir: Path, config: dict[str, Any], imported: Imported) -> None:
    """config.json, checkpoint_NNN.pt and selection.json into a temporary folder, then renamed to ``out_dir``."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.importing-", dir=out_dir.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would stay with the folder: readable as any other
        save_config(tmp, config)
        with atomic_open(checkpoint_path(tmp, imported.epoch), "wb") as f:
            torch.save(OrderedDict((k, v.contiguous()) for k, v in imported.state.items()), f)
        save_selection(
            tmp,
            {
                "epoch": imported.epoch,
                "criterion": "imported",
                "metric": None,
                "why": f"the published checkpoint ({config['source']['weights_file']})",
                "postprocess": imported.postprocess.to_dict(),
                "postprocess_chosen_by": f"{config['source']['project'].split(' (')[0]}'s own post-processing",
                "display_threshold": DEFAULT_DISPLAY_THRESHOLD,
            },
        )
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
