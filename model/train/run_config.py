"""A run's identity: the model config it records, the dataset it reads, and the checks that a ``--resume`` (or a
model folder that already holds checkpoints) trains the same thing."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from model.common import default_config, list_epochs, load_config
from model.select import default_criterion
from model.shift import DEFAULT_VARIANT
from model.train.options import TrainOptions, compared_on_resume, older_config_keys, older_flags
from util.frame_dir import VIDEO_FILE, FrameDir
from util.io import DataError
from util.postprocess import team_nms_mode

log = logging.getLogger(__name__)

NUM_VAL_EPOCHS = 20  # default: val mAP over the last 20 epochs, as E2E-Spot


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def train_settings(args: TrainOptions) -> dict:
    """Every flag of the run, as plain JSON values (recorded in config.json under "train")."""
    settings = args.record()
    settings["git_commit"] = _git_commit()
    return settings


def build_config(
    args: TrainOptions,
    classes: Sequence[str],
    fps: float,
    frame_size: tuple[int, int],
    joint_classes: Sequence[str] | None = None,
) -> dict:
    """The model config: what rebuilds the network (with ``--joint``, the second head's classes), the frame
    geometry, and every training flag."""
    width, height = frame_size
    crop = args.crop_dim if args.crop_dim and args.crop_dim > 0 else None
    input_h, input_w = (min(crop, height), min(crop, width)) if crop else (height, width)
    return default_config(
        feature_arch=args.feature_arch,
        temporal_arch=args.temporal_arch,
        arch_variant=getattr(args, "arch_variant", None) or DEFAULT_VARIANT,
        clip_len=args.clip_len,
        classes=list(classes),
        frame_height=input_h,
        frame_width=input_w,
        fps=fps,
        team=bool(args.team),
        team_encoding=args.team_encoding,
        team_nms=team_nms_mode(
            {"team": args.team, "team_encoding": args.team_encoding, "team_nms": args.team_nms}
        ),
        displacement=int(args.displacement),
        joint_classes=list(joint_classes) if joint_classes else None,
        tta=args.tta,
        window_overlap=float(args.window_overlap),
        pretrained=bool(args.pretrained),
        source_width=width,
        source_height=height,
        crop_dim=crop,
        dataset=str(args.dataset),
        train=train_settings(args),
    )


def _same_dataset(old: str, new: str) -> bool:
    """Two DATASET arguments (names or paths) that give the same parsed labels: one folder, or equal files."""
    from util.dataset import resolve_dataset

    if old == new:
        return True
    try:
        a, b = resolve_dataset(old), resolve_dataset(new)
    except DataError:
        return False
    if a.resolve() == b.resolve():
        return True
    names = sorted(p.name for p in a.glob("*.json")) + ["class.txt"]
    return names == sorted(p.name for p in b.glob("*.json")) + ["class.txt"] and all(
        (a / n).is_file() and (b / n).is_file() and (a / n).read_bytes() == (b / n).read_bytes()
        for n in names
    )


def frame_folder_differences(frame_dir: Path, videos: Sequence[dict]) -> list[str]:
    """How the frames of ``videos`` under ``frame_dir`` (frame folders, or video files of a library there) differ
    from what the parsed labels say (their number of frames and frame rate); empty when they hold the frames that
    were trained on."""
    from util.frame_folder import read_frame_folder
    from util.video_index import VideoIndex

    frames = FrameDir(frame_dir)
    diffs = []
    for video in videos:
        try:
            path = frames.locate(video["video"], video.get(VIDEO_FILE))
            if path.is_dir():
                info = read_frame_folder(path)
            else:  # a video file, read at the labels' rate: count its frames there
                info = {"fps": float(video["fps"])}
                info["num_frames"] = len(VideoIndex.load(path).sample(info["fps"]))
        except DataError as e:
            diffs.append(str(e))
            continue
        if info["num_frames"] != video["num_frames"] or abs(info["fps"] - float(video["fps"])) > 1e-6:
            diffs.append(
                f"{path}: {info['num_frames']} frames at {info['fps']:g} fps, the labels "
                f"say {video['num_frames']} at {float(video['fps']):g}"
            )
    return diffs


def _joint_moved(old: Sequence[str], new: Sequence[str]) -> str | None:
    """None when ``--joint`` names the same second dataset as the saved run (as a name or a path, or a copy) and
    FRAME_DIR2 holds the frames trained on (moved to local scratch, say); else what differs."""
    from util.dataset import load_split, resolve_dataset

    if not _same_dataset(str(old[0]), str(new[0])):
        return f"--joint: {new[0]!r} != {old[0]!r} (saved): another second dataset"
    if str(old[1]) == str(new[1]):
        return None
    moved = frame_folder_differences(Path(new[1]), load_split(resolve_dataset(new[0]), "train"))
    if moved:
        return f"--joint FRAME_DIR2 {new[1]} does not hold the frames trained on: {'; '.join(moved[:3])}"
    log.info("--resume: --joint frames read from %s now (were %s)", new[1], old[1])
    return None


def check_resume_config(saved: dict, config: dict, model_dir: Path, videos: Sequence[dict] = ()) -> None:
    """A resumed run must train the same thing: refuse differing model keys or training flags, listing each.

    Tolerated: the flags that ``options.compared_on_resume`` leaves out (so the precision ``--amp_dtype auto``
    resolved to, recorded under "resolved": bf16 on one GPU, fp16 on another); DATASET as a name instead of a path
    (or a copy of the same files); another FRAME_DIR whose folders for ``videos`` (train and val) have the frame counts of the parsed labels
    (the frames moved to node-local scratch)."""
    diffs = []
    saved = {**older_config_keys(), **saved}
    for key in sorted(set(saved) | set(config)):
        if key in ("train", "pretrained"):
            continue
        if key == "dataset" and _same_dataset(str(saved.get(key)), str(config.get(key))):
            continue
        if saved.get(key) != config.get(key):
            diffs.append(f"{key}: {saved.get(key)!r} (saved) != {config.get(key)!r}")
    old, new = {**older_flags(), **saved.get("train", {})}, config.get("train", {})
    for key in sorted(set(old) | set(new)):
        if not compared_on_resume(key) or old.get(key) == new.get(key):
            continue
        if key == "dataset" and _same_dataset(str(old.get(key)), str(new.get(key))):
            continue
        if key == "joint" and old.get(key) and new.get(key):
            moved = _joint_moved(old[key], new[key])
            if moved:
                diffs.append(moved)
            continue
        if key == "frame_dir" and new.get(key):
            moved = frame_folder_differences(Path(new[key]), videos)
            if not moved:
                log.info("--resume: frames read from %s now (were %s)", new[key], old.get(key))
                continue
            diffs.append(f"FRAME_DIR {new[key]} does not hold the frames trained on: {'; '.join(moved[:3])}")
            continue
        diffs.append(f"--{key}: {old.get(key)!r} (saved) != {new.get(key)!r}")
    if diffs:
        raise DataError(f"{model_dir}/config.json: --resume with different settings: {'; '.join(diffs)}")
    was, now = (c.get("train", {}).get("resolved", {}).get("precision") for c in (saved, config))
    if was and now and was != now:  # the same flags (--amp_dtype auto), another kind of device
        log.info("--resume: trained in %s so far, in %s from here on (this device's choice)", was, now)


def load_dataset(dataset: str) -> tuple[Path, list[str], dict[str, list[dict]]]:
    """(dataset folder, classes, {split: videos}) of a dataset name or folder (splits that exist)."""
    from util.dataset import load_classes, load_split, resolve_dataset

    dataset_dir = resolve_dataset(dataset)
    classes = load_classes(dataset_dir)
    splits = {}
    for split in ("train", "val", "test", "challenge"):
        if (Path(dataset_dir) / f"{split}.json").is_file():
            splits[split] = load_split(dataset_dir, split)
    for split in ("train", "val"):
        if not splits.get(split):
            raise DataError(
                f"{dataset_dir}/{split}.json: missing or empty; training needs train and val videos"
            )
    return Path(dataset_dir), classes, splits


@dataclass(frozen=True)
class JointData:
    """The second dataset of ``--joint``: its folder, classes and train videos (only its train split is read)."""

    dataset_dir: Path
    classes: list[str]
    train: list[dict]
    frame_dir: Path


def load_joint(args: TrainOptions, classes: Sequence[str]) -> JointData | None:
    """``--joint DATASET2 FRAME_DIR2``'s dataset (None without): DataError when it has no train videos, or when it
    is the first dataset itself."""
    from util.dataset import load_classes, load_split, resolve_dataset

    if not args.joint:
        return None
    name, frame_dir = args.joint
    dataset_dir = resolve_dataset(name)
    if dataset_dir.resolve() == resolve_dataset(args.dataset).resolve():
        raise DataError(
            f"--joint {name}: that is DATASET itself; give a second dataset (e.g. SoccerNet-v2's)"
        )
    if not (dataset_dir / "train.json").is_file():
        raise DataError(
            f"{dataset_dir}/train.json: missing; --joint trains on the second dataset's train split"
        )
    train = load_split(dataset_dir, "train")
    if not train:
        raise DataError(f"{dataset_dir}/train.json: no videos to train on jointly")
    joint_classes = load_classes(dataset_dir)
    log.info(
        "joint training with %s: %d train videos, %d classes (%s), a second class head beside %d",
        dataset_dir, len(train), len(joint_classes), ", ".join(joint_classes), len(classes),
    )  # fmt: skip
    return JointData(dataset_dir, joint_classes, train, Path(frame_dir))


def resolve_defaults(args: TrainOptions, val_videos: Sequence[dict]) -> None:
    """``--start_val_epoch`` (the last NUM_VAL_EPOCHS epochs) and ``--criterion`` (the task's metric) when not
    given; Team mAP needs teams in the val labels, else mAP@1 is used, with a warning."""
    if args.start_val_epoch is None:
        args.start_val_epoch = max(0, args.num_epochs - NUM_VAL_EPOCHS)
    if args.criterion is None:
        args.criterion = default_criterion(bool(args.team))
    if args.criterion == "team_map" and not any(
        e.get("team") for v in val_videos for e in v.get("events", [])
    ):
        log.warning("the val labels carry no team: the best epoch is chosen by val mAP@1, not Team mAP@1")
        args.criterion = "map"


def check_model_dir(args: TrainOptions, config: dict, model_dir: Path, videos: Sequence[dict]) -> None:
    """Refuse to overwrite a trained model, and a --resume that would train something else (every rank checks,
    so all fail together)."""
    if list_epochs(model_dir) and not args.resume:
        raise DataError(
            f"{model_dir}: already holds checkpoints; pass --resume to continue, or choose another -s"
        )
    if args.resume and (model_dir / "config.json").exists():
        check_resume_config(load_config(model_dir), config, model_dir, videos)
