#!/usr/bin/env python3
"""Step 5: spot the ball actions of one video and show them.

Reads a frame folder of step 1 (--frame_dir FRAME_DIR --video_name VIDEO_ID) or any video file directly (--video
FILE, decoded on the fly at the model's frame rate and size; no JPEGs written). Writes into --output_dir:
predictions.json (events with their time), events.csv (the same events for a spreadsheet), results_spotting.json (SoccerNet format, for a SoccerNet game),
scores.npz (per-frame scores, to re-threshold without rerunning the model), timeline.png, and on request frames
with overlays (--visualize, frames/) and a browser-playable H.264 video (--create_video, annotated.mp4) with the
actions labelled and a timeline bar: the whole video at the source's resolution, slowed down around each action
(every frame decoded and encoded: about as long as detection itself), or with --highlights SECONDS a highlight reel:
the best-scoring actions (of --highlight_classes / --highlight_team), each +- SECONDS, merged where they overlap, in
time order, at most --reel_share of the match (default 10 %, never under a minute or the whole video) and
--reel_max_s (default 5 minutes), no slow motion unless --slowmo_factor asks; only the frames it shows are decoded.

By default the model is used as training chose on val (MODEL_DIR/selection.json): that epoch, that post-processing
(NMS window in seconds) and those display thresholds (per class, the lowest that held a target precision on val);
--epoch, --nms_window / --nms_window_s and --score_threshold
override them. results_spotting.json holds every event (what SoccerNet's evaluator scores); predictions.json, the
video and the timeline the events scoring at least the display threshold.
"""

from __future__ import annotations

if __name__ == "__main__":  # first, before torch is imported: re-execute with tcmalloc when it is installed
    from util.allocator import use_fast_allocator

    use_fast_allocator()

import argparse
import sys
import time
from pathlib import Path

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from model.inference import run_inference
from model.inference_options import (
    DEFAULT_REEL_MAX_S,
    DEFAULT_REEL_SHARE,
    DEFAULT_SLOWMO_FACTOR,
    REEL_MIN_S,
    InferenceOptions,
)
from model.live import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_LATENCY_S,
    DEFAULT_MAX_LAG_S,
    DEFAULT_STALL_TIMEOUT_S,
    LiveSettings,
    run_live,
)
from model.predict import DEFAULT_BATCH_SIZE
from model.render import DEFAULT_SLOWMO_SPAN_S
from util.cli import ASPECT_MODES, add_prediction_flags, run_main, setup_logging


def _class_list(text: str) -> list[str] | None:
    """``SHOT,GOAL`` -> ["SHOT", "GOAL"]; an empty flag -> None (every class)."""
    return [c.strip() for c in text.split(",") if c.strip()] if text else None


