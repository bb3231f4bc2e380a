"""The CPU levers: training and inference with glibc's malloc against tcmalloc, and fp32 against bf16 autocast
(on a CPU with native bf16: AMX / AVX512-BF16), same work, same run.

Each measurement runs in a fresh child process per setup (``LD_PRELOAD`` cannot change inside a process),
alternating the setups for ``--rounds`` rounds and keeping each one's best, so a burst from another process
hits both alike. Three workloads:

- training step of the demo's model (rny002 + gru + team head, frames 112 x 200): a batch of 8 clips x 20
  frames, forward + spot_loss + backward + AdamW (model/train.py's step), in frames/s, with the minor page faults per step and the share of CPU time spent in the kernel;
- inference with bench_inference's model (rny002_gsm + gru, clip 50) at the demo's 112 rows, on frames:
  ``predict_scores`` on decoded frames in memory (the frame-folder path without JPEG decode);
- inference on a video: ``run_inference(video=...)`` end to end (decode + model + events + timeline).

    python -m benchmarks.bench_allocator [--rounds 2] [--steps 12] [--seconds 30]

Without tcmalloc installed (``apt-get install libtcmalloc-minimal4``) it says so and measures glibc only; without
native bf16, fp32 only (``SPOT_CPU_AMP=off`` is how a child is kept in fp32).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tabulate import tabulate

from model.predict import ENV_CPU_AMP
from util.allocator import fast_allocator_env, find_tcmalloc, in_use, system_allocator_env

WORKLOADS = ("train", "frames", "video")
# (allocator, precision): the baseline first; bf16 only where the CPU has it natively (model/predict.py).
SETUPS = (("glibc", "fp32"), ("tcmalloc", "fp32"), ("tcmalloc", "bf16"))
# The demo's model and batch (synthetic/demo.py).
HEIGHT, WIDTH, CLIP_LEN, BATCH = 112, 200, 20, 8


def _usage() -> tuple[float, float, int]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime, r.ru_minflt


def demo_model_config(height: int = HEIGHT, width: int = WIDTH, clip_len: int = CLIP_LEN) -> dict:
    """The config of a model the demo's size (rny002 + gru + team head, 10 fps), untrained (bench_app uses it too)."""
    from model.common import default_config

    return default_config(
        feature_arch="rny002",
        temporal_arch="gru",
        clip_len=clip_len,
        team=True,
        fps=10.0,
        frame_height=height,
        frame_width=width,
        source_height=height,
        source_width=width,
        pretrained=False,
    )


def train_steps(steps: int, height: int, width: int, clip_len: int, batch: int) -> dict:
    """frames/s of the training step after 2 warm-up steps, page faults per step, kernel share of CPU time."""
    import torch
    import torch.nn.functional as F

    from model.common import build_model
    from model.train import spot_loss

    torch.manual_seed(0)
    config = demo_model_config(height, width, clip_len)
    net = build_model(config).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    num_outputs = len(config["classes"]) + 1
    weights = torch.ones(num_outputs)
    clips = torch.rand(batch, clip_len, 3, height, width)
    targets = F.one_hot(torch.randint(0, num_outputs, (batch, clip_len)), num_outputs).float()
    team, team_mask = torch.rand(batch, clip_len).round(), torch.ones(batch, clip_len)

    from model.predict import autocast

    def step() -> None:
        with autocast(torch.device("cpu")):  # bf16 when SPOT_CPU_AMP allows it on this CPU, else fp32
            output = net(clips)
        loss = spot_loss(output, targets, weights, team, team_mask)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    user0, sys0, faults0 = _usage()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - start
    user1, sys1, faults1 = _usage()
    return {
        "frames_per_s": steps * batch * clip_len / seconds,
        "faults_per_step": (faults1 - faults0) / steps,
        "kernel_share": (sys1 - sys0) / max(1e-9, (user1 - user0) + (sys1 - sys0)),
    }


def inference(kind: str, seconds: float, height: int) -> dict:
    """frames/s of the predict path on in-memory frames (``frames``) or of run_inference on a video."""
    import numpy as np

    from benchmarks.bench_inference import ArraySource, make_inputs
    from model.common import load_model
    from model.inference import run_inference
    from model.predict import DEFAULT_BATCH_SIZE, model_frame_source, predict_scores

    video, model_dir = make_inputs(seconds, height)
    if kind == "frames":
        model, config, _ = load_model(model_dir, device="cpu")
        frames = np.concatenate(list(model_frame_source(config, video).iter_chunks(int(config["clip_len"]))))
        faults0 = _usage()[2]
        start = time.perf_counter()
        predict_scores(model, config, ArraySource(frames, 25.0), DEFAULT_BATCH_SIZE, device="cpu")
        n = len(frames)
    else:
        out = Path(tempfile.mkdtemp(prefix="bench-allocator-"))
        faults0 = _usage()[2]
        start = time.perf_counter()
        n = run_inference(model_dir, out, video=video, device="cpu")["num_frames"]
    seconds_taken = time.perf_counter() - start
    return {"frames_per_s": n / seconds_taken, "faults_per_step": (_usage()[2] - faults0) / max(1, n)}


