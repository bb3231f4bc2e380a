"""Inference on a video file: run_inference end to end against decoding alone and the model alone, same input.

Input (made once, cached under bench-out/inference/): a synthetic match from synthetic.library, 224p at 25 fps. Model:
an untrained E2E-Spot network (rny002_gsm + gru, clip 50, 25 fps, frames resized to 64 rows by default, 112 in
the demo), saved as a model directory. Three measurements, each the best of ``--rounds`` (the machine may be shared):

- decode alone: the frame source the model reads (util.video on the fly, resized), no model;
- model alone: ``predict_scores`` on the same frames already in memory;
- end to end: ``run_inference(video=...)`` (load the model, decode + model overlapped, events, predictions.json,
  scores.npz, timeline.png), frames over its whole wall time; and its detection stage alone.

Goal (issue 8): end to end >= 0.8 x the slower of decode alone and model alone. Also shown: the annotated video
(decode at the source's resolution, overlays, slow motion, H.264) in frames per second of source.
``python -m benchmarks.bench_inference --seconds 60 --height 224 --device cuda`` for a GPU run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tabulate import tabulate

from dataset.source import FrameSource
from model.predict import DEFAULT_BATCH_SIZE
from util.soccernet import CLASSES, TEAMS

CACHE = Path("bench-out") / "inference"
GOAL = 0.8


class ArraySource(FrameSource):
    """Frames already in memory (the model-alone baseline)."""

    def __init__(self, frames: np.ndarray, fps: float):
        self.frames, self.fps, self.num_frames, self.name = frames, fps, len(frames), "memory"

    def iter_chunks(self, chunk_len: int) -> Iterator[np.ndarray]:
        for start in range(0, len(self.frames), chunk_len):
            yield self.frames[start : start + chunk_len]


def make_inputs(seconds: float, height: int) -> tuple[Path, Path]:
    """(synthetic match video, model directory), cached."""
    import torch

    from model.common import build_model, default_config, save_checkpoint, save_config
    from synthetic.library import render_library

    library = CACHE / f"library-{seconds:g}s"
    videos = sorted(library.rglob("224p.mp4")) if library.is_dir() else []
    if not videos:
        render_library(library, games=1, seconds=seconds, seed=3)
        videos = sorted(library.rglob("224p.mp4"))
    model_dir = CACHE / f"model-{height}"
    if not (model_dir / "config.json").is_file():
        width = 2 * round(398 * height / 224 / 2)
        config = default_config(
            feature_arch="rny002_gsm",
            temporal_arch="gru",
            clip_len=50,
            fps=25.0,
            frame_height=height,
            frame_width=width,
            source_height=height,
            source_width=width,
            pretrained=False,
        )
        torch.manual_seed(0)
        save_config(model_dir, config)
        save_checkpoint(model_dir, 0, build_model(config))
    return videos[0], model_dir


def best_of(rounds: int, fn) -> tuple[float, object]:
    """Smallest wall time of ``rounds`` calls of ``fn()`` and the last result."""
    best, result = float("inf"), None
    for _ in range(rounds):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def measure(video: Path, model_dir: Path, rounds: int, batch_size: int, device: str | None) -> list[list]:
    from dataset.source import resolve_input
    from model.common import load_model
    from model.inference import run_inference
    from model.predict import model_frame_source, predict_scores, resolve_device
    from model.render import RenderOptions, render

    device = str(resolve_device(device))
    model, config, _ = load_model(model_dir, device=device)
    clip_len = int(config["clip_len"])

    def decode() -> np.ndarray:
        return np.concatenate(list(model_frame_source(config, video).iter_chunks(clip_len)))

    decode_s, frames = best_of(rounds, decode)
    n = len(frames)
    model_s, _ = best_of(
        rounds, lambda: predict_scores(model, config, ArraySource(frames, 25.0), batch_size, device=device)
    )
    out = Path(tempfile.mkdtemp(prefix="bench-inference-"))

    def infer(**kwargs) -> dict:
        return run_inference(model_dir, out, video=video, batch_size=batch_size, device=device, **kwargs)

    e2e_s, result = best_of(rounds, infer)
    assert result["num_frames"] == n, (result["num_frames"], n)
    slower = min(n / decode_s, n / model_s)
    item = resolve_input(video, None, None, None)
    # An untrained model finds few events: render with one action every 2 s, about SoccerNet-Ball's density.
    events = [
        {"frame": f, "label": CLASSES[i % len(CLASSES)], "score": 0.8, "team": TEAMS[i % 2]}
        for i, f in enumerate(range(25, n, 50))
    ]
    render_s, (_, _, written, _) = best_of(
        1, lambda: render(item, out, events, result["classes"], 25.0, n, RenderOptions(True, False, 3, 0.4))
    )
    rows = [
        ["decode alone", n / decode_s, ""],
        ["model alone", n / model_s, ""],
        [
            "end to end (run_inference)",
            n / e2e_s,
            f"{n / e2e_s / slower:.2f}x slower of the two (goal >= {GOAL})",
        ],
        [
            "  its detection stage",
            n / result["seconds"]["detect"],
            f"{n / result['seconds']['detect'] / slower:.2f}x slower of the two",
        ],
        [
            f"annotated video ({item.width}x{item.height}, H.264)",
            n / render_s,
            f"{written} frames written ({len(events)} actions slowed down 3x)",
        ],
    ]
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--seconds", type=float, default=60, help="length of the synthetic match (default: 60)"
    )
    parser.add_argument(
        "--height", type=int, default=64, help="model frame height (default: 64; the demo's model uses 112)"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="rounds per measurement, best counts (default: 2)"
    )
    parser.add_argument("--batch_size", type=int, default=DEFAULT_BATCH_SIZE, help="windows per batch")
    parser.add_argument("--device", help="cpu, cuda (default: cuda when available)")
    parser.add_argument(
        "--quick", action="store_true", help="4 s of video, 32 rows, one round (a smoke test)"
    )
    args = parser.parse_args(argv if argv is not None else [])
    if args.quick:
        args.seconds, args.height, args.rounds = 4, 32, 1
    video, model_dir = make_inputs(args.seconds, args.height)
    rows = measure(video, model_dir, args.rounds, args.batch_size, args.device)
    print(f"{video.name}: {args.seconds:g} s at 25 fps, model frames {args.height} rows high")
    print(tabulate(rows, headers=["", "frames/s", ""], floatfmt=".1f"))


if __name__ == "__main__":
    main(sys.argv[1:])