def get_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags, each named after its ``InferenceOptions`` field (``--highlights``: highlights_s) and defaulting
    to it, but --model_dir, --output_dir and -v."""
    defaults = InferenceOptions()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model_dir", type=Path, required=True, help="trained model directory (config.json)")
    source = parser.add_argument_group("input (one of)")
    source.add_argument("--video", type=Path, help="a video file, decoded on the fly")
    source.add_argument(
        "--live",
        metavar="SOURCE",
        help="spot a live feed as it plays: udp://, srt://, rtsp://, rtmp://, an HLS playlist, - (a pipe on stdin) or "
        "a file a recorder is still writing (followed as it grows). Final events go to OUTPUT_DIR/events.jsonl and "
        "events.csv as they come, and to the terminal; live_summary.json at the end. Ctrl-C stops",
    )
    source.add_argument(
        "--frame_dir",
        type=Path,
        help="frame directory of step 1 (FRAME_DIR), or the video library itself (with --video_name: that video's "
        "file is decoded on the fly)",
    )
    parser.add_argument(
        "--video_name",
        help="video id under --frame_dir (e.g. league/season/game; omit when --frame_dir is the video's own "
        "frame folder); with --video, the id to record (default: the SoccerNet id of a library file, or its name)",
    )
    parser.add_argument("--output_dir", type=Path, required=True, help="where the outputs go")
    parser.add_argument("--visualize", action="store_true", help="write every frame with overlays (frames/)")
    parser.add_argument(
        "--create_video", action="store_true", help="write the annotated video (annotated.mp4)"
    )
    parser.add_argument(
        "--score_threshold",
        type=float,
        help="show events scoring at least this, every class (default: per class, the threshold that held the "
        "target precision on val, recorded by training in selection.json; 0.3 for a model that recorded none)",
    )
    parser.add_argument(
        "--labels",
        default=defaults.labels,
        help="the video's ground truth, drawn beside the predictions in the timeline (found / missed events, "
        "false detections at delta = 1 s) and added to predictions.json: a Labels-ball.json, the library folder "
        "holding <game>/Labels-ball.json (for --frame_dir), 'none', or 'auto' (default: the Labels-ball.json "
        "beside a --video file, if any)",
    )
    parser.add_argument("--max_frames", type=int, help="process only the first N frames (for testing)")
    nms = parser.add_mutually_exclusive_group()
    nms.add_argument(
        "--nms_window",
        type=int,
        help="NMS window, +- frames at the model's frame rate (default: the window the model chose on val)",
    )
    nms.add_argument("--nms_window_s", type=float, help="NMS window, +- seconds (default: the model's)")
    add_prediction_flags(parser, "the model's, config.json")
    parser.add_argument(
        "--aspect",
        choices=ASPECT_MODES,
        default=defaults.aspect,
        help="a video of another aspect ratio than the model's frames (4:3, a vertical phone video): letterbox "
        "(scaled to fit between black bars; default), crop (scaled to cover, the centre kept) or stretch (resized "
        "to the model's size, shapes distorted); a warning and the result's notes always say which",
    )
    parser.add_argument(
        "--batch_size",
        type=int,
        default=defaults.batch_size,
        help=f"clips per batch (default: {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when available)")
    parser.add_argument(
        "--slowmo_factor",
        type=int,
        default=defaults.slowmo_factor,
        help="slow motion around each action, N times slower; 1 turns it off (default: "
        f"{DEFAULT_SLOWMO_FACTOR} in the whole video, off in a highlight reel)",
    )
    parser.add_argument(
        "--slowmo_span",
        type=float,
        default=defaults.slowmo_span,
        help=f"seconds slowed down on each side of an action (default: {DEFAULT_SLOWMO_SPAN_S})",
    )
    parser.add_argument(
        "--epoch", type=int, help="checkpoint epoch (default: the one training selected on val)"
    )
    parser.add_argument(
        "--highlights",
        dest="highlights_s",
        type=float,
        metavar="SECONDS",
        help="with --create_video: a highlight reel instead of the whole match: the best-scoring actions, each "
        "+- SECONDS (overlapping windows merged, in time order), as many as fit in --reel_share and --reel_max_s",
    )
    parser.add_argument(
        "--highlight_classes",
        type=_class_list,
        metavar="CLASS,CLASS",
        help="with --highlights: cut the reel around these classes' actions only (comma-separated, e.g. SHOT,GOAL)",
    )
    parser.add_argument(
        "--highlight_team", choices=["left", "right"], help="with --highlights: that team's actions only"
    )
    parser.add_argument(
        "--reel_share",
        type=float,
        metavar="FRACTION",
        help="with --highlights: the reel lasts at most this share of the match, slow motion included, but never "
        f"less than {REEL_MIN_S:g} s (or the whole video, when shorter); 1: no share limit (default: "
        f"{DEFAULT_REEL_SHARE:g})",
    )
    parser.add_argument(
        "--reel_max_s",
        type=float,
        metavar="SECONDS",
        help="with --highlights: the reel lasts at most SECONDS, whatever the match's length; 0: no cap (default: "
        f"{DEFAULT_REEL_MAX_S:g}). --reel_share 1 --reel_max_s 0: every chosen action +- --highlights SECONDS",
    )
    live = parser.add_argument_group("with --live")
    live.add_argument(
        "--latency",
        type=float,
        default=DEFAULT_LATENCY_S,
        metavar="SECONDS",
        help="an event is written once the model has seen SECONDS of the feed after it: the scores' future context "
        "plus the post-processing's window. Shorter is sooner and less accurate; at clip_len / fps + the NMS window "
        f"the events are offline inference's (default: {DEFAULT_LATENCY_S:g})",
    )
    live.add_argument(
        "--connect_timeout",
        type=float,
        default=DEFAULT_CONNECT_TIMEOUT_S,
        metavar="SECONDS",
        help=f"give up when no frame has come in SECONDS from the start (default: {DEFAULT_CONNECT_TIMEOUT_S:g})",
    )
    live.add_argument(
        "--stall_timeout",
        type=float,
        default=DEFAULT_STALL_TIMEOUT_S,
        metavar="SECONDS",
        help="a network feed silent for SECONDS is opened again, with backoff, and the frames go on after the gap; "
        f"a followed file that has not grown for SECONDS has ended (default: {DEFAULT_STALL_TIMEOUT_S:g})",
    )
    live.add_argument(
        "--max_lag",
        type=float,
        default=DEFAULT_MAX_LAG_S,
        metavar="SECONDS",
        help="when the model falls more than SECONDS behind the feed, the frames waiting are skipped (a gap, "
        f"counted in live_summary.json) instead of the delay growing (default: {DEFAULT_MAX_LAG_S:g})",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    if args.live is not None:
        if args.video is not None or args.frame_dir is not None:
            parser.error("--live takes no --video or --frame_dir")
        if args.latency <= 0 or args.connect_timeout <= 0 or args.stall_timeout <= 0 or args.max_lag <= 0:
            parser.error("--latency, --connect_timeout, --stall_timeout and --max_lag must be positive")
        return args
    if (args.highlight_classes is not None or args.highlight_team) and args.highlights_s is None:
        parser.error("--highlight_classes and --highlight_team need --highlights SECONDS")
    if args.highlights_s is not None and args.highlights_s <= 0:
        parser.error("--highlights SECONDS must be positive")
    if (args.reel_share is not None or args.reel_max_s is not None) and args.highlights_s is None:
        parser.error("--reel_share and --reel_max_s need --highlights SECONDS")
    if (args.video is None) == (args.frame_dir is None):
        parser.error("give either --video FILE or --frame_dir FRAME_DIR [--video_name VIDEO_ID]")
    return args


class _Bars:
    """One tqdm bar per stage (frames, with frames/s), fed by run_inference's progress callback."""

    LABELS = {"decoding": "decode", "detecting": "detect", "rendering": "render"}

    def __init__(self) -> None:
        self.bars: dict[str, tqdm] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage == "decoding":  # decoding runs alongside detecting; its count shows in detect's bar
            return
        bar = self.bars.get(stage)
        if bar is None:
            for earlier in self.bars.values():  # stages run one after the other
                earlier.close()
            bar = self.bars[stage] = tqdm(
                total=total, desc=self.LABELS.get(stage, stage), unit="frame", dynamic_ncols=True
            )
        if total and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


