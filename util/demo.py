"""The embedded default: the whole pipeline on the synthetic library, exactly as a user would type it.

``make demo`` runs ``python -m util.demo --out demo``. Each step's command is printed before it runs, so the demo
doubles as a walk-through of the real workflow (README, "Quick start").
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# The demo's size and schedule, chosen so that the whole demo fits in 15 minutes on a 2-core CPU (README).
DEMO = {
    "games": 6,
    "seconds": 150,
    "seed": 0,
    "sample_fps": 10,
    "height": 112,
}


@dataclass
class Step:
    title: str
    argv: list[str]


def demo_steps(out: Path, python: str = sys.executable, size: dict | None = None) -> list[Step]:
    """The commands of the demo, in order (all outputs under ``out``)."""
    s = dict(DEMO, **(size or {}))
    videos, frames, data = out / "videos", out / "frames", out / "data"
    return [
        Step(
            "Render the synthetic SoccerNet-Ball library",
            [
                python,
                "-m",
                "util.synthetic",
                str(videos),
                "--games",
                str(s["games"]),
                "--seconds",
                str(s["seconds"]),
                "--seed",
                str(s["seed"]),
            ],
        ),
        Step(
            "Step 1: extract frames",
            [
                python,
                "frames_as_jpg_soccernet_ball.py",
                str(videos),
                "-o",
                str(frames),
                "--sample_fps",
                str(s["sample_fps"]),
                "--height",
                str(s["height"]),
                "-j",
                "2",
            ],
        ),
        Step(
            "Step 2: parse labels",
            [
                python,
                "parse_soccernet_ball.py",
                str(videos),
                str(frames),
                "-o",
                str(data),
                "--splits",
                str(videos / "splits.json"),
            ],
        ),
    ]


def run_step(step: Step, index: int, total: int) -> int:
    print(f"\n[{index}/{total}] {step.title}\n$ {shlex.join(step.argv)}", flush=True)
    start = time.perf_counter()
    code = subprocess.call(step.argv)
    print(f"    ({time.perf_counter() - start:.1f} s, exit {code})", flush=True)
    return code


def get_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m util.demo", description=__doc__)
    p.add_argument("--out", type=Path, default=Path("demo"), help="where everything goes (default demo/)")
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    steps = demo_steps(args.out)[:1]  # the later steps join as their scripts land
    start = time.perf_counter()
    for i, step in enumerate(steps, 1):
        code = run_step(step, i, len(steps))
        if code != 0:
            print(f"\nstep failed: {step.title} (exit {code})", file=sys.stderr)
            return code
    print("\nNext, as the numbered steps land, the demo will run:")
    for step in demo_steps(args.out)[1:]:
        print(f"  {step.title}: {shlex.join(step.argv)}")
    print(
        "  Step 3: train an rny002 + GRU model; Step 4: evaluate mAP on the test games; Step 5: annotated video"
    )
    print(f"\nDemo finished in {time.perf_counter() - start:.0f} s; outputs under {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main(get_args()))
