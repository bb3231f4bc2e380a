"""Training input pipeline: JPEG decode frames/s, and loader clips/s with -j 0/1/2 against the training step.

Prints (all measured in this run, on 398x224 frames as step 1 writes them at 224p):
- JPEG decode frames/s of ``dataset.frame.read_jpeg`` (OpenCV / libjpeg-turbo), against torchvision's
  ``decode_jpeg`` (libjpeg-turbo too) and PIL as baselines;
- DataLoader clips/s of ``FrameClipDataset`` with 0, 1 and 2 workers, each as a ratio to the model's own training
  rate (rny002_gsm + gru, forward + backward + AdamW step on the same clips; AMP on CUDA when there is a GPU).
  A ratio >= 1 means the loader keeps up with training.

Run: ``python -m benchmarks.bench_loader`` (part of ``make bench``), or with ``--quick`` for a smaller run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

WIDTH, HEIGHT = 398, 224
NUM_FRAMES = 240
CLIP_LEN = 16
BATCH_SIZE = 2
CLASSES = ["PASS", "DRIVE"]


def write_frames(folder: Path, num_frames: int = NUM_FRAMES) -> None:
    """Frames that compress like broadcast video (a textured pitch with moving blobs), ~20 KB each at q90."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    base = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    base[:] = (40, 140, 50)
    base[:, ::40] = (60, 170, 70)
    noise = rng.integers(0, 24, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    for i in range(num_frames):
        image = cv2.add(base, noise)
        for k in range(14):
            x = int((k * 37 + i * (1 + k % 3)) % WIDTH)
            cv2.circle(image, (x, 40 + (k * 23) % (HEIGHT - 60)), 4, (200, 30 * (k % 2), 30), -1)
        cv2.imwrite(str(folder / f"{i:06d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    (folder / "fps.txt").write_text("25.0\n")


def rate(fn, count: int, min_seconds: float = 1.0) -> float:
    """Items per second of ``fn()`` (which handles ``count`` items), repeated for at least ``min_seconds``."""
    fn()  # warm up
    runs, start = 0, time.perf_counter()
    while True:
        fn()
        runs += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return runs * count / elapsed


def decode_rates(folder: Path, num_frames: int, min_seconds: float = 1.0) -> dict[str, float]:
    from PIL import Image
    from torchvision.io import decode_jpeg, read_file

    from dataset.source import read_jpeg

    paths = [folder / f"{i:06d}.jpg" for i in range(num_frames)]
    return {
        "read_jpeg (OpenCV)": rate(lambda: [read_jpeg(p) for p in paths], len(paths), min_seconds),
        "torchvision decode_jpeg": rate(
            lambda: [decode_jpeg(read_file(str(p))) for p in paths], len(paths), min_seconds
        ),
        "PIL": rate(
            lambda: [np.asarray(Image.open(p).convert("RGB")) for p in paths], len(paths), min_seconds
        ),
    }


def loader_rate(frame_dir: Path, workers: int, num_batches: int) -> float:
    from torch.utils.data import DataLoader

    from dataset.frame import EpochSampler, FrameClipDataset

    videos = [{"video": "v", "num_frames": NUM_FRAMES, "events": []}]
    num_clips = num_batches * BATCH_SIZE
    data = FrameClipDataset(frame_dir, videos, CLASSES, clip_len=CLIP_LEN, num_clips=num_clips)
    loader = DataLoader(
        data,
        batch_size=BATCH_SIZE,
        sampler=EpochSampler(num_clips),
        num_workers=workers,
        persistent_workers=workers > 0,
    )
    for _ in loader:  # warm up (starts the workers)
        pass
    start = time.perf_counter()
    for _ in loader:
        pass
    return num_clips / (time.perf_counter() - start)


def train_step_rate(device: torch.device, steps: int, min_seconds: float = 2.0) -> float:
    """Clips/s of the model's own training step on clips of the benchmark's size."""
    from dataset.transform import ClipAugment, to_clips
    from model.common import build_model, default_config
    from model.predict import autocast
    from model.train import spot_loss

    config = default_config(
        feature_arch="rny002_gsm",
        temporal_arch="gru",
        clip_len=CLIP_LEN,
        classes=CLASSES,
        frame_height=HEIGHT,
        frame_width=WIDTH,
        pretrained=False,
    )
    model = build_model(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters())
    frames = torch.randint(0, 256, (BATCH_SIZE, CLIP_LEN, HEIGHT, WIDTH, 3), dtype=torch.uint8)
    targets = torch.nn.functional.one_hot(torch.zeros(BATCH_SIZE, CLIP_LEN, dtype=torch.long), 3).float()
    targets, weights = targets.to(device), torch.tensor([1.0, 5.0, 5.0], device=device)
    augment, generator = ClipAugment(), torch.Generator().manual_seed(0)
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda")

    def step():
        clips, _ = augment(to_clips(frames, device), generator)
        with autocast(device):
            loss = spot_loss(model(clips), targets, weights)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    return rate(lambda: [step() for _ in range(steps)], steps * BATCH_SIZE, min_seconds=min_seconds)


def get_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--quick", action="store_true", help="fewer frames and batches, each rate timed once (a smoke test)"
    )
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = get_args(argv if argv is not None else [])
    num_frames, num_batches = (60, 4) if args.quick else (120, 12)
    min_seconds = (
        0.0 if args.quick else 1.0
    )  # how long each rate is repeated for (a quick run times one pass)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(
        f"bench_loader: {WIDTH}x{HEIGHT} JPEG frames, clips of {CLIP_LEN}, batches of {BATCH_SIZE}, {os.cpu_count()} CPUs"
    )
    with tempfile.TemporaryDirectory() as tmp:
        frame_dir = Path(tmp)
        write_frames(frame_dir / "v")
        decode = decode_rates(frame_dir / "v", num_frames, min_seconds)
        baseline = decode["torchvision decode_jpeg"]
        for name, value in decode.items():
            print(f"  JPEG decode {name:26s} {value:8.0f} frames/s  ({value / baseline:.2f}x torchvision)")
        steps = (
            1 if args.quick else 2 if device.type == "cpu" else 10
        )  # quick: one timed step after the warm-up
        train = train_step_rate(device, steps=steps, min_seconds=2 * min_seconds)
        amp = " with AMP" if device.type == "cuda" else ""
        print(
            f"  training step on {device.type}{amp}: {train:8.2f} clips/s ({train * CLIP_LEN:.0f} frames/s), "
            f"rny002_gsm + gru"
        )
        for workers in (0, 1, 2):
            clips = loader_rate(frame_dir, workers, num_batches)
            print(
                f"  loader -j {workers}: {clips:8.2f} clips/s ({clips * CLIP_LEN:.0f} frames/s) = "
                f"{clips / train:.2f}x the training step"
            )


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
