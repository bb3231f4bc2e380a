"""Forward speed of the E2E-Spot network: frames/s of each backbone x head at 224x398 (the README model table).

Quick by default: every backbone with the gru head, every head on rny002 (the cheapest backbone, so the
head's own cost shows), and the published architectures an imported checkpoint runs (E2E-Spot's rny002/rny008 GSM +
GRU, T-DEED's rny002/rny008 GSF + SGP head: ``arch_variant`` e2e-spot / tdeed). ``--full`` runs the whole backbone x head product. On CPU it runs fp32; on a CUDA
device (when present) fp16 autocast, channels_last, a larger batch. Ratios are against rn18 + gru (the seed's
default) measured in the same run.

    python -m benchmarks.bench_model [--full] [--frames 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

import torch
from tabulate import tabulate

from model.common import available_backbones, available_heads, build_model, count_parameters, default_config

HEIGHT, WIDTH = 224, 398
BASELINE = ("rn18", "gru", "house")
# What import_checkpoint.py builds for the published models: (backbone, head, arch_variant).
PUBLISHED = [
    ("rny002_gsm", "gru", "e2e-spot"),
    ("rny008_gsm", "gru", "e2e-spot"),
    ("rny002_gsf", "tdeed", "tdeed"),
    ("rny008_gsf", "tdeed", "tdeed"),
]


def get_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--full", action="store_true", help="every backbone x head (default: a quick subset)")
    parser.add_argument("--frames", type=int, default=4, help="frames per clip on CPU (GPU: 4 x 32)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed rounds over all models; each keeps its best (after 1 warm-up)",
    )
    parser.add_argument("--device", choices=["cpu", "cuda", "all"], default="all")
    parser.add_argument(
        "--quick", action="store_true", help="three models, 2 frames, one round (a smoke test)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads (default 1: steady figures on a shared machine; 0 = torch's default, all cores)",
    )
    return parser.parse_args(argv)


def combinations(full: bool) -> list[tuple[str, str, str]]:
    if full:
        pairs = [(b, h, "house") for b in available_backbones() for h in available_heads()]
    else:
        pairs = [(b, "gru", "house") for b in available_backbones()]
        pairs += [("rny002", h, "house") for h in available_heads() if h != "gru"]
    return [BASELINE] + [p for p in pairs if p != BASELINE] + PUBLISHED


def forward_seconds(model: torch.nn.Module, clip: torch.Tensor) -> float:
    device = clip.device.type
    amp = torch.autocast("cuda", dtype=torch.float16) if device == "cuda" else contextlib.nullcontext()
    with torch.inference_mode(), amp:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        model(clip)
        if device == "cuda":
            torch.cuda.synchronize()
    return time.perf_counter() - start


def bench_device(device: str, args: argparse.Namespace) -> list[list]:
    """Round-robin over the models, keeping each one's best time: other processes' bursts hit all alike."""
    batch, frames = (4, 32) if device == "cuda" else (1, args.frames)
    clip = torch.randint(0, 256, (batch, frames, 3, HEIGHT, WIDTH), dtype=torch.uint8, device=device)
    pairs = combinations(args.full)[: 3 if args.quick else None]
    models = {}
    for backbone, head, variant in pairs:
        config = default_config(
            feature_arch=backbone, temporal_arch=head, arch_variant=variant, clip_len=frames, pretrained=False
        )
        models[backbone, head, variant] = build_model(config).to(device).eval()
        forward_seconds(models[backbone, head, variant], clip)  # warm-up: kernel selection, allocator
    best = dict.fromkeys(pairs, float("inf"))
    for _ in range(args.repeats):
        for pair, model in models.items():
            best[pair] = min(best[pair], forward_seconds(model, clip))
    rows = []
    for (backbone, head, variant), model in models.items():
        fps = batch * frames / best[backbone, head, variant]
        params = [count_parameters(model.backbone) / 1e6, count_parameters(model) / 1e6]
        ratio = best[BASELINE] / best[backbone, head, variant]
        rows.append([device, backbone, head, variant, *params, fps, ratio])
    return rows


def main(argv: list[str] | None = None) -> None:
    args = get_args([] if argv is None else argv)
    if args.quick:
        args.frames, args.repeats = 2, 1
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    print(
        f"model forward at {HEIGHT}x{WIDTH}, {torch.get_num_threads()} CPU threads; baseline {'+'.join(BASELINE[:2])}"
    )
    rows = []
    for device in devices:
        rows += bench_device(device, args)
    headers = ["device", "backbone", "head", "variant", "backbone M params", "total M params", "frames/s",
               "vs rn18+gru"]  # fmt: skip
    print(tabulate(rows, headers=headers, floatfmt=(None, None, None, None, ".2f", ".2f", ".1f", ".2f")))
    torch.set_num_threads(threads)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