def _video_line(result: dict, reel: bool) -> str:
    """What the annotated video is: its length against the match's, and the time rendering it took."""
    from util.video import probe_video

    match_s = result["num_frames"] / result["fps"]
    video_s = probe_video(result["video"]).duration_s
    kind = "highlight reel" if reel else "whole annotated video"
    shown = sum(t is not None for t in result.get("video_times_s") or [])
    return (
        f"{kind}: {video_s / 60:.1f} min of the {match_s / 60:.1f}-minute match ({100 * video_s / match_s:.1f} %), "
        f"{shown} of the {len(result['events'])} events shown in it; rendered in {result['seconds']['render']:.1f} s"
    )


def live_main(args: argparse.Namespace) -> int:
    """--live: events printed as they become final, until the feed ends or Ctrl-C."""

    def show(row: dict) -> None:
        team = f" {row['team']:<5}" if row.get("team") else ""
        print(
            f"{row['time']:>9}  {row['label']:<28}{team} {row['score']:.2f}   (+{row['delay_s']:.1f} s)",
            flush=True,
        )

    settings = LiveSettings(
        args.latency,
        args.connect_timeout,
        args.stall_timeout,
        args.max_lag,
        args.batch_size or DEFAULT_BATCH_SIZE,
    )
    print(f"live: {args.live} -> {args.output_dir}/events.jsonl (Ctrl-C stops)", flush=True)
    summary = run_live(
        args.model_dir, args.live, args.output_dir, settings, device=args.device, aspect=args.aspect,
        score_threshold=args.score_threshold, nms_window=args.nms_window, nms_window_s=args.nms_window_s,
        on_event=show,
    )  # fmt: skip
    delay = summary["delay_s"]
    delays = (
        f"; delay from a frame to its event: median {delay['median']:.2f} s, p95 {delay['p95']:.2f} s"
        if delay
        else ""
    )
    print(
        f"\n{summary['ended']}: {summary['frames']} frames ({summary['stream_s']:.0f} s), {summary['events']} events, "
        f"{len(summary['gaps'])} gaps, {summary['skipped_frames']} frames skipped behind the feed; model "
        f"{summary['model_load']:.2f} s per second of feed{delays}"
    )
    if summary["early_events"]:
        print(
            f"{summary['early_events']} events were written at the latency budget while a chain of NMS candidates "
            "was still open: they may differ from offline inference's (a longer --latency waits for more)"
        )
    return 0


def main(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    if args.live is not None:
        return live_main(args)
    bars = _Bars()
    started = time.perf_counter()
    try:
        with logging_redirect_tqdm():
            result = run_inference(
                args.model_dir, args.output_dir, InferenceOptions.from_namespace(args), progress=bars
            )
    finally:
        bars.close()
    seconds = time.perf_counter() - started
    print(
        f"\n{result['video_id']}: {result['num_frames']} frames at {result['fps']:g} fps, "
        f"{len(result['events'])} events shown of {len(result['all_events'])} (epoch {result['epoch']}, "
        f"{result['postprocess'].describe(result['fps'])}, shown from {result['threshold_text']}; "
        f"{seconds:.1f} s, detection "
        f"{result['num_frames'] / max(result['seconds']['detect'], 1e-9):.1f} frames/s)"
    )
    print(result["summary"])
    if result.get("video") is not None:
        print(_video_line(result, args.highlights_s is not None))
    found = result.get("ground_truth_summary")
    if found:
        print(f"ground truth: {found['found']} of {found['events']} events found at delta 1 s, "
              f"{found['missed']} missed, {found['false_alarms']} false detections (timeline.png shows which)")  # fmt: skip
    print()
    for key in ("predictions", "events_csv", "results_spotting", "scores", "timeline", "frames", "video"):
        if result.get(key) is not None:
            print(f"{key:>16}: {result[key]}")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, get_args()))
