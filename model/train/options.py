"""The training options: one definition per flag of ``train_e2e.py``, in ``TrainOptions``.

Each field's metadata says everything the toolkit knows about that option: its flags, help and parser (the argparse
of ``train_e2e.py`` is generated from them), its check (``TrainOptions.problems``, the one place flags are
validated), and its role across runs:

- ``TRAINED`` (the default): what is trained. Recorded in config.json under "train", taken over by ``--config``,
  and it must be equal on ``--resume``.
- ``AT_END``: only what is recorded after the last epoch (the display thresholds of selection.json): taken over by
  ``--config``, free to change on ``--resume`` since no epoch depends on it.
- ``RUNTIME``: where the run goes and how it runs on this machine (workers, device, logging): neither taken over by
  ``--config`` nor compared on ``--resume``.
- ``CONFIG``: compared on ``--resume`` through the model config's key of the same name (or of no effect once a
  checkpoint is loaded, as ``pretrained``), not as a flag.

``older`` is, for an option added after models were saved, the value those runs had (a saved run without the key
resumes at it); ``older_config``, for such an option that the model config also records as a top-level key, the
value an older config.json without that key means.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.common import TEAM_ENCODINGS
from model.predict import DEFAULT_OVERLAP, TTA_MODES
from model.select import CRITERIA
from model.shift import DEFAULT_VARIANT, VARIANTS
from util.postprocess import DEFAULT_TARGET_PRECISION, TEAM_NMS_MODES

EPOCH_NUM_FRAMES = 500_000
FG_WEIGHT = 5.0
JOINT_FRACTION = 0.5  # --joint: half of every batch from the second dataset
LOSSES = ("ce", "focal")  # --loss: weighted cross-entropy, or focal loss (the 2023 winner's)
TRAINED, AT_END, RUNTIME, CONFIG = "trained", "at end", "runtime", "config"
# Recorded under "train" beside the flags, never given: the code's commit, and the defaults as the run resolved them.
RECORDED = ("git_commit", "resolved")
_UNSET = object()


# --dist_timeout's default, minutes: a lost rank (a crashed node) ends the job after this long, with a message,
# not after NCCL's 10-minute watchdog (gloo's: 30).
DIST_TIMEOUT_MIN = 5.0


def _positive(value) -> str | None:
    return None if value > 0 else f"must be positive, not {value}"


def _at_least_0(value) -> str | None:
    return None if value >= 0 else "must be >= 0"


def _fraction(value) -> str | None:
    return None if 0.0 <= value <= 1.0 else f"must be in [0, 1], not {value}"


def opt(default: Any = None, *flags: str, help: str, role: str = TRAINED, check=None, older=_UNSET,
        older_config=_UNSET, group: str | None = None, **argparse_kwargs) -> Any:  # fmt: skip
    """A field of ``TrainOptions``: its default, flags (none: positional), help, role, check (value -> problem or
    None; None values are not checked), the value of older runs, and the rest of its ``add_argument`` keywords
    (``choices`` may be a function, called when the parser is built)."""
    meta = dict(flags=flags, help=help, role=role, check=check, older=older, older_config=older_config)
    meta.update(group=group, kwargs=argparse_kwargs)
    return field(default=default, metadata=meta)


def _backbones():
    from model.common import available_backbones

    return available_backbones()


def _heads():
    from model.common import available_heads

    return available_heads()


_TRANSFER = "transfer and loss"
_TDEED = "T-DEED's levers and test-time choices (recorded; eval, inference and the app use them)"
_VARIANT_HELP = (
    "whose arithmetic the network follows: "
    + "; ".join(f"{name}: {variant.describe}" for name, variant in VARIANTS.items())
    + " (with -t tdeed also T-DEED's positional table, pooling and upsampling); default: house, or the "
    "--init_from model's when its backbone is the same (e.g. an imported T-DEED)"
)
_BOOL = argparse.BooleanOptionalAction


@dataclass
class TrainOptions:
    """Every option of a training run (``train_e2e.py``'s flags), with its definition in the field metadata."""

    dataset: str | None = opt(help="dataset name (data/<name>/) or a folder of parsed labels", nargs="?")
    frame_dir: str | None = opt(
        help="frame directory written by frames_as_jpg_soccernet_ball.py; or the video library itself (clips are "
        "decoded on the fly at the labels' frame rate and size, the frames step 1 would write: parse the labels "
        "against the library first); or a feature folder written by extract_features.py (trains the temporal head "
        "on those frozen features)",
        nargs="?",
    )
    config: str | None = opt(None, "--config", metavar="CONFIG_JSON", role=RUNTIME,
        help="train exactly as the run that wrote this config.json (or model folder) was trained: its flags are "
        "the defaults, and flags given here override them; -s is still required")  # fmt: skip
    feature_arch: str | None = opt(None, "-m", "--feature_arch", choices=_backbones,
        help="CNN backbone (required; on a feature folder taken from its features.json, with --init_from from that "
        "model)")  # fmt: skip
    temporal_arch: str | None = opt(None, "-t", "--temporal_arch", choices=_heads,
                                    help="temporal head (default: gru; with --init_from, that model's)")  # fmt: skip
    arch_variant: str | None = opt(None, "--arch_variant", choices=list(VARIANTS), role=CONFIG, older=None,
                                   older_config=DEFAULT_VARIANT, help=_VARIANT_HELP)  # fmt: skip
    save_dir: str | None = opt(None, "-s", "--save_dir", role=RUNTIME, required=True,
                               help="model directory: config, checkpoints, predictions")  # fmt: skip
    clip_len: int = opt(100, "--clip_len", type=int, check=_positive, help="frames per training clip")
    crop_dim: int = opt(0, "--crop_dim", type=int, help="random square crop of this side (centre crop at "
                        "evaluation); 0 = whole frames")  # fmt: skip
    batch_size: int = opt(8, "--batch_size", type=int, check=_positive,
                          help="clips per optimiser step, all processes")  # fmt: skip
    acc_grad_iter: int = opt(1, "-ag", "--acc_grad_iter", type=int, check=_positive,
                             help="gradient accumulation steps")  # fmt: skip
    num_epochs: int = opt(50, "--num_epochs", type=int, check=_positive, help="training epochs")
    warm_up_epochs: int = opt(3, "--warm_up_epochs", type=int, check=_at_least_0,
                              help="linear learning-rate warm-up, then cosine")  # fmt: skip
    learning_rate: float = opt(0.001, "-lr", "--learning_rate", type=float, check=_positive,
                               help="peak AdamW learning rate")  # fmt: skip
    resume: bool = opt(False, "--resume", role=RUNTIME, action="store_true",
                       help="continue from the last complete epoch in SAVE_DIR")  # fmt: skip
    start_val_epoch: int | None = opt(None, "--start_val_epoch", type=int,
                                      help="first epoch with val mAP (default: num_epochs - 20)")  # fmt: skip
    criterion: str | None = opt(None, "--criterion", choices=list(CRITERIA),
        help="how the best epoch is chosen on val: map = SoccerNet mAP@1, team_map = Team mAP@1 (the default "
        "with --team; map otherwise), frame_map = E2E-Spot's frame-tolerance mAP, loss = val loss")  # fmt: skip
    target_precision: float = opt(DEFAULT_TARGET_PRECISION, "--target_precision", type=float, check=_fraction,
        role=AT_END,
        help="per class, the display threshold recorded on val (selection.json) is the lowest from which val "
        "precision at delta = 1 s stays at least this (a class that never reaches it: its best-F1 threshold); "
        f"inference and the app show events from there (default {DEFAULT_TARGET_PRECISION})")  # fmt: skip
    mixup: bool = opt(True, "--mixup", action=_BOOL, help="mixup of clip pairs (on by default)")
    augment: bool = opt(True, "--augment", action=_BOOL,
        help="random crop, flip, colour jitter and blur of training clips (on by default; --no-augment "
        "where colours carry the classes, as in the synthetic library)")  # fmt: skip
    dilate_len: int = opt(0, "--dilate_len", type=int, check=_at_least_0,
                          help="label each event's +-N neighbouring frames too")  # fmt: skip
    fg_upsample: float = opt(0.0, "--fg_upsample", type=float, check=_fraction,
                             help="probability of a clip drawn around an event")  # fmt: skip
    fg_balance: bool = opt(False, "--fg_balance", action=_BOOL,
        help="clips drawn around an event (--fg_upsample) pick its class uniformly first, so rare classes are "
        "seen as often as PASS")  # fmt: skip
    fg_weight: float = opt(FG_WEIGHT, "--fg_weight", type=float, check=_positive,
                           help="loss weight of event classes")  # fmt: skip
    epoch_num_frames: int = opt(EPOCH_NUM_FRAMES, "--epoch_num_frames", type=int, check=_positive,
                                help="frames per epoch")  # fmt: skip
    num_workers: int = opt(min(8, os.cpu_count() or 1), "-j", "--num_workers", type=int, check=_at_least_0,
        role=RUNTIME, help="DataLoader processes decoding JPEGs (0 = in the main process)")  # fmt: skip
    ema: float | None = opt(None, "--ema", type=float, metavar="DECAY",
        check=lambda v: None if 0.0 < v < 1.0 else "DECAY must be in (0, 1)",
        help="keep an EMA of the weights (e.g. 0.999); checkpoints and predictions use it")  # fmt: skip
    team: bool = opt(False, "--team", action=_BOOL,
        help="also train the left/right team head (--no-team: without, e.g. over a --config that had one)")  # fmt: skip
    team_encoding: str = opt("head", "--team_encoding", choices=TEAM_ENCODINGS, older="head", older_config="head",
        help="with --team, how the team is spotted: head = a per-frame P(right) beside the classes "
        "(sn-teamspotting's); classes = 2 x C class outputs + background, (class, left) and (class, right), a "
        "flip swapping the halves (the 2025 Team Ball Action Spotting winner's)")  # fmt: skip
    team_nms: str | None = opt(None, "--team_nms", choices=TEAM_NMS_MODES, older=None, older_config="class",
        help="NMS per (class, team), on p(class, team), or per class (default: class_team with --team_encoding "
        "classes, class otherwise); recorded, so eval, inference and the app use it")  # fmt: skip
    # --pretrained / --no_pretrained (a pair of flags, built in ``build_parser``): None = not given.
    pretrained: bool | None = opt(None, "--pretrained", role=CONFIG,
        help="ImageNet weights (the default; with --init_from, whose weights replace them, not downloaded)")  # fmt: skip
    amp: bool = opt(True, "--amp", action=_BOOL,
        help="mixed precision: autocast on CUDA (--amp_dtype), and bf16 autocast on a CPU with native bf16 "
        "(AMX / AVX512-BF16: about 1.2x faster training there; SPOT_CPU_AMP=off also keeps inference in "
        "fp32)")  # fmt: skip
    amp_dtype: str = opt("auto", "--amp_dtype", choices=["auto", "bf16", "fp16"], older="auto",
        help="the mixed-precision type: auto = bf16 where the GPU computes it natively (compute capability 8.0 and "
        "later), else fp16 with a GradScaler; the log says which and why")  # fmt: skip
    dist_backend: str = opt("auto", "--dist_backend", choices=["auto", "nccl", "gloo"], role=RUNTIME,
        help="torch.distributed backend under torchrun / -mgpu: NCCL on GPUs, gloo on CPU (gloo also on GPUs, e.g. "
        "several processes sharing one GPU)")  # fmt: skip
    dist_timeout: float = opt(DIST_TIMEOUT_MIN, "--dist_timeout", role=RUNTIME, type=float, check=_positive,
        help="minutes a process of a torchrun / -mgpu job waits for the others in a collective: a lost rank "
        "(a crashed node) ends the job after this long, with a message. Raise it if rank 0's own work between "
        "epochs (checkpoints on a slow disk, the selection on many val games) takes longer")  # fmt: skip
    device: str = opt("auto", "--device", role=RUNTIME, help="auto, cpu, cuda or cuda:N")
    deterministic: bool = opt(False, "--deterministic", role=RUNTIME, action="store_true",
        help="exact on GPUs: a --resume then matches an uninterrupted run bit for bit, as it always does on a CPU. "
        "Its cost is speed: cuDNN's autotuner off (cudnn.benchmark), deterministic algorithms "
        "(torch.use_deterministic_algorithms; an op without one is named in a warning), "
        "CUBLAS_WORKSPACE_CONFIG=:4096:8")  # fmt: skip
    seed: int = opt(0, "--seed", type=int, check=_at_least_0, help="seeds every random draw")
    stop_after_epoch: int | None = opt(None, "--stop_after_epoch", type=int, role=RUNTIME,
        help="stop after this epoch; a later --resume continues (jobs with a time limit)")  # fmt: skip
    gpu_parallel: bool = opt(False, "-mgpu", "--gpu_parallel", role=RUNTIME, action="store_true",
                             help="use every local GPU (DDP)")  # fmt: skip
    init_from: str | None = opt(None, "--init_from", metavar="MODEL_DIR[:EPOCH]", older=None, group=_TRANSFER,
        help="start from another model's weights (its selected epoch, or EPOCH): every tensor whose name and shape "
        "match is loaded; class outputs over other classes are re-initialised; the log lists what was loaded, "
        "re-initialised, new and unused (e.g. pretrain on SoccerNet-v2, fine-tune on Ball)")  # fmt: skip
    joint: list[str] | None = opt(None, "--joint", nargs=2, metavar=("DATASET2", "FRAME_DIR2"), older=None,
        group=_TRANSFER,
        help="train jointly on a second dataset (e.g. SoccerNet-v2 beside Ball, as T-DEED's challenge models): one "
        "backbone and temporal head, a second class head over DATASET2's classes; --joint_fraction of every "
        "batch's clips come from DATASET2's train split (its frames in FRAME_DIR2, resized to the first dataset's "
        "size). Validation, the best epoch, the post-processing and every later step use the first dataset and "
        "its head; the model folder keeps both heads (joint_classes in config.json)")  # fmt: skip
    joint_fraction: float = opt(JOINT_FRACTION, "--joint_fraction", type=float, older=JOINT_FRACTION,
        group=_TRANSFER, check=lambda v: None if 0.0 < v < 1.0 else f"must be in (0, 1), not {v}",
        help="with --joint: the share of each batch's clips drawn from DATASET2 (rounded; at least one clip of "
        "each dataset per batch); an epoch is still --epoch_num_frames frames in all, so the compute is a "
        "single-dataset run's")  # fmt: skip
    joint_weight: float = opt(1.0, "--joint_weight", type=float, check=_positive, older=1.0, group=_TRANSFER,
                              help="with --joint: the weight of DATASET2's class loss beside the first's")  # fmt: skip
    backbone_lr_mult: float = opt(1.0, "--backbone_lr_mult", type=float, check=_positive, older=1.0, group=_TRANSFER,
        help="the backbone's learning rate is -lr times this (e.g. 0.1 when fine-tuning from --init_from)")  # fmt: skip
    loss: str = opt("ce", "--loss", choices=LOSSES, older="ce", group=_TRANSFER,
        help="per-frame class loss: weighted cross-entropy, or focal loss (down-weights the easy frames)")  # fmt: skip
    focal_gamma: float = opt(2.0, "--focal_gamma", type=float, check=_at_least_0, older=2.0, group=_TRANSFER,
                             help="with --loss focal: its focusing exponent (0 = cross-entropy)")  # fmt: skip
    displacement: int = opt(0, "--displacement", type=int, metavar="R", older=0, older_config=0, group=_TDEED,
        check=lambda v: None if v >= 0 else "R must be >= 0",
        help="T-DEED's displacement head: per frame, the offset to the nearest event within R frames, trained "
        "beside the classes (MSE); post-processing moves each detected peak by it. 0 = off")  # fmt: skip
    tta: str = opt("none", "--tta", choices=TTA_MODES, older="none", older_config="none", group=_TDEED,
        help="test-time augmentation of every prediction: flip = the mean of each window and its horizontal "
        "mirror (left and right swapped in the team output); costs 2x the prediction time")  # fmt: skip
    window_overlap: float = opt(DEFAULT_OVERLAP, "--window_overlap", type=float, older=DEFAULT_OVERLAP, older_config=DEFAULT_OVERLAP,
        group=_TDEED, check=lambda v: None if 0.0 <= v < 1.0 else "must be in [0, 1)",
        help="fraction of frames consecutive prediction windows share (0 = none; 0.75 = each frame seen 4 "
        "times)")  # fmt: skip
    per_class_nms: bool = opt(False, "--per_class_nms", action="store_true", older=False, group=_TDEED,
        help="choose the NMS window per class on val (each class's best of the grid's windows, at the chosen NMS "
        "kind and smoothing), recorded in selection.json")  # fmt: skip
    tensorboard: str | None = opt(None, "--tensorboard", nargs="?", const="", metavar="DIR", role=RUNTIME,
        help="also log each epoch's losses, val metrics and learning rate for TensorBoard, in DIR (default: "
        "SAVE_DIR/tensorboard; needs `pip install tensorboard`). loss.csv and training.png are written anyway")  # fmt: skip
    verbose: bool = opt(False, "-v", "--verbose", role=RUNTIME, action="store_true", help="debug logging")

    def problems(self) -> list[str]:
        """What is wrong with the values, one line per option (``--flag ...``); empty when all is well."""
        found = []
        for f in dataclasses.fields(self):
            value, check = getattr(self, f.name), f.metadata["check"]
            problem = None if value is None or check is None else check(value)
            if problem:
                found.append(f"{_flag(f)} {problem}")
        return found

    def check_run(self, world_size: int) -> None:
        """The checks that combine options, or need the number of processes: DataError (at the run's start, on
        every rank, so all fail together)."""
        from util.io import DataError

        if self.criterion == "team_map" and not self.team:
            raise DataError("--criterion team_map needs --team (a model with a team head)")
        if self.team_encoding == "classes" and not self.team:
            raise DataError("--team_encoding classes needs --team (it is how the team is spotted)")
        if self.team_nms is not None and not self.team:
            raise DataError("--team_nms needs --team (a model that spots teams)")
        if self.joint is not None:
            micro = self.batch_size // (self.acc_grad_iter * world_size)
            second = joint_clips(micro, self.joint_fraction)
            if not 0 < second < micro:
                raise DataError(
                    f"--joint_fraction {self.joint_fraction} of a batch of {micro} clips per process and step "
                    f"gives {second} clips of {self.joint[0]}: each dataset needs at least one; raise --batch_size "
                    "or change --joint_fraction"
                )
        if self.batch_size % (self.acc_grad_iter * world_size):
            raise DataError(
                f"--batch_size {self.batch_size} must be a multiple of -ag ({self.acc_grad_iter}) x processes "
                f"({world_size})"
            )

    def record(self) -> dict:
        """Every option as a plain JSON value (config.json's "train" holds this, with ``RECORDED``)."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in sorted(vars(self).items())}


def joint_clips(micro_batch: int, fraction: float) -> int:
    """Clips of the second dataset (``--joint``) in a micro-batch of ``micro_batch`` clips: the fraction, rounded."""
    return int(round(micro_batch * fraction))


def _flag(f: dataclasses.Field) -> str:
    return f.metadata["flags"][-1] if f.metadata["flags"] else f.name.upper()


def _fields() -> tuple[dataclasses.Field, ...]:
    return dataclasses.fields(TrainOptions)


def names(*roles: str) -> tuple[str, ...]:
    """The options of these roles."""
    return tuple(f.name for f in _fields() if f.metadata["role"] in roles)


def carried_by_config(name: str) -> bool:
    """Whether ``--config`` takes this recorded key over (not where a run goes, nor how it runs here)."""
    return name not in names(RUNTIME) + RECORDED


def compared_on_resume(name: str) -> bool:
    """Whether ``--resume`` refuses a different value of this recorded flag."""
    return name not in names(RUNTIME, AT_END, CONFIG) + RECORDED


def older_flags() -> dict[str, Any]:
    """Options added after runs were saved, with the value those runs had."""
    return {f.name: f.metadata["older"] for f in _fields() if f.metadata["older"] is not _UNSET}


def older_config_keys() -> dict[str, Any]:
    """The model config's keys that such options added, with the value an older config.json means."""
    return {f.name: f.metadata["older_config"] for f in _fields() if f.metadata["older_config"] is not _UNSET}


def build_parser(description: str, formatter_class=argparse.HelpFormatter) -> argparse.ArgumentParser:
    """``train_e2e.py``'s parser, generated from ``TrainOptions`` (types convert; ``problems`` checks)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=formatter_class)
    groups: dict[str | None, Any] = {None: parser}
    for f in _fields():
        meta = f.metadata
        if meta["group"] not in groups:
            groups[meta["group"]] = parser.add_argument_group(meta["group"])
        where = groups[meta["group"]]
        kwargs = dict(meta["kwargs"])
        if callable(kwargs.get("choices")):
            kwargs["choices"] = kwargs["choices"]()
        if f.name == "pretrained":  # two flags, neither the default: None = not given (resolved in get_args)
            pair = where.add_mutually_exclusive_group()
            pair.add_argument(
                "--no_pretrained", dest="pretrained", action="store_false", help="no ImageNet weights"
            )
            pair.add_argument("--pretrained", dest="pretrained", action="store_true", help=meta["help"])
            parser.set_defaults(pretrained=None)
        elif not meta["flags"]:
            where.add_argument(f.name, help=meta["help"], **kwargs)
        else:
            where.add_argument(*meta["flags"], dest=f.name, default=f.default, help=meta["help"], **kwargs)
    return parser


def from_namespace(namespace: argparse.Namespace) -> TrainOptions:
    return TrainOptions(**{f.name: getattr(namespace, f.name) for f in _fields()})