def child(args: argparse.Namespace) -> None:
    if args.workload == "train":
        result = train_steps(args.steps, args.height, args.width, args.clip_len, args.batch)
    else:
        result = inference(args.workload, args.seconds, args.video_height)
    from model.predict import cpu_amp_enabled

    result["allocator"], result["bf16"] = in_use(), cpu_amp_enabled()
    print("RESULT " + json.dumps(result), flush=True)


def run_child(workload: str, setup: tuple[str, str], args: argparse.Namespace) -> dict:
    allocator, precision = setup
    env = fast_allocator_env() if allocator == "tcmalloc" else system_allocator_env()
    env[ENV_CPU_AMP] = "auto" if precision == "bf16" else "off"
    argv = [sys.executable, "-m", "benchmarks.bench_allocator", "--child", workload]
    argv += [
        "--steps",
        str(args.steps),
        "--seconds",
        str(args.seconds),
        "--video_height",
        str(args.video_height),
    ]
    argv += ["--height", str(args.height), "--width", str(args.width), "--clip_len", str(args.clip_len)]
    argv += ["--batch", str(args.batch)]
    proc = subprocess.run(
        argv, env=env, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(
            f"{workload} under {allocator} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}"
        )
    result = json.loads(lines[-1][len("RESULT ") :])
    expected = "tcmalloc" if allocator == "tcmalloc" else "system"
    if result["allocator"] != expected or result["bf16"] != (precision == "bf16"):
        raise RuntimeError(f"{workload}: asked for {setup}, the child ran with {result}")
    return result


def get_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per allocator, best counts")
    parser.add_argument(
        "--steps", type=int, default=12, help="timed training steps per round (after 2 warm-up)"
    )
    parser.add_argument(
        "--seconds", type=float, default=30, help="length of the synthetic match for inference"
    )
    parser.add_argument("--height", type=int, default=HEIGHT, help="training frame height (the demo's 112)")
    parser.add_argument("--width", type=int, default=WIDTH, help="training frame width (the demo's 200)")
    parser.add_argument("--clip_len", type=int, default=CLIP_LEN, help="training clip length (the demo's 20)")
    parser.add_argument("--batch", type=int, default=BATCH, help="training batch size (the demo's 8)")
    parser.add_argument("--video_height", type=int, default=HEIGHT, help="inference model frame height")
    parser.add_argument(
        "--workloads", default=",".join(WORKLOADS), help=f"comma-separated subset of {','.join(WORKLOADS)}"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the training step only, tiny, one round, glibc fp32 against the fastest setup (a smoke test)",
    )
    parser.add_argument("--child", choices=WORKLOADS, dest="workload", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.steps, args.seconds, args.workloads = 1, 2, 2, "train"
        args.height, args.width, args.clip_len, args.batch, args.video_height = 32, 56, 8, 2, 32
    return args


def main(argv: list[str] | None = None) -> None:
    args = get_args(list(argv or []))
    if args.workload:
        child(args)
        return
    from model.predict import cpu_has_native_bf16

    setups = [
        s
        for s in SETUPS
        if (s[0] == "glibc" or find_tcmalloc()) and (s[1] == "fp32" or cpu_has_native_bf16())
    ]
    if args.quick:  # a smoke test: the baseline and the fastest setup here (each child imports torch: ~3 s)
        setups = list(dict.fromkeys([setups[0], setups[-1]]))
    if not find_tcmalloc():
        print("tcmalloc is not installed (apt-get install libtcmalloc-minimal4): glibc only")
    if not cpu_has_native_bf16():
        print(
            "this CPU has no native bf16 (AMX / AVX512-BF16): fp32 only, as training and inference run here"
        )
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = sorted(set(workloads) - set(WORKLOADS))
    if unknown or not workloads:
        raise SystemExit(
            f"unknown workload(s) {unknown or args.workloads!r}; choose from {','.join(WORKLOADS)}"
        )
    if "frames" in workloads or "video" in workloads:
        from benchmarks.bench_inference import make_inputs

        make_inputs(args.seconds, args.video_height)  # rendered once, outside the timed children
    best: dict[tuple, dict] = {}
    for _ in range(args.rounds):
        for workload in workloads:
            for setup in setups:
                result = run_child(workload, setup, args)
                key = (workload, setup)
                if key not in best or result["frames_per_s"] > best[key]["frames_per_s"]:
                    best[key] = result
    rows = []
    names = {"train": "training step", "frames": "inference, frames in memory", "video": "inference, --video"}
    for workload in workloads:
        base = best[(workload, SETUPS[0])]["frames_per_s"]
        for setup in setups:
            r = best[(workload, setup)]
            kernel = f"{100 * r['kernel_share']:.1f} %" if "kernel_share" in r else ""
            per = "step" if workload == "train" else "frame"
            rows.append([names[workload], *setup, r["frames_per_s"], f"{r['frames_per_s'] / base:.2f}x",
                         f"{r['faults_per_step']:,.0f} / {per}", kernel])  # fmt: skip
    print(
        f"model rny002 + gru + team; training {args.batch} x {args.clip_len} frames at {args.height}x{args.width}; "
        f"inference on {args.seconds:g} s of 25 fps video, {args.video_height} rows; {os.cpu_count()} CPUs; "
        f"best of {args.rounds}"
    )
    headers = ["", "allocator", "precision", "frames/s", "vs glibc fp32", "minor faults", "kernel"]
    print(tabulate(rows, headers=headers, floatfmt=".1f"))


if __name__ == "__main__":
    main(sys.argv[1:])
