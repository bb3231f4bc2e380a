"""The embedded default: the whole pipeline on the synthetic library, exactly as a user would type it.

``make demo`` runs ``python -m synthetic.demo --out demo``: it renders a synthetic SoccerNet-Ball library, then runs the
five numbered scripts in order (extract frames, parse labels, train, evaluate, infer), printing each command before
it runs, so the demo doubles as a walk-through of the real workflow (README, "The demo"). Everything it makes goes
under ``--out``: ``videos/`` (the library), ``frames/``, ``data/`` (parsed labels), ``model/``,
``results-test.json`` (step 4's metrics), ``report/`` (step 4's report: ``report/report.html``) and ``infer/`` (step 5 on a test game's frames and on its video file).

The size and schedule (:data:`DEMO`) are chosen so that the whole demo, setup excluded, takes at most 15 minutes on
a 2-core CPU whose ffmpeg extracts 720p -> 224p at about 290 frames/s (``make bench``), with test mAP@1 and Team
mAP@1 above 0.75. At the end it prints each step's seconds and the training speed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# The demo's library, frames, model and schedule. The cues the generator draws are coloured markers, so training
# runs without colour jitter (--no-augment). The best epoch and the post-processing are chosen by val Team mAP@1 (the
# default with --team), with NMS per (class, team) (--team_nms class_team: the A/B of issue 36, README), by training
# itself (selection.json), which steps 4 and 5 then use: no NMS flag is given.
DEMO = {
    "split_counts": "8,1,2,0",  # train, val, test, challenge games
    "seconds": 120,
    "seed": 0,
    "sample_fps": 5,  # 5 fps: twice the match time per training frame of 10 fps, and mAP@1's +-0.5 s still holds
    "height": 112,
    "feature_arch": "rny002",
    "temporal_arch": "gru",
    "clip_len": 20,
    "batch_size": 8,
    "num_epochs": 12,
    "epoch_num_frames": 4000,
    "learning_rate": 0.002,
    "fg_upsample": 0.8,
}
# What the demo writes under --out (removed first, so a rerun starts clean).
OUTPUTS = ("videos", "frames", "data", "model", "infer", "report", "results-test.json")


@dataclass
class Step:
    title: str
    argv: list[str]


def first_test_game(size: dict) -> str:
    """The first test game of the library the demo renders (known before rendering: the layout is seeded)."""
    from synthetic.library import SPLITS, library_splits

    counts = dict(zip(SPLITS, (int(x) for x in size["split_counts"].split(",")), strict=True))
    return library_splits(sum(counts.values()), size["seed"], counts)["test"][0]


def demo_steps(
    out: Path, python: str = sys.executable, size: dict | None = None, from_video: bool = False
) -> list[Step]:
    """The commands of the demo, in order (all outputs under ``out``). ``from_video``: no step 1; FRAME_DIR is the
    video library itself, each step decoding the frames it needs on the fly (no JPEG written)."""
    s = dict(DEMO, **(size or {}))
    videos, data, model = out / "videos", out / "data", out / "model"
    frames = videos if from_video else out / "frames"
    game = first_test_game(s)
    # fmt: off
    render = Step(
        "Render the synthetic SoccerNet-Ball library (the stand-in for the real videos and labels)",
        [python, "-m", "synthetic.library", str(videos), "--split_counts", s["split_counts"],
         "--seconds", str(s["seconds"]), "--seed", str(s["seed"]), "-j", "2"],
    )
    extract = Step(
        "Step 1: extract frames",
        [python, "frames_as_jpg_soccernet_ball.py", str(videos), "-o", str(frames),
         "--sample_fps", str(s["sample_fps"]), "--height", str(s["height"]), "--chroma", "444", "-j", "2"],
    )
    parse = [python, "parse_soccernet_ball.py", str(videos), str(frames), "-o", str(data),
             "--splits", str(videos / "splits.json")]
    if from_video:  # the frame rate and size step 1 would have extracted at
        parse += ["--sample_fps", str(s["sample_fps"]), "--height", str(s["height"])]
    where = "the video library: frames decoded on the fly" if from_video else "the frame folders"
    # A shrunken demo (the tests) may infer on the first frames of the game only (step 5's --max_frames).
    limit = ["--max_frames", str(s["infer_max_frames"])] if s.get("infer_max_frames") else []
    return [
        render,
        *([] if from_video else [extract]),
        Step(f"Step 2: parse labels (frames counted in {where})", parse),
        Step(
            f"Step 3: train (from scratch: no pretrained weights offline), with the team head and NMS per (class, "
            f"team), reading {where}",
            [python, "train_e2e.py", str(data), str(frames), "-m", s["feature_arch"], "-t", s["temporal_arch"],
             "-s", str(model), "--clip_len", str(s["clip_len"]), "--batch_size", str(s["batch_size"]),
             "--num_epochs", str(s["num_epochs"]), "--warm_up_epochs", "1",
             "--epoch_num_frames", str(s["epoch_num_frames"]), "-lr", str(s["learning_rate"]),
             "--start_val_epoch", str(max(0, s["num_epochs"] - 3)), "--fg_upsample", str(s["fg_upsample"]), "--fg_balance",
             "--dilate_len", "1", "--team_nms", "class_team",
             "--no-mixup", "--no-augment", "--team", "--no_pretrained", "-j", "1"],
        ),
        Step(
            "Step 4: evaluate on the test games (SoccerNet mAP and Team mAP, ground truth from Labels-ball.json), "
            "with the report",
            [python, "eval_soccernet_ball.py", str(data), str(frames), str(model), "-s", "test",
             "-l", str(videos), "--results_json", str(out / "results-test.json"), "--report", str(out / "report")],
        ),
        Step(
            "Step 5a: inference on a test game of FRAME_DIR"
            + (" (the library: its video file, by id)" if from_video else " (its frame folder)"),
            [python, "inference_spot.py", "--model_dir", str(model), "--frame_dir", str(frames),
             "--video_name", game, "--output_dir", str(out / "infer" / "frames"), "--create_video", *limit],
        ),
        Step(
            "Step 5b: inference straight from the same game's video file (no JPEGs written)",
            [python, "inference_spot.py", "--model_dir", str(model), "--video", str(videos / game / "224p.mp4"),
             "--output_dir", str(out / "infer" / "video"), "--create_video", *limit],
        ),
    ]
    # fmt: on


def run_step(step: Step, index: int, total: int) -> tuple[int, float]:
    """Run one step; returns (exit status, seconds)."""
    print(f"\n[{index}/{total}] {step.title}\n$ {shlex.join(step.argv)}", flush=True)
    start = time.perf_counter()
    code = subprocess.call(step.argv)
    seconds = time.perf_counter() - start
    print(f"    ({seconds:.1f} s, exit {code})", flush=True)
    return code, seconds


def training_speed(model_dir: Path) -> str | None:
    """One line on training from loss.json: epochs, frames seen, mean frames/s, seconds spent training."""
    path = model_dir / "loss.json"
    if not path.is_file():
        return None
    history = json.loads(path.read_text())
    seconds = sum(float(e.get("train_s") or 0) for e in history)
    frames = sum(float(e.get("train_s") or 0) * float(e.get("frames_per_s") or 0) for e in history)
    if not history or seconds <= 0:
        return None
    return (
        f"Training: {len(history)} epochs, {frames:,.0f} frames at {frames / seconds:.0f} frames/s "
        f"({seconds:.0f} s in the training steps)"
    )


def timing_table(titles: list[str], seconds: list[float]) -> str:
    from tabulate import tabulate

    from util.allocator import in_use

    rows = [[title.split(" (")[0], f"{s:.0f}"] for title, s in zip(titles, seconds, strict=True)]
    rows.append(["total", f"{sum(seconds):.0f}"])
    return tabulate(rows, headers=["step", "seconds"]) + f"\n(allocator: {in_use()})"


def clean(out: Path) -> None:
    """Remove what an earlier demo wrote under ``out`` (only the demo's own outputs)."""
    for name in OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def summary(out: Path) -> str:
    """The closing lines: the test metrics and where to look."""
    lines = []
    results = out / "results-test.json"
    if results.is_file():
        metrics = json.loads(results.read_text())
        parts = [f"mAP@1 {metrics['at1']['mAP']:.3f}", f"tight mAP {metrics['tight']['mAP']:.3f}"]
        if "team_at1" in metrics:
            parts.append(f"Team mAP@1 {metrics['team_at1']['mAP']:.3f}")
        lines.append("Test games: " + ", ".join(parts) + f" ({results})")
        if (out / "report" / "report.html").is_file():
            lines.append(
                f"Why: {out / 'report' / 'report.html'} (figures, intervals, errors; open it in a browser)"
            )
    for name in ("frames", "video"):
        folder = out / "infer" / name
        lines.append(
            f"Step 5 ({name}): {folder / 'annotated.mp4'}, {folder / 'timeline.png'}, {folder / 'predictions.json'}"
        )
    lines.append(f"Watch it in the browser: make app   (python app/app.py --model_dir {out / 'model'})")
    return "\n".join(lines)


def get_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m synthetic.demo", description=__doc__)
    p.add_argument(
        "--out",
        type=Path,
        default=Path("demo"),
        help="where everything goes (default demo/); an earlier demo's outputs there are removed first",
    )
    p.add_argument(
        "--from_video",
        action="store_true",
        help="skip step 1: parse, train, evaluate and infer with FRAME_DIR = the video library, every frame decoded "
        "on the fly (no JPEG written; make demo-video)",
    )
    return p.parse_args(argv)


def main(args: argparse.Namespace, size: dict | None = None) -> int:
    clean(args.out)
    steps = demo_steps(args.out, size=size, from_video=getattr(args, "from_video", False))
    start, seconds = time.perf_counter(), []
    for i, step in enumerate(steps, 1):
        code, took = run_step(step, i, len(steps))
        seconds.append(took)
        if code != 0:
            print(f"\nstep failed: {step.title} (exit {code})", file=sys.stderr)
            return code
    minutes, rest = divmod(round(time.perf_counter() - start), 60)
    print(f"\nDemo finished in {minutes} min {rest:02d} s; everything is under {args.out}/")
    print(timing_table([s.title for s in steps], seconds))
    speed = training_speed(args.out / "model")
    if speed:
        print(speed)
    print(summary(args.out))
    return 0


if __name__ == "__main__":
    from util.allocator import use_fast_allocator

    use_fast_allocator()
    sys.exit(main(get_args()))
