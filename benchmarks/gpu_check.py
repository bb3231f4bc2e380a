"""Prove every CUDA path on the GPU(s) at hand and measure them: ``make gpu-check`` (``python -m benchmarks.gpu_check``).

On a machine with CUDA it renders a tiny synthetic library, then runs each step below, timed, and writes the results
to ``gpu-report.json`` (``--out``) and a table:

1. ``train_bf16`` / ``train_fp16``: ``train_e2e.py`` for two short epochs of ``rny002_gsm`` + ``gru`` with bf16 autocast,
   and with fp16 autocast + a GradScaler (``--amp_dtype``), GPU augmentation and mixup on: finite losses, a checkpoint
   that loads back (``load_model``), and ``--resume`` continuing a run stopped after epoch 0 to the same weights.
2. ``ddp``: ``torchrun --standalone --nproc_per_node N`` for one short epoch with NCCL over all GPUs; with one GPU, two
   processes on it, NCCL first and gloo on CUDA tensors when NCCL refuses a shared GPU (the report says which).
   ``mgpu``: the seed's ``-mgpu`` flag (one process per local GPU, spawned without torchrun).
3. ``predict_throughput``: forward frames/s of every backbone of the README's table with the ``gru`` head at
   224x398, fp16 autocast, channels_last, batches of 1, 4 and 8 clips of 32 frames.
4. ``train_throughput``: forward + backward + AdamW frames/s of ``rny002_gsm`` and ``rny008_gsm`` at the seed's
   clip length 100 (batch 4 clips, bf16 autocast).
5. ``jpeg_decode``: torchvision's nvJPEG (``decode_jpeg(device="cuda")``, batched) against CPU decoding (OpenCV in
   one process: per worker), on the library's 398x224 frames.
6. ``video_decode``: GPU video decoding where the installed libraries offer it (tried: torchvision's
   ``VideoReader(device="cuda")``, PyAV's hardware acceleration with ``cuda``), against PyAV on the CPU; each one
   tried is reported with what happened.

It finishes in a few minutes on one GPU, never downloads anything (``--no_pretrained`` everywhere), and exits
non-zero if any CUDA path fails. Without CUDA it prints so and exits 0. ``--device cpu --quick`` runs the same steps
on the CPU at toy sizes (the GPU-only ones are skipped): the test suite does, so the script cannot rot.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BACKBONES = ("rn18", "rn18_tsm", "rn18_gsm", "rn50", "rny002", "rny002_gsm", "rny008", "rny008_gsm")
HEIGHT, WIDTH = 224, 398
# The short training runs: clip length and frames per epoch (two epochs), at toy size with --quick.
TRAIN_SIZE = {
    False: {"clip_len": 32, "epoch_num_frames": 1024},
    True: {"clip_len": 8, "epoch_num_frames": 64},
}


class Skip(Exception):
    """A step that cannot run here (no CUDA, a library without GPU decoding): reported, not a failure."""


def machine_info(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_build": torch.version.cuda,
        "device": device,
        "cpus": os.cpu_count(),
    }
    if device == "cuda":
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        from model.predict import cuda_has_native_bf16  # not is_bf16_supported(): it counts emulation

        info["bf16"] = cuda_has_native_bf16()
        info["nccl"] = bool(torch.distributed.is_nccl_available())
        info["cudnn"] = torch.backends.cudnn.version()
    return info


# ---- the tiny library and the scripts it is run through


def make_library(root: Path, quick: bool) -> dict[str, Path]:
    """A synthetic library (7 games: 4 train, 1 val, 2 test) of a few seconds, its 25 fps frames and labels."""
    import frames_as_jpg_soccernet_ball as extract
    import parse_soccernet_ball as parse
    from synthetic.library import render_library

    videos, frames, data = root / "videos", root / "frames", root / "data"
    seconds = 4 if quick else 12
    counts = {"train": 4, "val": 1, "test": 2, "challenge": 0}
    render_library(videos, games=sum(counts.values()), seconds=seconds, seed=1, counts=counts)
    height = "64" if quick else str(HEIGHT)
    with contextlib.redirect_stdout(sys.stderr):
        if (
            extract.main(extract.get_args([str(videos), "-o", str(frames), "--height", height, "-j", "2"]))
            != 0
        ):
            raise RuntimeError("frame extraction failed")
        argv = [str(videos), str(frames), "-o", str(data), "--splits", str(videos / "splits.json")]
        if parse.main(parse.get_args(argv)) != 0:
            raise RuntimeError("parsing the labels failed")
    return {"videos": videos, "frames": frames, "data": data}


def train_argv(library: dict[str, Path], save_dir: Path, device: str, quick: bool, *extra: str) -> list[str]:
    clip, per_epoch = (str(TRAIN_SIZE[quick][k]) for k in ("clip_len", "epoch_num_frames"))
    return [
        str(REPO / "train_e2e.py"), str(library["data"]), str(library["frames"]), "-m", "rny002_gsm", "-t", "gru",
        "-s", str(save_dir), "--clip_len", clip, "--batch_size", "4", "--num_epochs", "2", "--warm_up_epochs", "1",
        "--epoch_num_frames", per_epoch, "--start_val_epoch", "1", "--no_pretrained", "--device", device,
        "--team", "--mixup", "--augment", "-j", "0" if quick else "4", *extra,
    ]  # fmt: skip


def run_script(
    argv: list[str], timeout_s: float, launcher: list[str] | None = None, threads: int | None = None
) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if (
        threads is not None
    ):  # CPU threads per process, so that several processes do not oversubscribe the cores
        env["OMP_NUM_THREADS"] = str(threads)
    command = [*(launcher or [sys.executable]), *argv]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout_s)
    if result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-15:]
        raise RuntimeError(f"exit {result.returncode}: " + "\n".join(tail))
    return result


def _weights_equal(a: Path, b: Path) -> bool:
    import torch

    wa, wb = (torch.load(p, map_location="cpu", weights_only=True) for p in (a, b))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


# ---- the steps


def step_train(
    library: dict[str, Path], root: Path, device: str, quick: bool, dtype: str, resume: bool = True
) -> dict[str, Any]:
    """Two epochs under AMP ``dtype``; the checkpoint loads back; a stop after epoch 0 + --resume gives the same
    weights (reported: on CUDA cuDNN's kernels need not be deterministic; on the CPU it must hold)."""
    from model.common import load_model
    from util.io import load_json

    whole, parts = root / f"train_{dtype}", root / f"train_{dtype}_parts"
    extra = ("--amp_dtype", dtype)
    started = time.perf_counter()
    run_script(train_argv(library, whole, device, quick, *extra), 600)
    seconds = time.perf_counter() - started
    history = load_json(whole / "loss.json")
    losses = [h["train"] for h in history] + [h["val"] for h in history]
    if not all(math.isfinite(x) for x in losses):
        raise RuntimeError(f"non-finite loss under {dtype}: {losses}")
    _, _, epoch = load_model(whole, device=device)
    exact = None
    if resume:
        run_script(train_argv(library, parts, device, quick, *extra, "--stop_after_epoch", "0"), 600)
        run_script(train_argv(library, parts, device, quick, *extra, "--resume"), 600)
        exact = _weights_equal(whole / "checkpoint_001.pt", parts / "checkpoint_001.pt")
        if device == "cpu" and not exact:
            raise RuntimeError("--resume did not reach the uninterrupted run's weights")
    frames = 2 * TRAIN_SIZE[quick]["epoch_num_frames"]
    return {
        "losses": [round(x, 4) for x in losses],
        "selected_epoch": epoch,
        "resume_bit_exact": exact,
        "frames_per_s": round(frames / seconds, 1),
        "note": "wall time of the whole script (start-up, validation, predictions included)",
    }


def step_train_fp16(library: dict[str, Path], root: Path, device: str, quick: bool) -> dict[str, Any]:
    """fp16 autocast with a GradScaler: a CUDA recipe. A CPU autocasts to bf16 or not at all, so there this run
    would repeat train_bf16's exactly (it did: the same losses)."""
    if device != "cuda":
        raise Skip("fp16 autocast is a CUDA path; on a CPU this run repeats train_bf16's")
    return step_train(library, root, device, quick, "fp16")


def step_ddp(library: dict[str, Path], root: Path, device: str, quick: bool) -> dict[str, Any]:
    import torch

    gpus = torch.cuda.device_count() if device == "cuda" else 0
    procs = max(2, gpus)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)]
    tried = {}
    backends = ["nccl", "gloo"] if device == "cuda" else ["gloo"]
    for backend in backends:
        out = root / f"ddp_{backend}"
        argv = train_argv(library, out, device, quick, "--num_epochs", "1", "--start_val_epoch", "0")
        threads = max(1, (os.cpu_count() or 2) // procs)
        # Two NCCL ranks on one GPU are refused ("duplicate GPU"), or hang: a short limit before gloo is tried.
        limit = 120 if backend == "nccl" and gpus == 1 else 600
        try:
            run_script([*argv, "--dist_backend", backend], limit, launcher, threads)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            tried[backend] = f"failed: {(str(e).splitlines() or [''])[-1][:200]}"
            if backend == "nccl" and gpus == 1:
                continue  # NCCL refuses two ranks on one GPU: gloo on CUDA tensors next
            raise
        tried[backend] = "ok"
        if not (out / "checkpoint_000.pt").is_file() or not (out / "selection.json").is_file():
            raise RuntimeError(f"{out}: the DDP run left no checkpoint / selection.json")
        return {"processes": procs, "gpus": gpus, "backend": backend, "tried": tried}
    raise RuntimeError(f"no DDP backend worked: {tried}")


def step_mgpu(library: dict[str, Path], root: Path, device: str, quick: bool) -> dict[str, Any]:
    import torch

    if device != "cuda":
        raise Skip("-mgpu without GPUs is a plain one-process run")
    out = root / "mgpu"
    argv = train_argv(library, out, device, quick, "--num_epochs", "1", "--start_val_epoch", "0", "-mgpu")
    run_script(argv, 600)
    if not (out / "checkpoint_000.pt").is_file():
        raise RuntimeError(f"{out}: -mgpu left no checkpoint")
    return {"processes": max(1, torch.cuda.device_count()) if device == "cuda" else 1}


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def step_predict_throughput(device: str, quick: bool) -> dict[str, Any]:
    import torch

    from model.common import build_model, default_config
    from model.predict import autocast

    backbones = BACKBONES[:2] if quick else BACKBONES
    batches = (1,) if quick else (1, 4, 8)
    frames = 4 if quick else 32
    height, width = (64, 112) if quick else (HEIGHT, WIDTH)
    rates: dict[str, dict[str, float]] = {}
    for backbone in backbones:
        config = default_config(feature_arch=backbone, temporal_arch="gru", clip_len=frames, pretrained=False)
        model = build_model(config).to(device).eval()
        rates[backbone] = {}
        for batch in batches:
            clip = torch.randint(0, 256, (batch, frames, 3, height, width), dtype=torch.uint8, device=device)
            with torch.inference_mode(), autocast(torch.device(device), torch.float16):
                model(clip)  # warm-up: cuDNN's kernel choice
                _sync(device)
                rounds, started = 0, time.perf_counter()
                while rounds < 3 or time.perf_counter() - started < (0.2 if quick else 1.0):
                    model(clip)
                    rounds += 1
                _sync(device)
            rates[backbone][f"batch {batch}"] = round(
                rounds * batch * frames / (time.perf_counter() - started), 1
            )
        del model
    return {"frames_per_s": rates, "size": f"{width}x{height}", "clip_frames": frames, "dtype": "fp16"}


def _train_rate(backbone: str, device: str, quick: bool) -> tuple[float, float | None]:
    """Training frames/s of ``backbone`` + gru (forward, backward, AdamW; bf16 autocast on CUDA where supported)
    and peak GiB (no GradScaler: a throughput figure, not a training run)."""
    import torch
    import torch.nn.functional as F

    from model.common import build_model, default_config
    from model.predict import autocast

    clip_len, batch, steps = (8, 2, 2) if quick else (100, 4, 6)
    height, width = (64, 112) if quick else (HEIGHT, WIDTH)
    config = default_config(feature_arch=backbone, temporal_arch="gru", clip_len=clip_len, pretrained=False)
    model = build_model(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters())
    clips = torch.randint(0, 256, (batch, clip_len, 3, height, width), dtype=torch.uint8, device=device)
    targets = torch.randint(0, len(config["classes"]) + 1, (batch * clip_len,), device=device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step() -> None:
        with autocast(torch.device(device)):  # bf16 where the GPU supports it, else fp16
            logits = model(clips)["logits"]
        F.cross_entropy(logits.float().flatten(0, 1), targets).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    rate = steps * batch * clip_len / (time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    return rate, peak


def step_train_throughput(device: str, quick: bool) -> dict[str, Any]:
    result: dict[str, Any] = {"clip_len": 8 if quick else 100, "batch": 2 if quick else 4}
    for backbone in ("rny002_gsm", "rny008_gsm"):
        rate, peak = _train_rate(backbone, device, quick)
        result[f"{backbone} frames/s"] = round(rate, 1)
        if peak is not None:
            result[f"{backbone} peak GiB"] = round(peak, 2)
    return result


def step_jpeg_decode(library: dict[str, Path], device: str, quick: bool) -> dict[str, Any]:
    import torch
    from torchvision.io import decode_jpeg, read_file

    from dataset.source import read_jpeg

    paths = sorted(library["frames"].rglob("*.jpg"))[: 64 if quick else 512]
    started = time.perf_counter()
    for p in paths:
        read_jpeg(p)
    cpu_rate = len(paths) / (time.perf_counter() - started)
    result: dict[str, Any] = {"frames": len(paths), "cpu_opencv_frames_per_s_per_worker": round(cpu_rate, 1)}
    if device != "cuda":
        result["nvjpeg"] = "skipped: needs CUDA"
        return result
    data = [read_file(str(p)) for p in paths]
    decode_jpeg(data[:8], device="cuda")  # warm-up (nvJPEG handles)
    torch.cuda.synchronize()
    started = time.perf_counter()
    for i in range(0, len(data), 64):
        decode_jpeg(data[i : i + 64], device="cuda")
    torch.cuda.synchronize()
    gpu_rate = len(data) / (time.perf_counter() - started)
    result.update(
        nvjpeg_frames_per_s=round(gpu_rate, 1), nvjpeg_vs_one_cpu_worker=round(gpu_rate / cpu_rate, 2)
    )
    return result


def _pyav_cpu_rate(video: Path) -> float:
    import av

    with av.open(str(video)) as container:
        started, count = time.perf_counter(), 0
        for frame in container.decode(video=0):
            frame.to_ndarray(format="rgb24")
            count += 1
    return count / (time.perf_counter() - started)


def step_video_decode(library: dict[str, Path], device: str) -> dict[str, Any]:
    (video,) = sorted(library["videos"].rglob("224p.mp4"))[:1]
    result: dict[str, Any] = {"cpu_pyav_frames_per_s": round(_pyav_cpu_rate(video), 1), "tried": {}}
    if device != "cuda":
        result["tried"] = "skipped: needs CUDA"
        return result
    tried = result["tried"]
    try:
        from torchvision.io import VideoReader

        reader = VideoReader(str(video), device="cuda")
        started, count = time.perf_counter(), 0
        for _ in reader:
            count += 1
        tried["torchvision VideoReader(device='cuda')"] = (
            f"{count / (time.perf_counter() - started):.1f} frames/s"
        )
    except Exception as e:  # noqa: BLE001 - which libraries offer GPU decoding is what this step finds out
        tried["torchvision VideoReader(device='cuda')"] = f"unavailable: {type(e).__name__}: {str(e)[:160]}"
    try:
        import av
        from av.codec.hwaccel import HWAccel

        with av.open(
            str(video), hwaccel=HWAccel(device_type="cuda", allow_software_fallback=False)
        ) as container:
            started, count = time.perf_counter(), 0
            for _ in container.decode(video=0):
                count += 1
        tried["PyAV hwaccel cuda"] = f"{count / (time.perf_counter() - started):.1f} frames/s"
    except Exception as e:  # noqa: BLE001
        tried["PyAV hwaccel cuda"] = f"unavailable: {type(e).__name__}: {str(e)[:160]}"
    return result


# ---- the run


def needs(library: dict[str, Path]) -> dict[str, Path]:
    if not library:
        raise Skip("no library: its step failed")
    return library


def run_steps(steps: list[tuple[str, Callable[[], dict]]]) -> list[dict[str, Any]]:
    rows = []
    for name, fn in steps:
        print(f"[gpu-check] {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        row: dict[str, Any] = {"step": name}
        try:
            row.update(status="ok", result=fn())
        except Skip as e:
            row.update(status="skipped", result={"why": str(e)})
        except Exception as e:  # noqa: BLE001 - a failed step is reported and the others still run
            row.update(
                status="FAILED", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc()[-2000:]
            )
        row["seconds"] = round(time.perf_counter() - started, 1)
        rows.append(row)
    return rows


def _summary(result: dict[str, Any]) -> str:
    text = json.dumps(result, separators=(", ", ": "))
    return text if len(text) <= 110 else text[:107] + "..."


def get_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto",
                   help="auto: cuda when available, else print that there is nothing to check and exit 0")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="toy sizes (what the test suite runs on a CPU)")
    p.add_argument("--out", type=Path, default=Path("gpu-report.json"), help="where the JSON report goes")
    p.add_argument("--work_dir", type=Path, help="scratch folder (default: a temporary one, removed)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    import torch
    from tabulate import tabulate

    args = get_args(argv)
    device = args.device
    if device == "auto":
        if not torch.cuda.is_available():
            print("gpu-check: no CUDA device here (torch.cuda.is_available() is False): nothing to check. Run "
                  "`make gpu-check` on a machine with a GPU.")  # fmt: skip
            return 0
        device = "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("gpu-check: --device cuda, but no CUDA device is available", file=sys.stderr)
        return 2
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        root = args.work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gpu-check-")))
        root.mkdir(parents=True, exist_ok=True)
        library: dict[str, Path] = {}

        def step_library() -> dict[str, Any]:
            library.update(make_library(root, args.quick))
            return {"frames": sum(1 for _ in library["frames"].rglob("*.jpg"))}

        steps: list[tuple[str, Callable[[], dict]]] = [
            ("library", step_library),
            ("train_bf16", lambda: step_train(needs(library), root, device, args.quick, "bf16")),
            ("train_fp16", lambda: step_train_fp16(needs(library), root, device, args.quick)),
            ("ddp", lambda: step_ddp(needs(library), root, device, args.quick)),
            ("mgpu", lambda: step_mgpu(needs(library), root, device, args.quick)),
            ("predict_throughput", lambda: step_predict_throughput(device, args.quick)),
            ("train_throughput", lambda: step_train_throughput(device, args.quick)),
            ("jpeg_decode", lambda: step_jpeg_decode(needs(library), device, args.quick)),
            ("video_decode", lambda: step_video_decode(needs(library), device)),
        ]  # fmt: skip
        rows = run_steps(steps)
    report = {"machine": machine_info(device), "quick": args.quick, "steps": rows,
              "total_s": round(time.perf_counter() - started, 1)}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    table = [
        [r["step"], r["status"], r["seconds"], r.get("error") or _summary(r.get("result", {}))] for r in rows
    ]
    print(tabulate(table, headers=["step", "status", "s", "result"]))
    print(f"{json.dumps(report['machine'])}\ntotal {report['total_s']} s; report: {args.out}")
    failed = [r["step"] for r in rows if r["status"] == "FAILED"]
    if failed:
        print(f"gpu-check: FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from util.allocator import use_fast_allocator

    use_fast_allocator()
    sys.exit(main(sys.argv[1:]))
