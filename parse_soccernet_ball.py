#!/usr/bin/env python3
"""Parse SoccerNet-Ball labels (Labels-ball.json per game) into the training format.

Writes OUT_DIR/class.txt and OUT_DIR/{train,val,test,challenge}.json: one entry per video (per game in the
2024/2025 one-video layout, per half in the 2023 halves layout) with its frame count, frame rate, frame size and
events (frame, label, team, visibility), frames counted at the rate in the frame folder's fps.txt.

FRAME_DIR may also be the video library itself (the folder step 1 reads, often LABEL_DIR): each video's frames are
then counted as step 1 would write them at --sample_fps and --height (demuxing only, no decoding), its entry names
the file it counted (video_file), and training, evaluation and inference decode those frames on the fly: no JPEGs.

--labels v2 parses SoccerNet-v2 action spotting instead (Labels-v2.json per game, 17 classes, two halves per game:
video ids <game>/1 and <game>/2), the pretraining source for SoccerNet-Ball; it is chosen by itself when the library
holds Labels-v2.json files and no Labels-ball.json. v2's team is the club (home / away), not the side of the pitch
that --team learns: its events keep it as "home_away" and have no "team".
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before torch is imported: re-execute with tcmalloc when it is installed
    from util.allocator import use_fast_allocator

    use_fast_allocator()

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from util.cli import run_main, setup_logging
from util.frame_dir import VIDEO_FILE
from util.io import DataError, load_text_lines
from util.parse import ParseNotes, detect_label_format, labels_table, parse_library, write_parsed
from util.soccernet import FORMAT_NAMES, LABEL_FILES, LABEL_FORMATS, default_splits, load_splits
from util.video import DEFAULT_HEIGHT


def get_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "label_dir",
        type=Path,
        help="SoccerNet-Ball library: <league>/<season>/<game>/Labels-ball.json (or Labels-v2.json: --labels)",
    )
    parser.add_argument(
        "frame_dir",
        type=Path,
        help="extracted frames (frames_as_jpg_soccernet_ball.py), or the video library itself to train from the "
        "videos without extracting frames",
    )
    parser.add_argument(
        "-o", "--out_dir", type=Path, required=True, help="output folder, e.g. data/soccernet_ball"
    )
    parser.add_argument(
        "--splits",
        type=Path,
        help="splits.json {train: [game, ...], val, test, challenge} (games relative to LABEL_DIR); "
        "default: the SoccerNet package's game lists of the labels' task (ball spotting, or SoccerNet-v2 action "
        "spotting with --labels v2)",
    )
    parser.add_argument(
        "--labels",
        choices=("auto", *LABEL_FORMATS),
        default="auto",
        help="label format: 'ball' (SoccerNet-Ball, Labels-ball.json), 'v2' (SoccerNet-v2 action spotting, "
        "Labels-v2.json, 17 classes, games in halves; its home/away team is not left/right, so events keep it as "
        "'home_away' and no 'team'), or 'auto' (default): v2 when the library (the --splits games, if given) "
        "holds Labels-v2.json files and no Labels-ball.json, else ball",
    )
    parser.add_argument(
        "--classes",
        type=Path,
        help="class list, one a line; default: the classes the labels use, in SoccerNet's order (its 12 Ball "
        "classes, or v2's 17) when they are SoccerNet's, else sorted",
    )
    parser.add_argument(
        "--skip_bad",
        action="store_true",
        help="report and skip bad games (a label file or a video that cannot be read) instead of stopping with "
        "nothing written",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="refuse a game for one bad annotation (an unknown half, past its video's end, an unknown label) and "
        "a game of the split lists that is not in the library, instead of dropping that annotation or leaving the "
        "game out with a warning (each named, and counted in the summary)",
    )
    video = parser.add_argument_group(
        "when FRAME_DIR is the video library (a video without a frame folder); the same flags as step 1"
    )
    video.add_argument(
        "--sample_fps",
        type=float,
        default=25.0,
        help="frame rate to decode the videos at (default 25, SoccerNet-Ball's, as step 1's default)",
    )
    video.add_argument(
        "--height",
        type=int,
        default=DEFAULT_HEIGHT,
        help=f"frame height in pixels, the width keeping the aspect ratio (default {DEFAULT_HEIGHT}); 0 keeps the "
        "source size",
    )
    video.add_argument(
        "--resolution",
        default="224p",
        help="which file to read when a game has several (224p.mp4 / 720p.mp4); the other is used when it is "
        "missing (default: 224p)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.sample_fps <= 0:
        parser.error("--sample_fps must be > 0")
    if args.height < 0:
        parser.error("--height must be >= 0")
    return args


def _load_classes(path: Path) -> list[str]:
    classes = load_text_lines(path)
    if not classes:
        raise DataError(f"{path}: no classes (one class name a line)")
    duplicates = sorted({c for c in classes if classes.count(c) > 1})
    if duplicates:
        raise DataError(f"{path}: class(es) listed twice: {duplicates}")
    return classes


def main(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    for folder in (args.label_dir, args.frame_dir):
        if not folder.is_dir():
            raise DataError(f"{folder}: folder not found")
    splits = load_splits(args.splits) if args.splits else None
    label_format = args.labels
    if label_format == "auto":
        games = None if splits is None else [g for split in splits.values() for g in split]
        label_format = detect_label_format(args.label_dir, games)
        if label_format != "ball":
            print(
                f"labels: {FORMAT_NAMES[label_format]} ({LABEL_FILES[label_format]} found; --labels sets it)"
            )
    if splits is None:
        splits = default_splits(label_format)
    classes = _load_classes(args.classes) if args.classes else None
    games = sum(len(g) for g in splits.values())
    notes = ParseNotes()
    # Counting frames in videos demuxes each one (about 1 s per hour of 224p video): show progress then.
    with tqdm(total=games, unit="game", disable=None, leave=False) as bar:
        classes, parsed, problems = parse_library(
            args.label_dir,
            args.frame_dir,
            splits,
            classes=classes,
            skip_bad=args.skip_bad,
            label_format=label_format,
            sample_fps=args.sample_fps,
            height=args.height or None,
            resolution=args.resolution,
            progress=lambda _: bar.update(),
            strict=args.strict,
            notes=notes,
        )
    from_videos = sum(1 for videos in parsed.values() for v in videos if v.get(VIDEO_FILE))
    if from_videos:
        print(
            f"{from_videos} video(s) read from the library in {args.frame_dir} (no frame folder): frames at "
            f"{args.sample_fps:g} fps, {args.height or 'source'} px high, decoded on the fly by training and eval"
        )
    write_parsed(args.out_dir, classes, parsed)
    print(labels_table(classes, parsed))
    for problem in problems:
        print(f"skipped {problem}", file=sys.stderr)
    for line in notes.summary():
        print(line, file=sys.stderr)
    print(f"wrote {args.out_dir}/class.txt ({len(classes)} classes) and {{train,val,test,challenge}}.json")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, get_args()))
