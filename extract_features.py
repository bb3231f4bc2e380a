#!/usr/bin/env python3
"""Frozen features: run a backbone once over every frame of a dataset's videos and keep its per-frame features.

    extract_features.py DATASET FRAME_DIR -o FEATURE_DIR (--model_dir MODEL_DIR[:EPOCH] | -m BACKBONE)

For every video of the parsed labels' splits (DATASET = data/<name> or a folder of step 2), the backbone of a
trained model (--model_dir: its selected epoch, or EPOCH; its frame size, crop and frame rate) or an ImageNet one
(-m; --no_pretrained: random weights) runs on the centre-cropped frames, and FEATURE_DIR/<video id>.npy gets a
(num_frames, feature_dim) array at the labels' frame rate (float16 by default: half the disk and reading of
float32, and finer than the bf16 the backbone computes in under mixed precision). FRAME_DIR is a frame folder of
step 1, or a video library (its videos are decoded on the fly at the labels' frame rate and frame size).

Beside the features: FEATURE_DIR/features.json (the backbone, where its weights came from, the frame rate, frame
size and crop, dtype, feature_dim) and FEATURE_DIR/backbone.pt (the backbone's weights). Then

    train_e2e.py DATASET FEATURE_DIR -t gru -s SAVE_DIR ...

trains only the temporal head on the features (the backbone is the recorded one, frozen; -m may be left out), in
seconds per epoch on a CPU, and writes a complete model directory that eval, inference and the web app use on frames.

Each file is written atomically: an interrupted run leaves nothing that looks finished, and a rerun skips the
finished videos (--overwrite redoes them). A backbone with a temporal shift (e.g. rny002_gsm) mixes frames within
pieces of clip_len frames, here aligned to the start of each video.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before torch is imported: re-execute with tcmalloc when it is installed
    from util.allocator import use_fast_allocator

    use_fast_allocator()

import argparse  # noqa: E402 - after the allocator's re-execution, as in every entry point
import logging
import sys
import time
from pathlib import Path

from util.cli import run_main, setup_logging
from util.frame_dir import VIDEO_FILE, FrameDir
from util.io import DataError

log = logging.getLogger("extract_features")

DTYPES = ("float16", "float32")
FLOAT16_MAX = 65504.0
DEFAULT_BATCH_FRAMES = 64
DEFAULT_CLIP_LEN = 100  # -m with a temporal shift: train_e2e.py's default --clip_len
# features.json keys that say what the features are: a rerun into the same folder must agree on them.
IDENTITY_KEYS = (
    "feature_arch", "source", "model_dir", "epoch", "seed", "clip_len", "fps", "source_width", "source_height",
    "frame_height", "frame_width", "crop_dim", "dtype", "feature_dim",
)  # fmt: skip


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text}")
    return value


def get_args(argv: list[str] | None = None) -> argparse.Namespace:
    from model.common import available_backbones
    from util.soccernet import SPLITS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dataset", help="dataset name (data/<name>/) or a folder of parsed labels (step 2)")
    p.add_argument(
        "frame_dir",
        help="frame directory of step 1 (FRAME_DIR/<video id>/000000.jpg ... + fps.txt), or a video library "
        "(<league>/<season>/<game>/224p.mp4 ...: decoded on the fly)",
    )
    p.add_argument(
        "-o", "--out_dir", required=True, help="FEATURE_DIR: <video id>.npy, features.json and backbone.pt"
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model_dir",
        metavar="MODEL_DIR[:EPOCH]",
        help="the backbone of a trained model (its epoch chosen on val, or EPOCH), at its frame rate, frame size "
        "and crop; the labels must be at its frame rate",
    )
    source.add_argument(
        "-m",
        "--feature_arch",
        choices=available_backbones(),
        metavar="BACKBONE",
        help="an ImageNet backbone (timm / torchvision download its weights once; see --no_pretrained): "
        f"{', '.join(available_backbones())}",
    )
    p.add_argument(
        "--no_pretrained",
        dest="pretrained",
        action="store_false",
        help="with -m: random weights (seeded by --seed) instead of ImageNet's, e.g. offline or for tests",
    )
    p.add_argument(
        "--crop_dim",
        type=int,
        help="with -m: centre crop of this side (as train_e2e.py --crop_dim evaluates); 0 = whole frames "
        "(default). --model_dir takes the model's crop",
    )
    p.add_argument(
        "--clip_len",
        type=_positive_int,
        help="with -m and a backbone with a temporal shift (_tsm, _gsm): frames per shift window; training on "
        "the features must use the same --clip_len (default 100). --model_dir takes the model's",
    )
    p.add_argument(
        "--splits",
        nargs="+",
        choices=SPLITS,
        help="which splits' videos to extract (default: every split DATASET has); training needs train and val, "
        "and predicts test and challenge when their features are there",
    )
    p.add_argument(
        "--batch_size",
        type=_positive_int,
        default=DEFAULT_BATCH_FRAMES,
        help="frames per forward pass (rounded down to whole clip_len pieces for a backbone with a temporal shift, "
        f"at least one piece) (default {DEFAULT_BATCH_FRAMES})",
    )
    p.add_argument(
        "--dtype",
        choices=DTYPES,
        default="float16",
        help="stored precision: float16 (default; half the size, finer than bf16 autocast; a value beyond "
        "float16's range stops with an error) or float32",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int, default=0, help="with -m --no_pretrained: seeds the random weights")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="recompute videos whose features are already there (needed to change the backbone or geometry of "
        "an existing FEATURE_DIR: a rerun with other settings stops instead of mixing features)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = p.parse_args(argv)
    if args.model_dir and (not args.pretrained or args.crop_dim is not None or args.clip_len is not None):
        p.error("--no_pretrained, --crop_dim and --clip_len go with -m; --model_dir takes the model's")
    if args.crop_dim is not None and args.crop_dim < 0:
        p.error("--crop_dim must be >= 0")
    return args


# ---------------------------------------------------------------------------------------------------------------
# What to read


def load_videos(dataset: str, splits: list[str] | None) -> tuple[list[str], list[dict]]:
    """(classes, videos of the chosen splits in split order), each video entry of the parsed labels."""
    from util.dataset import load_classes, load_split, resolve_dataset
    from util.soccernet import SPLITS

    dataset_dir = resolve_dataset(dataset)
    classes = load_classes(dataset_dir)
    wanted = splits or [s for s in SPLITS if (dataset_dir / f"{s}.json").is_file()]
    videos: dict[str, dict] = {}
    for split in wanted:
        if not (dataset_dir / f"{split}.json").is_file():
            raise DataError(
                f"{dataset_dir / f'{split}.json'}: not found; parse the labels of {split} or drop it"
            )
        for video in load_split(dataset_dir, split):
            videos.setdefault(video["video"], video)
    if not videos:
        raise DataError(f"{dataset_dir}: no videos in {', '.join(wanted) or 'any split'}")
    rates = {float(v["fps"]) for v in videos.values()}
    if len(rates) != 1:
        raise DataError(
            f"{dataset_dir}: parsed labels mix frame rates {sorted(rates)}; parse one --sample_fps"
        )
    return classes, list(videos.values())


def first_frame_size(inputs: FrameDir, video: dict) -> tuple[int, int]:
    """(width, height) of a video's frames as stored: the labels' (step 2 records them), else its first JPEG."""
    if video.get("width") and video.get("height"):
        return int(video["width"]), int(video["height"])
    path = inputs.locate(video["video"], video.get(VIDEO_FILE))
    if path.is_dir():
        from dataset.source import read_jpeg
        from util.frame_folder import FRAME_NAME

        image = read_jpeg(path / FRAME_NAME.format(0))
        return image.shape[1], image.shape[0]
    raise DataError(f"{path}: the labels hold no frame size for {video['video']}; extract its frames first")


# ---------------------------------------------------------------------------------------------------------------
# The backbone


def load_backbone(args: argparse.Namespace, classes: list[str], fps: float, device):
    """(model in eval mode on ``device``, geometry config, features.json record of where the weights came from)."""
    from model.common import build_model, default_config, load_model

    if args.model_dir:
        from model.folder import ModelFolder
        from model.transfer import parse_init_from

        path, epoch = parse_init_from(args.model_dir)
        folder = ModelFolder(path)
        model, config, epoch = load_model(folder, epoch, device=device)
        if abs(float(config["fps"]) - fps) > 1e-3 * fps:
            raise DataError(
                f"{folder.config_path}: the model runs at {float(config['fps']):g} fps but the parsed labels are at "
                f"{fps:g} fps; features must be at the labels' rate (extract and parse the frames at "
                f"{float(config['fps']):g} fps)"
            )
        origin = {"source": "model", "model_dir": str(folder.path.resolve()), "epoch": epoch, "seed": None}
        return model, config, origin
    import torch

    torch.manual_seed(args.seed)
    config = default_config(
        feature_arch=args.feature_arch,
        clip_len=args.clip_len or DEFAULT_CLIP_LEN,
        classes=list(classes),
        fps=fps,
        pretrained=bool(args.pretrained),
        crop_dim=args.crop_dim or None,
    )
    model = build_model(config).to(device).eval()  # PretrainedWeightsError (a DataError) offline
    origin = {
        "source": "imagenet" if args.pretrained else "random",
        "model_dir": None,
        "epoch": None,
        "seed": None if args.pretrained else args.seed,
    }
    return model, config, origin


def geometry(config: dict, size: tuple[int, int], trained: bool) -> dict:
    """Frame size as read (``source_width/height``: what frames are resized to; ``size`` when the config does not
    say) and the backbone's input after the centre crop (``frame_height/width``), as a model trained on frames
    records them (``trained``: the config of such a model, whose crop is what it recorded)."""
    from model.predict import source_size

    width, height = source_size(config) or size
    if trained:
        crop_h, crop_w = int(config["frame_height"]), int(config["frame_width"])
    else:
        crop = config.get("crop_dim")
        crop_h, crop_w = (min(crop, height), min(crop, width)) if crop else (height, width)
    return {
        "source_width": int(width),
        "source_height": int(height),
        "frame_height": min(crop_h, int(height)),
        "frame_width": min(crop_w, int(width)),
        "crop_dim": config.get("crop_dim"),
    }


def precision_name(device) -> str:
    from model.predict import cpu_amp_enabled, cuda_amp_dtype

    if device.type == "cuda":
        import torch

        return "bf16 autocast" if cuda_amp_dtype(device) == torch.bfloat16 else "fp16 autocast"
    return "bf16 autocast" if device.type == "cpu" and cpu_amp_enabled() else "fp32"


def video_features(model, source, crop_hw: tuple[int, int], device, batch_frames: int, progress=None):
    """(num_frames, feature_dim) float32 features of a frame source: ``model.frame_features`` after
    ``model.normalise`` on the centre-cropped frames, under the project's autocast. A backbone with a temporal
    shift sees pieces of clip_len frames aligned to the video's start (the last one padded, as the model pads)."""
    import numpy as np
    import torch

    from dataset.transform import center_crop, to_clips
    from model.predict import autocast

    piece = model.clip_len if model.has_shift else 1
    chunk_len = max(piece, batch_frames // piece * piece)
    parts = []
    with torch.inference_mode():
        for frames in source.iter_chunks(chunk_len):
            clips = center_crop(to_clips(torch.from_numpy(frames)[None], device), crop_hw)
            with autocast(device):
                features = model.frame_features(model.normalise(clips))
            parts.append(features[0].float().cpu().numpy())
            if progress is not None:
                progress(len(frames))
    if not parts:
        return np.zeros((0, model.feature_dim), np.float32)
    return np.concatenate(parts)


# ---------------------------------------------------------------------------------------------------------------
# Writing


def check_existing(out_dir: Path, record: dict, overwrite: bool) -> bool:
    """Whether features.json (and backbone.pt) must be written: a folder of the same features is continued, one of
    other features is refused unless --overwrite (which removes their .npy files first)."""
    from dataset.feature import BACKBONE_FILE, FEATURES_JSON
    from util.io import load_json

    path = out_dir / FEATURES_JSON
    if not path.is_file() or not (out_dir / BACKBONE_FILE).is_file():
        return True
    old = load_json(path)
    diffs = [
        f"{k}: {old.get(k)!r} (there) != {record.get(k)!r}"
        for k in IDENTITY_KEYS
        if isinstance(old, dict) and old.get(k) != record.get(k)
    ]
    if not isinstance(old, dict) or diffs:
        if overwrite:
            # The old features go first: a crash must not leave them beside the new features.json.
            stale = list(out_dir.rglob("*.npy"))
            log.info(
                "%s: other features (%s); --overwrite: removing their %d files, recomputing every video",
                path, "; ".join(diffs), len(stale),
            )  # fmt: skip
            for old_file in stale:
                old_file.unlink()
            return True
        raise DataError(
            f"{path}: the folder holds other features ({'; '.join(diffs) or 'not a JSON object'}); choose another "
            f"-o, or pass --overwrite to recompute every video"
        )
    return overwrite


def write_array(path: Path, features, dtype: str) -> None:
    import numpy as np

    from util.io import atomic_open

    if not np.isfinite(features).all():
        raise DataError(f"{path}: the backbone gave non-finite features (NaN or inf); nothing written")
    if dtype == "float16" and features.size and float(np.abs(features).max()) > FLOAT16_MAX:
        raise DataError(
            f"{path}: features up to {float(np.abs(features).max()):.3g} exceed float16's range; rerun with "
            f"--dtype float32 (and --overwrite)"
        )
    with atomic_open(path, "wb") as f:
        np.save(f, features.astype(dtype), allow_pickle=False)


def is_finished(path: Path, num_frames: int, feature_dim: int) -> bool:
    """A features file that is there and readable, with the frames and dimension expected (headers only)."""
    from dataset.feature import load_features

    if not path.is_file():
        return False
    try:
        features = load_features(path, num_frames)
    except DataError as e:
        log.warning("%s; computing it again", e)
        return False
    if features.shape[1] != feature_dim:
        log.warning("%s: dimension %d, not %d; computing it again", path, features.shape[1], feature_dim)
        return False
    return True


def main(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    import torch
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from dataset.feature import BACKBONE_FILE, FEATURES_JSON, feature_path
    from dataset.source import LimitedSource, PrefetchSource
    from model.predict import model_frame_source, resolve_device
    from util.io import atomic_open, store_json

    classes, videos = load_videos(args.dataset, args.splits)
    fps = float(videos[0]["fps"])
    device = resolve_device(args.device)
    model, config, origin = load_backbone(args, classes, fps, device)
    inputs = FrameDir(args.frame_dir)
    size = first_frame_size(inputs, videos[0])
    geo = geometry(config, size, trained=origin["source"] == "model")
    out_dir = Path(args.out_dir)
    record = {
        "format": 1,
        "feature_arch": config["feature_arch"],
        "arch_variant": config.get("arch_variant", "house"),  # which network backbone.pt belongs to
        **origin,
        "clip_len": int(config["clip_len"]),
        "fps": fps,
        **geo,
        "dtype": args.dtype,
        "feature_dim": int(model.feature_dim),
        "precision": precision_name(device),
        "dataset": str(args.dataset),
        "frame_dir": str(args.frame_dir),
        "backbone": BACKBONE_FILE,
    }
    if check_existing(out_dir, record, args.overwrite):
        # backbone.pt first: a features.json always has its weights beside it.
        state = {k: v.detach().cpu().contiguous() for k, v in model.backbone.state_dict().items()}
        with atomic_open(out_dir / BACKBONE_FILE, "wb") as f:
            torch.save(state, f)
        store_json(out_dir / FEATURES_JSON, record)
    size = (geo["source_width"], geo["source_height"])
    crop_hw = (geo["frame_height"], geo["frame_width"])
    geometry_config = {"fps": fps, "source_width": size[0], "source_height": size[1]}
    todo = [
        v
        for v in videos
        if args.overwrite
        or not is_finished(feature_path(out_dir, v["video"]), int(v["num_frames"]), model.feature_dim)
    ]
    log.info(
        "%s (%s) -> %s: %d of %d videos to compute (%d finished), %dx%d frames cropped to %dx%d, %s, stored as %s",
        config["feature_arch"], origin["source"] if origin["source"] != "model" else args.model_dir, out_dir,
        len(todo), len(videos), len(videos) - len(todo), size[0], size[1], crop_hw[1], crop_hw[0],
        record["precision"], args.dtype,
    )  # fmt: skip
    failed: list[tuple[str, str]] = []
    started = time.perf_counter()
    total = sum(int(v["num_frames"]) for v in todo)
    with logging_redirect_tqdm(), tqdm(total=total, unit="frame", dynamic_ncols=True, smoothing=0.1) as bar:
        for video in todo:
            vid, num_frames = video["video"], int(video["num_frames"])
            bar.set_postfix_str(vid, refresh=False)
            try:
                path = inputs.locate(vid, video.get(VIDEO_FILE))
                source = model_frame_source(geometry_config, path, num_frames=num_frames)
                if source.num_frames is None:  # a video decoded on the fly: no more frames than the labels
                    source = LimitedSource(source, num_frames)
                features = video_features(
                    model, PrefetchSource(source), crop_hw, device, args.batch_size, bar.update
                )
                if len(features) != num_frames:
                    raise DataError(
                        f"{path}: {len(features)} frames read but the labels say {num_frames}; extract and parse "
                        f"the frames again"
                    )
                write_array(feature_path(out_dir, vid), features, args.dtype)
            except DataError as e:
                failed.append((vid, str(e)))
                log.error("%s: %s", vid, e)
    seconds = time.perf_counter() - started
    print(
        f"{len(todo) - len(failed)} videos written, {len(videos) - len(todo)} skipped (finished), {len(failed)} "
        f"failed; {total} frames in {seconds:.1f} s ({total / max(seconds, 1e-9):.0f} frames/s) -> {out_dir}"
    )
    if failed:
        print(f"\n{len(failed)} of {len(todo)} videos failed:", file=sys.stderr)
        for vid, error in failed:
            print(f"  {vid}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, get_args()))
