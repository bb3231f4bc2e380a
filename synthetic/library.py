"""A synthetic SoccerNet-Ball library: real video files and Labels-ball.json in SoccerNet's layouts.

The real SoccerNet-Ball data needs an NDA and the internet; every test and the demo use this instead.

This module renders a whole library (the process pool, the folders, Labels-*.json, splits.json and synthetic.json)
and is its command line; the rooms it calls hold the parts: synthetic/match.py what happens in a video (players,
events, the ball, each class's marker), synthetic/draw.py how it is drawn, synthetic/encode.py the video format and
its repeatable H.264, synthetic/labels.py the game names, splits and SoccerNet annotations. Their public names are
importable from here as before.

``label_format="v2"`` makes a SoccerNet-v2-style library instead, to pretrain on before fine-tuning on the Ball
library: Labels-v2.json with eight of SoccerNet-v2's classes (``MARKERS_V2``), each drawn with its own marker (shapes
and colours none of the Ball classes uses), in the halves layout, season ``SEASON_V2`` and other random draws than
the Ball library of the same seed; ``team`` is the acting club, "home" (the red club, named first) or "away".

Usage: ``python -m synthetic.library OUT_DIR [--games N --seconds S --seed K --layout game|halves
--resolution 224p|720p --fps F --label_format ball|v2]``
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

from synthetic.draw import TEAM_COLOURS, render_frames
from synthetic.encode import FRAME_SIZES, X264_OPTIONS, VideoSpec, parse_fps, write_video
from synthetic.labels import (
    CLUB_NAMES,
    LABEL_FORMATS,
    LEAGUE,
    SEASON,
    SEASON_V2,
    SPLITS,
    annotations,
    game_names,
    library_splits,
    split_counts,
)
from synthetic.match import MARKER_TABLES, MARKERS, MARKERS_V2, Event, Match, sample_events
from util.io import store_json
from util.soccernet import LABEL_FILE, LABEL_FILE_V2, half_video_name, one_video_name

# What other code imports from here (the names moved to the rooms above stay importable from synthetic.library).
__all__ = [
    "CLUB_NAMES",
    "FRAME_SIZES",
    "LABEL_FORMATS",
    "LEAGUE",
    "MARKERS",
    "MARKERS_V2",
    "MARKER_TABLES",
    "SEASON",
    "SEASON_V2",
    "SPLITS",
    "TEAM_COLOURS",
    "X264_OPTIONS",
    "Event",
    "VideoSpec",
    "annotations",
    "game_names",
    "get_args",
    "library_splits",
    "main",
    "parse_fps",
    "render_library",
    "render_video",
    "split_counts",
    "write_video",
]

log = logging.getLogger(__name__)


def render_video(
    path: Path, spec: VideoSpec, seed: int | list[int], left_club: str = "red", markers: dict = MARKERS
) -> list[Event]:
    """Render one video to ``path`` and return its events (frames at the video's fps) of ``markers``' classes."""
    rng = np.random.default_rng(seed)
    fps = float(spec.fps)
    match = Match(rng, spec.num_frames / fps, left_club)
    events = sample_events(rng, spec.num_frames, fps, markers)
    write_video(path, render_frames(spec, match, events, rng), spec)
    return events


def _render_job(job: tuple[Path, VideoSpec, int | list[int], str, str]) -> list[Event]:
    path, spec, seed, left_club, label_format = job
    return render_video(path, spec, seed=seed, left_club=left_club, markers=MARKER_TABLES[label_format])


def render_library(
    out_dir: str | Path,
    games: int = 2,
    seconds: float = 60.0,
    seed: int = 0,
    layout: str | None = None,
    resolution: str = "224p",
    fps: float | str = 25,
    progress=None,
    num_workers: int = 1,
    counts: dict[str, int] | None = None,
    label_format: str = "ball",
) -> dict:
    """Render a whole library into ``out_dir``; returns its splits ({split: [game, ...]}).

    ``progress``, if given, is called with (done_videos, total_videos) after each video; ``num_workers`` > 1
    renders that many videos at once in separate processes (the same library, only sooner); ``counts``
    ({split: games}) replaces SoccerNet-Ball's proportions of train, val, test and challenge games.
    ``label_format="v2"`` writes a SoccerNet-v2-style library (``MARKERS_V2``' classes, Labels-v2.json, season
    ``SEASON_V2``, halves only); ``layout`` defaults to "game" for Ball and "halves" for v2.
    """
    if label_format not in LABEL_FORMATS:
        raise ValueError(f"label_format must be one of {list(LABEL_FORMATS)}, not {label_format!r}")
    if layout is None:
        layout = "halves" if label_format == "v2" else "game"
    if label_format == "v2" and layout != "halves":
        raise ValueError(f"a SoccerNet-v2 library is in the halves layout, not {layout!r}")
    if layout not in ("game", "halves"):
        raise ValueError(f"layout must be 'game' or 'halves', not {layout!r}")
    if resolution not in FRAME_SIZES:
        raise ValueError(f"resolution must be one of {sorted(FRAME_SIZES)}, not {resolution!r}")
    out_dir = Path(out_dir)
    fps_q = parse_fps(fps)
    width, height = FRAME_SIZES[resolution]
    spec = VideoSpec(width, height, fps_q, int(round(seconds * float(fps_q))))
    splits = library_splits(games, seed, counts, label_format)
    season = SEASON_V2 if label_format == "v2" else SEASON
    names = game_names(games, seed, int(season[:4]))
    halves = (1, 2) if layout == "halves" else (1,)
    jobs = []
    for g, name in enumerate(names):
        for half in halves:
            file = half_video_name(half, resolution) if layout == "halves" else one_video_name(resolution)
            left_club = "red" if half == 1 else "blue"  # the clubs swap ends at half time
            job_seed = seed * 100003 + g * 101 + half
            # A v2 library draws other matches than the Ball library of the same seed (pretraining data that is
            # not the fine-tuning data in other colours).
            video_seed = [job_seed, 2] if label_format == "v2" else job_seed
            jobs.append((out_dir / LEAGUE / season / name / file, spec, video_seed, left_club, label_format))
    events = _run_jobs(jobs, num_workers, progress)
    for g, name in enumerate(names):
        labels = []
        for i, half in enumerate(halves):
            left_club = "red" if half == 1 else "blue"
            labels += annotations(events[g * len(halves) + i], fps_q, half, label_format, left_club)
        labels_doc = {"UrlLocal": f"{LEAGUE}/{season}/{name}/", "UrlYoutube": "", "annotations": labels}
        label_file = LABEL_FILE
        if label_format == "v2":
            _, home, away = name.split(" - ")
            labels_doc = {**labels_doc, "gameHomeTeam": home, "gameAwayTeam": away}
            label_file = LABEL_FILE_V2
        store_json(out_dir / LEAGUE / season / name / label_file, labels_doc, indent=4)
    store_json(out_dir / "splits.json", splits)
    info = {
        "generator": "synthetic.library",
        "games": games,
        "seconds": seconds,
        "seed": seed,
        "layout": layout,
        "resolution": resolution,
        "fps": str(fps_q),
        "classes": list(MARKER_TABLES[label_format]),
    }
    if label_format != "ball":  # (a Ball library's synthetic.json stays as it was)
        info["label_format"] = label_format
    store_json(out_dir / "synthetic.json", info)
    return splits


def _run_jobs(jobs: list, num_workers: int, progress) -> list[list[Event]]:
    """Events of each rendering job, in the order of ``jobs``."""
    if num_workers <= 1 or len(jobs) <= 1:
        results = []
        for job in jobs:
            results.append(_render_job(job))
            if progress is not None:
                progress(len(results), len(jobs))
        return results
    from concurrent.futures import ProcessPoolExecutor, as_completed

    results: list = [None] * len(jobs)
    with ProcessPoolExecutor(min(num_workers, len(jobs))) as pool:
        futures = {pool.submit(_render_job, job): i for i, job in enumerate(jobs)}
        for done, future in enumerate(as_completed(futures), 1):
            results[futures[future]] = future.result()
            if progress is not None:
                progress(done, len(jobs))
    return results


def get_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m synthetic.library",
        description="Render a synthetic SoccerNet-Ball library (videos + Labels-ball.json + splits.json), or with "
        "--label_format v2 a SoccerNet-v2-style one (Labels-v2.json) to pretrain on.",
    )
    p.add_argument("out_dir", type=Path, help="where to write the library")
    p.add_argument("--games", type=int, default=2, help="number of games (default 2)")
    p.add_argument("--seconds", type=float, default=60.0, help="length of each video in seconds (default 60)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same library")
    p.add_argument(
        "--layout",
        choices=("game", "halves"),
        default=None,
        help="'game': one video per game (SoccerNet-Ball 2024/2025, <game>/224p.mp4; the default); "
        "'halves': two videos per game (2023 / SoccerNet-v2, <game>/1_224p.mkv, 2_224p.mkv; the only one of v2)",
    )
    p.add_argument(
        "--label_format",
        choices=LABEL_FORMATS,
        default="ball",
        help="'ball' (default): SoccerNet-Ball classes and Labels-ball.json; 'v2': a SoccerNet-v2-style library to "
        f"pretrain on: Labels-v2.json with {len(MARKERS_V2)} of v2's classes, each drawn with a marker no Ball "
        "class uses, team home/away, in halves, in season " + SEASON_V2,
    )
    p.add_argument("--resolution", choices=tuple(FRAME_SIZES), default="224p", help="398x224 or 1280x720")
    p.add_argument("--fps", default="25", help="frame rate of the videos, e.g. 25, 29.97, 50 (default 25)")
    p.add_argument(
        "-j",
        "--num_workers",
        type=int,
        default=1,
        help="videos rendered at once, one process each (default 1)",
    )
    p.add_argument(
        "--split_counts",
        metavar="T,V,E,C",
        help="games in train, val, test and challenge (e.g. 8,1,2,0; default: SoccerNet-Ball's proportions "
        "4:1:2:2 of --games); sets --games to their sum",
    )
    args = p.parse_args(argv)
    if args.layout is None:
        args.layout = "halves" if args.label_format == "v2" else "game"
    elif args.label_format == "v2" and args.layout != "halves":
        p.error("--label_format v2: a SoccerNet-v2 library is in the halves layout (leave --layout out)")
    args.counts = None
    if args.split_counts:
        try:
            values = [int(x) for x in args.split_counts.split(",")]
        except ValueError:
            values = []
        if len(values) != len(SPLITS) or min(values) < 0 or sum(values) < 1:
            p.error(f"--split_counts: four non-negative counts T,V,E,C, not {args.split_counts!r}")
        args.counts = dict(zip(SPLITS, values, strict=True))
        args.games = sum(values)
    return args


def main(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    if args.games < 1 or args.seconds <= 0:
        print("error: --games must be >= 1 and --seconds > 0", file=sys.stderr)
        return 2
    per_game = 2 if args.layout == "halves" else 1
    with tqdm(total=args.games * per_game, desc="rendering videos", unit="video") as bar:
        splits = render_library(
            args.out_dir,
            games=args.games,
            seconds=args.seconds,
            seed=args.seed,
            layout=args.layout,
            resolution=args.resolution,
            fps=args.fps,
            progress=lambda done, total: bar.update(done - bar.n),
            num_workers=args.num_workers,
            counts=args.counts,
            label_format=args.label_format,
        )
    print(
        f"wrote {args.games} games to {args.out_dir}: " + json.dumps({k: len(v) for k, v in splits.items()})
    )
    return 0


if __name__ == "__main__":
    from util.allocator import use_fast_allocator

    use_fast_allocator()
    sys.exit(main(get_args()))
