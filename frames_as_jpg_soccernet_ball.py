#!/usr/bin/env python3
"""Step 1: extract JPEG frames from a SoccerNet-Ball video library (or any videos) at a fixed frame rate.

Writes FRAME_DIR/<video id>/000000.jpg ... plus fps.txt. Frames are resampled by timestamp (output frame k is
the source frame nearest to time k / sample_fps), so 29.97 fps, 50 fps and variable-frame-rate sources give a
true sample_fps. Each video is written into a hidden temporary folder and renamed into place when complete: a
rerun skips finished videos and redoes interrupted ones.

Layouts: <league>/<season>/<game>/224p.mp4 (video id <league>/<season>/<game>), halves <game>/1_224p.mkv
(video id <game>/1), a flat folder of videos, or one video file (id = file name without extension).
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before torch is imported: re-execute with tcmalloc when it is installed
    import os

    # Step 1 does no linear algebra, but numpy's OpenBLAS starts a thread per core when imported and they
    # spin: 0.07 s of CPU, a few % of a 1,600-frame 720p video. Set before the re-execution, which inherits it
    # (and so do the -j workers).
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from util.allocator import use_fast_allocator

    use_fast_allocator()

import argparse
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from util.cli import run_main, setup_logging
from util.extract import CHROMA_SAMPLING, DEFAULT_CHROMA, DEFAULT_QUALITY, ExtractResult, extract_videos
from util.soccernet import find_videos, parse_shard, take_shard
from util.video import DEFAULT_HEIGHT


def _shard(text: str) -> tuple[int, int]:
    try:
        return parse_shard(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def get_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "video_dir",
        type=Path,
        help="SoccerNet video library (either layout), a folder of videos, or one video file",
    )
    parser.add_argument(
        "-o", "--out_dir", type=Path, required=True, help="frame directory to write (FRAME_DIR)"
    )
    parser.add_argument(
        "--sample_fps",
        type=float,
        default=25.0,
        help="output frames per second (SoccerNet-Ball's 25: its labels are scored at 25 fps; the seed README's 2 "
        "would put events up to 0.5 s early); 0 keeps every source frame",
    )
    parser.add_argument(
        "-j",
        "--num_workers",
        type=int,
        default=max(1, (os.cpu_count() or 1) // 4),
        help="videos extracted in parallel, one process each (default: CPU count / 4, at least 1)",
    )
    parser.add_argument(
        "--height",
        type=int,
        default=DEFAULT_HEIGHT,
        help=f"frame height in pixels; the width keeps the aspect ratio, rounded to even (default: {DEFAULT_HEIGHT}, "
        "398x224 for 16:9); 0 keeps the source size",
    )
    parser.add_argument(
        "--quality",
        type=int,
        default=DEFAULT_QUALITY,
        help=f"JPEG quality 1-100 (default: {DEFAULT_QUALITY})",
    )
    parser.add_argument(
        "--chroma",
        choices=sorted(CHROMA_SAMPLING),
        default=DEFAULT_CHROMA,
        help="JPEG colour subsampling: 420 (half-resolution colour, as ffmpeg writes) or 444 (full-resolution "
        f"colour: small coloured objects keep their colour, files ~30%% larger) (default: {DEFAULT_CHROMA})",
    )
    parser.add_argument(
        "--resolution",
        default="224p",
        help="which file to read when a game has several (224p.mp4 / 720p.mp4, 1_224p.mkv / 1_720p.mkv); "
        "the other is used when it is missing (default: 224p)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="re-extract videos whose frames are already complete (needed to change the --sample_fps or "
        "--height of finished folders: a rerun at other settings reports them instead of skipping them)",
    )
    parser.add_argument(
        "--shard",
        type=_shard,
        default=(0, 1),
        metavar="K/N",
        help="take every N-th video starting at the K-th (0 <= K < N), to split a library over machines "
        "(e.g. --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT); default 0/1, all videos",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    if args.sample_fps < 0:
        parser.error("--sample_fps must be >= 0")
    if args.num_workers < 1:
        parser.error("-j/--num_workers must be >= 1")
    if args.height < 0:
        parser.error("--height must be >= 0")
    if not 1 <= args.quality <= 100:
        parser.error("--quality must be between 1 and 100")
    return args


def extraction_table(results: list[ExtractResult], wall_s: float) -> str:
    """Videos, frames, output fps and seconds per outcome, plus the overall throughput."""
    rows = []
    for status in ("extracted", "skipped", "failed"):
        group = [r for r in results if r.status == status]
        if not group:
            continue
        rates = sorted({round(r.fps, 3) for r in group if r.fps})
        rows.append(
            [
                status if status != "skipped" else "skipped (done)",
                len(group),
                sum(r.frames for r in group),
                ", ".join(f"{fps:g}" for fps in rates),
                round(sum(r.duration_s for r in group), 1),
            ]
        )
    extracted = sum(r.frames for r in results if r.status == "extracted")
    from tabulate import tabulate  # here: the command starts 0.03 s sooner

    table = tabulate(rows, headers=["", "videos", "frames", "fps", "video seconds"])
    return f"{table}\n{extracted} frames written in {wall_s:.1f} s ({extracted / max(wall_s, 1e-9):.0f} frames/s)"


def main(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    entries = find_videos(args.video_dir, args.resolution)
    shard, num_shards = args.shard
    entries = take_shard(entries, shard, num_shards)
    shard_note = f" (shard {shard}/{num_shards})" if num_shards > 1 else ""
    print(
        f"{len(entries)} videos{shard_note} -> {args.out_dir} at {args.sample_fps:g} fps, height {args.height}"
    )
    started = time.perf_counter()
    with logging_redirect_tqdm(), tqdm(total=0, unit="frame", dynamic_ncols=True, smoothing=0.1) as bar:
        results = extract_videos(
            [(e.video_id, e.path) for e in entries],
            args.out_dir,
            sample_fps=args.sample_fps,
            height=args.height or None,
            quality=args.quality,
            num_workers=args.num_workers,
            overwrite=args.overwrite,
            progress=bar,
            chroma=args.chroma,
        )
    print(extraction_table(results, time.perf_counter() - started))
    failed = [r for r in results if r.status == "failed"]
    if failed:
        print(f"\n{len(failed)} of {len(results)} videos failed:", file=sys.stderr)
        for r in failed:
            print(f"  {r.video_id}: {r.error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, get_args()))
