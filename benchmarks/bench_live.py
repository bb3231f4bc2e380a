"""Live spotting (issue 35): its cost against offline inference, and what the latency budget costs in mAP@1.

Speed (the default). The real-time factor of live spotting = seconds of model (and post-processing) per second of
feed, below 1 keeps up. Frames of a synthetic match (cached under bench-out/live/) are pushed one at a time
through ``LiveScorer`` + ``LiveEvents`` as ``run_live`` does (no network), for an untrained model of two sizes:

- ``demo``: the network ``synthetic.demo`` trains (rny002 + gru, 200x112, 5 fps, clip 20);
- ``real``: the project's default network (rny002_gsm + gru, 398x224, 25 fps, clip 100, windows overlapping by
  half), as trained on SoccerNet-Ball;

at the latency budgets 1, 2, 8 s and ``model.live.DEFAULT_LATENCY_S`` (a budget below the post-processing's margin
is refused, as ``run_live`` refuses it), under each runtime: eager fp32, eager bf16 autocast (CPUs with native bf16),
``torch.compile`` (with bf16 where native). The baseline, in the same run on the same frames with the same model and
precision: offline inference (``predict_scores``, in its batches of 8 windows; and in batches of 1, as live mostly
runs them), so each row says what live costs against offline per frame. ``--feed VIDEO`` adds ``run_live`` end to end
on VIDEO streamed over UDP in real time (decoding included) into each size's model, every event written.

Table (``--table``): on the demo's test games (``make demo`` first), mAP@1 and Team mAP@1 of the live events at each
latency budget beside offline's, the events made as ``run_live`` makes them (the model folder's post-processing and
display thresholds) from the frames step 4 reads; offline through the evaluation's own path (``load_predictions``,
the ground truth of ``Labels-ball.json``). A budget below the margin is refused and shown again with the NMS window
shrunk to fit. Then one test game streamed over UDP in real time (``send_video`` -> ``run_live``): the delay from a
frame's arrival to its event written.

    python -m benchmarks.bench_live                     # speed, both sizes, eager (about 6 minutes on 2 cores)
    python -m benchmarks.bench_live --runtimes fp32,bf16,compile    # and torch.compile (15 minutes)
    python -m benchmarks.bench_live --table             # the latency table and the UDP run (about 5 minutes)
    python -m benchmarks.bench_live --models real --runtimes bf16 --latencies 4 --feed VIDEO
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from tabulate import tabulate

from benchmarks.bench_inference import ArraySource
from model.live import DEFAULT_LATENCY_S, LiveEvents, LiveScorer, event_margin, live_geometry
from model.predict import DEFAULT_BATCH_SIZE
from util.io import DataError
from util.postprocess import PostProcess

CACHE = Path("bench-out") / "live"
LATENCIES_S = tuple(sorted({1.0, 2.0, DEFAULT_LATENCY_S, 8.0}))
RUNTIMES = ("fp32", "bf16", "compile")
EVERY_S = 0.2  # run_live looks for events every 0.2 s of stream


@dataclass(frozen=True)
class ModelSize:
    name: str
    feature_arch: str
    temporal_arch: str
    clip_len: int
    fps: float
    height: int
    width: int
    seconds: float  # of feed, by default
    extra: tuple[tuple[str, object], ...] = ()  # more config keys


def model_sizes() -> dict[str, ModelSize]:
    """The sizes this benchmark times: the demo's network, the real one, T-DEED's SoccerNet-Ball challenge network
    as ``import_checkpoint.py`` rebuilds it (``tdeed``: rny002_gsf + T-DEED's head, 796x448 at 12.5 fps, clip 100,
    windows overlapping by 3/4, displacement radius 4), and ``tiny`` for --quick."""
    from model.common import DEFAULT_CONFIG
    from model.published.tdeed import TDEED_OVERLAP
    from synthetic.demo import DEMO

    demo_width = 2 * round(398 * DEMO["height"] / 224 / 2)  # step 1's width at the demo's height (16:9)
    sizes = [
        ModelSize("demo", DEMO["feature_arch"], DEMO["temporal_arch"], DEMO["clip_len"],
                  float(DEMO["sample_fps"]), DEMO["height"], demo_width, 120.0),
        ModelSize("real", DEFAULT_CONFIG["feature_arch"], DEFAULT_CONFIG["temporal_arch"],
                  DEFAULT_CONFIG["clip_len"], float(DEFAULT_CONFIG["fps"]), DEFAULT_CONFIG["frame_height"],
                  DEFAULT_CONFIG["frame_width"], 20.0),
        ModelSize("tdeed", "rny002_gsf", "tdeed", 100, 12.5, 448, 796, 20.0,
                  (("arch_variant", "tdeed"), ("displacement", 4), ("window_overlap", TDEED_OVERLAP))),
        ModelSize("tiny", "rny002", "gru", 8, 5.0, 32, 56, 4.0),
    ]  # fmt: skip
    return {s.name: s for s in sizes}


def machine_line() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, load average {load}"


# ---- live spotting, driven with frames as run_live drives it


@dataclass
class LiveResult:
    events: list[dict]
    seconds: float  # pushing the frames and looking for events: what run_live counts as model time
    model_s: float  # of which, in the model
    context: int
    hop: int
    margin: int
    windows: int
    early: int  # events shown given at the budget before their NMS chain closed (LiveEvents.early)


def live_events(
    run: Callable[[list[np.ndarray]], dict[str, np.ndarray]],
    config: dict,
    frames: Iterable[np.ndarray],
    post: PostProcess,
    latency_s: float,
    thresholds: dict[str, float] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> LiveResult:
    """Every event ``run_live`` gives for these frames at ``latency_s`` with its display ``thresholds`` (the events
    below them included, which it does not write): one frame pushed at a time, events looked for every 0.2 s of
    stream, the scorer finished at the end. DataError when the budget is below the post-processing's margin."""
    from model.predict import window_stride

    fps, clip_len = float(config["fps"]), int(config["clip_len"])
    displacement = int(config.get("displacement") or 0)
    margin = event_margin(post, fps, displacement)
    context, hop = live_geometry(clip_len, window_stride(config), round(latency_s * fps), margin)
    spent = {"model_s": 0.0, "windows": 0}

    def timed_run(windows: list[np.ndarray]) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        out = run(windows)
        spent["model_s"] += time.perf_counter() - start
        spent["windows"] += len(windows)
        return out

    scorer = LiveScorer(timed_run, clip_len, hop, context, batch_size)
    events = LiveEvents(scorer, list(config["classes"]), post, fps, displacement, thresholds)
    every = max(1, round(EVERY_S * fps))
    found: list[dict] = []
    seconds = 0.0
    for frame in frames:  # reading the frames is not counted: in run_live another thread decodes them
        start = time.perf_counter()
        scorer.push([frame])
        new = events.new_events(every)
        seconds += time.perf_counter() - start
        # Frames of feed from an event's frame to the one after which it was given: its delay, compute aside.
        found += [{**e, "delay_frames": scorer.n - 1 - e["frame"]} for e in new]
    start = time.perf_counter()
    scorer.finish()
    found += events.new_events()  # at the end of the feed: no delay_frames (run_live waits for a stall first)
    seconds += time.perf_counter() - start
    return LiveResult(found, seconds, spent["model_s"], context, hop, margin, spent["windows"], events.early)


def model_runner(model, config: dict, precision) -> Callable[[list[np.ndarray]], dict[str, np.ndarray]]:
    """``run_live``'s ``run``: a batch of windows through the model on the CPU, under ``precision``."""
    import torch

    from model.predict import _run_batch

    def run(windows: list[np.ndarray]) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            return _run_batch(model, windows, config, torch.device("cpu"), precision=precision)

    return run


# ---- speed


def make_model_dir(size: ModelSize) -> Path:
    """An untrained model directory of this size (cached), with a team head as the demo's."""
    import torch

    from model.common import build_model, default_config, save_checkpoint, save_config

    model_dir = CACHE / f"model-{size.name}"
    if not (model_dir / "config.json").is_file():
        config = default_config(
            feature_arch=size.feature_arch, temporal_arch=size.temporal_arch, clip_len=size.clip_len,
            fps=size.fps, frame_height=size.height, frame_width=size.width, source_height=size.height,
            source_width=size.width, team=True, pretrained=False, **dict(size.extra),
        )  # fmt: skip
        torch.manual_seed(0)
        save_config(model_dir, config)
        save_checkpoint(model_dir, 0, build_model(config))
    return model_dir


def feed_frames(config: dict, seconds: float) -> np.ndarray:
    """``seconds`` of a synthetic match at the model's frame rate and size (the video is rendered once)."""
    from model.predict import model_frame_source
    from synthetic.library import render_library

    library = CACHE / f"library-{seconds:g}s"
    videos = sorted(library.rglob("224p.mp4")) if library.is_dir() else []
    if not videos:
        render_library(library, games=1, seconds=seconds, seed=3)
        videos = sorted(library.rglob("224p.mp4"))
    return np.concatenate(list(model_frame_source(config, videos[0]).iter_chunks(64)))


def load_runtime(model_dir: Path, runtime: str, bf16: bool):
    """(model, precision, seconds to compile) of a runtime; compile runs with bf16 where the CPU has it natively,
    and is compiled here by one window of each batch size it will see (1 live, 8 and the rest offline)."""
    import torch

    from model.common import load_model

    compiled = runtime == "compile"
    model, config, _ = load_model(model_dir, device="cpu", compile=compiled)
    precision = torch.float32 if runtime == "fp32" or not bf16 else torch.bfloat16
    warm = np.zeros((int(config["clip_len"]), config["frame_height"], config["frame_width"], 3), np.uint8)
    start = time.perf_counter()
    run = model_runner(model, config, precision)
    for n in (1, DEFAULT_BATCH_SIZE, 3) if compiled else (1,):
        run([warm] * n)
    return model, config, precision, time.perf_counter() - start if compiled else 0.0


@dataclass
class Timing:
    wall_s: float = float("inf")
    cpu_s: float = 0.0  # CPU time of the process (all its threads) in the round of the best wall time
    model_s: float = 0.0
    live: LiveResult | None = None

    def keep_best(self, wall_s: float, cpu_s: float, model_s: float, live: LiveResult | None = None) -> None:
        if wall_s < self.wall_s:
            self.wall_s, self.cpu_s, self.model_s, self.live = wall_s, cpu_s, model_s, live


def time_modes(offline: dict[str, Callable[[], object]], live: Callable[[float], LiveResult],
               latencies: list[float], rounds: int) -> dict[str | float, Timing]:  # fmt: skip
    """Each offline mode and live at each latency, ``rounds`` times interleaved (the machine may be shared): the
    best wall time of each."""
    timings: dict[str | float, Timing] = {x: Timing() for x in [*offline, *latencies]}
    for _ in range(rounds):
        for mode, fn in offline.items():
            start, cpu = time.perf_counter(), time.process_time()
            fn()
            wall_s = time.perf_counter() - start
            timings[mode].keep_best(wall_s, time.process_time() - cpu, wall_s)
        for latency in latencies:
            cpu = time.process_time()
            result = live(latency)
            timings[latency].keep_best(result.seconds, time.process_time() - cpu, result.model_s, result)
    return timings


def runtime_rows(size: ModelSize, runtime: str, model_dir: Path, bf16: bool, frames: dict,
                 latencies: list[float], rounds: int) -> tuple[list[list], tuple[float, float] | None]:  # fmt: skip
    """Offline, then live at each latency, under one runtime; and (real-time factor, live / offline) at the
    default latency. ``frames`` caches the feed."""
    import torch

    from model.folder import ModelFolder
    from model.inference import display_thresholds
    from model.predict import predict_scores

    try:
        model, config, precision, compile_s = load_runtime(model_dir, runtime, bf16)
    except Exception as e:  # torch.compile without a working compiler: say so, time the others
        return [[size.name, runtime, f"failed: {type(e).__name__}: {str(e).splitlines()[0][:80]}"]], None
    if "feed" not in frames:
        frames["feed"] = feed_frames(config, size.seconds)
    feed = frames["feed"]
    feed_s = len(feed) / size.fps
    source = ArraySource(feed, size.fps)
    # The baseline: offline inference in its batches of 8 windows; and in batches of 1, as live runs them mostly.
    offline = {f"offline (predict_scores, batch {n})": lambda n=n: predict_scores(
        model, config, source, n, "cpu", precision=precision) for n in (DEFAULT_BATCH_SIZE, 1)}  # fmt: skip
    if runtime == "compile":  # one untimed pass (compiling included): offline's shapes compiled before timing
        start = time.perf_counter()
        next(iter(offline.values()))()
        compile_s += time.perf_counter() - start
    dtype = "bf16" if precision == torch.bfloat16 else "fp32"
    name = (
        f"torch.compile, {dtype} (compiling {compile_s:.0f} s)" if runtime == "compile" else f"eager {dtype}"
    )
    run = model_runner(model, config, precision)
    # An untrained model folder's selection: the default post-processing and display threshold.
    selection = ModelFolder(model_dir).selection
    post, thresholds = selection["postprocess"], display_thresholds(selection, list(config["classes"]), None)
    margin = event_margin(post, size.fps, 0)
    allowed = [x for x in latencies if round(x * size.fps) >= margin]
    timings = time_modes(
        offline, lambda x: live_events(run, config, feed, post, x, thresholds), allowed, rounds
    )
    base = timings[next(iter(offline))]
    rows = [[size.name, name, mode, "", timings[mode].wall_s / feed_s, timings[mode].cpu_s / feed_s, "",
             f"{timings[mode].wall_s / base.wall_s:.2f}x"] for mode in offline]  # fmt: skip
    for latency in latencies:
        t = timings.get(latency)
        if t is None:
            rows.append([size.name, name, f"live {latency:g} s",
                         f"refused: margin is {margin} frames ({margin / size.fps:g} s)"])  # fmt: skip
            continue
        rows.append([size.name, name, f"live {latency:g} s", f"{t.live.context} / {t.live.hop}", t.wall_s / feed_s,
                     t.cpu_s / feed_s, f"{1 - t.model_s / t.wall_s:.1%}", f"{t.wall_s / base.wall_s:.2f}x"])  # fmt: skip
    default = timings.get(DEFAULT_LATENCY_S)
    return rows, None if default is None else (default.wall_s / feed_s, default.wall_s / base.wall_s)


def speed_rows(size: ModelSize, runtimes: list[str], latencies: list[float],
               rounds: int) -> tuple[list[list], dict[str, tuple[float, float]]]:  # fmt: skip
    """One row per runtime and mode (offline, then each latency); and (real-time factor, live / offline) of each
    runtime at the default latency."""
    from model.predict import cpu_amp_enabled

    model_dir = make_model_dir(size)
    bf16 = cpu_amp_enabled()
    rows, at_default, frames = [], {}, {}
    for runtime in runtimes:
        if runtime == "bf16" and not bf16:
            rows.append([size.name, runtime, "skipped: this CPU has no native bf16 (or SPOT_CPU_AMP=off)"])
            continue
        more, factor = runtime_rows(size, runtime, model_dir, bf16, frames, latencies, rounds)
        rows += more
        if factor is not None:
            at_default[runtime] = factor
    return rows, at_default


def speed(args: argparse.Namespace) -> None:
    sizes = model_sizes()
    print(machine_line())
    for name in args.models:
        size = sizes[name]
        if args.seconds:
            size = replace(size, seconds=args.seconds)
        seconds = size.seconds
        print(f"\n{name}: {size.feature_arch} + {size.temporal_arch}, {size.width}x{size.height}, {size.fps:g} fps, "
              f"clip {size.clip_len}, {seconds:g} s of feed, best of {args.rounds}")  # fmt: skip
        rows, at_default = speed_rows(size, args.runtimes, args.latencies, args.rounds)
        print(tabulate(rows, headers=["model", "runtime", "mode", "context / hop (frames)", "real-time factor",
                                      "CPU s per s of feed", "post-processing share", "vs offline, batch 8"],
                       floatfmt=".3f"))  # fmt: skip
        if args.feed:  # run_live end to end on a real-time UDP feed (decoding included), all events written
            summary = udp_run(make_model_dir(size), args.feed, DEFAULT_LATENCY_S, score_threshold=0.0)
            print(udp_line(f"{args.feed} into the untrained {name} model", summary))
        if at_default:
            best = min(at_default, key=lambda r: at_default[r][0])
            factor, ratio = at_default[best]
            verdict = (
                "keeps up" if factor < 1 else f"does NOT keep up: {factor:.2f} s of work per second of feed"
            )
            print(f"{name}, at the default latency ({DEFAULT_LATENCY_S:g} s), fastest runtime {best}: live costs "
                  f"{ratio:.2f}x offline per frame; real-time factor {factor:.3f} (below 1 keeps up): {verdict}")  # fmt: skip
    print(machine_line())


# ---- the latency table (the demo model on its test games)


@dataclass
class Demo:
    """The demo's model and test games, and the offline reference."""

    model_dir: Path
    data: Path
    frames: Path
    videos: Path
    folder: object
    model: object
    config: dict
    post: PostProcess
    thresholds: dict[str, float]
    test: list[dict]
    ground_truth: dict
    offline_eval: list[dict]  # step 4's predictions (eval_soccernet_ball.py's path)


def open_demo(demo_dir: Path) -> Demo:
    from model.common import load_model
    from model.evaluate import PostprocessFlags, PredictionSettings, load_predictions, open_sources
    from model.folder import ModelFolder
    from model.inference import display_thresholds
    from util.dataset import load_split
    from util.ground_truth import load_ground_truth

    paths = {name: demo_dir / name for name in ("model", "data", "frames", "videos")}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise DataError(f"{', '.join(missing)}: not found; run `make demo` first (the table uses its model)")
    folder = ModelFolder(paths["model"])
    model, config, _ = load_model(folder, device="cpu")
    classes = list(config["classes"])
    settings = PredictionSettings(str(paths["data"]), str(paths["frames"]))
    offline = load_predictions(
        open_sources([str(paths["model"])]), "test", classes, settings, PostprocessFlags()
    )
    ground_truth = load_ground_truth(str(paths["data"]), str(paths["videos"]), paths["data"], "test", offline)
    demo = Demo(paths["model"], paths["data"], paths["frames"], paths["videos"], folder, model, config,
                folder.selection["postprocess"], display_thresholds(folder.selection, classes, None),
                load_split(paths["data"], "test"), ground_truth, offline)  # fmt: skip
    return demo


def scores_maps(demo: Demo, predictions: list[dict], shown: bool = False) -> tuple[float, float]:
    """(mAP@1, Team mAP@1) of per-video predictions; ``shown``: only the events above the display thresholds."""
    from util.metrics.results import predictions_by_game, spotting_results

    if shown:
        predictions = [dict(v, events=[e for e in v["events"] if e["score"] >= demo.thresholds[e["label"]]])
                       for v in predictions]  # fmt: skip
    results = spotting_results(demo.ground_truth, predictions_by_game(predictions), demo.config["classes"],
                               ("at1",), ("team_at1",))  # fmt: skip
    return results["at1"]["mAP"], results.get("team_at1", {}).get("mAP", float("nan"))


def delays(demo: Demo, predictions: list[dict]) -> str:
    """Median / p95 / max seconds of feed from a shown event's frame to the frame after which it was given
    (events given while the feed went on; the compute time is not in it)."""
    fps = float(demo.config["fps"])
    values = [e["delay_frames"] / fps for v in predictions for e in v["events"]
              if "delay_frames" in e and e["score"] >= demo.thresholds[e["label"]]]  # fmt: skip
    if not values:
        return "-"
    return " / ".join(f"{x:.1f}" for x in (np.median(values), np.percentile(values, 95), max(values)))


def game_frames(demo: Demo, video: dict) -> np.ndarray:
    """A test game's frames as step 4 reads them (the demo's JPEG folder)."""
    from model.predict import model_frame_source
    from util.frame_dir import FrameDir

    path = FrameDir.of(demo.frames).locate(video["video"])
    source = model_frame_source(demo.config, path, num_frames=video.get("num_frames"))
    return np.concatenate(list(source.iter_chunks(int(demo.config["clip_len"]))))


def shrunk_post(post: PostProcess, fps: float, latency_frames: int, displacement: int) -> PostProcess | None:
    """``post`` with its NMS window shrunk so that the margin fits the budget (no context left), or None."""
    fixed = event_margin(post.with_overrides(nms_window=0, fps=fps), fps, displacement)
    window = latency_frames - fixed
    return post.with_overrides(nms_window=window, fps=fps) if window >= 1 else None


def offline_predictions(demo: Demo, scores: dict, post: PostProcess) -> list[dict]:
    from model.predict import scores_to_predictions

    return scores_to_predictions(scores, demo.config, post)


def table_rows(demo: Demo, latencies: list[float]) -> list[list]:
    from model.predict import predict_scores

    fps = float(demo.config["fps"])
    displacement = int(demo.config.get("displacement") or 0)
    frames = {v["video"]: game_frames(demo, v) for v in demo.test}
    run = model_runner(demo.model, demo.config, None)  # run_live's precision: bf16 where native, else fp32
    scores = {name: predict_scores(demo.model, demo.config, ArraySource(f, fps), DEFAULT_BATCH_SIZE, "cpu")
              for name, f in frames.items()}  # fmt: skip
    rows = [["offline, step 4's path (eval_soccernet_ball.py)", "", *scores_maps(demo, demo.offline_eval),
             *scores_maps(demo, demo.offline_eval, shown=True), "", "", "", ""]]  # fmt: skip
    rows.append(["offline, the same frames predicted here", "",
                 *scores_maps(demo, offline_predictions(demo, scores, demo.post)),
                 *scores_maps(demo, offline_predictions(demo, scores, demo.post), shown=True), "", "", "", ""])  # fmt: skip
    for latency in latencies:
        post, label = demo.post, f"live {latency:g} s"
        for attempt in range(2):
            try:
                live = {name: live_events(run, demo.config, f, post, latency, demo.thresholds)
                        for name, f in frames.items()}  # fmt: skip
            except DataError:
                margin = event_margin(post, fps, displacement)
                rows.append([label, f"refused: margin is {margin} frames ({margin / fps:g} s)", *[""] * 8])
                post = (
                    shrunk_post(demo.post, fps, round(latency * fps), displacement) if attempt == 0 else None
                )
                if post is None:
                    break
                label = f"live {latency:g} s, NMS shrunk to +-{post.nms_window_s:g} s"
                continue
            predictions = [{"video": name, "fps": fps, "events": r.events} for name, r in live.items()]
            first = next(iter(live.values()))
            offline = offline_predictions(demo, scores, post)
            rows.append([label, f"{first.context} / {first.hop} / {first.margin}", *scores_maps(demo, predictions),
                         *scores_maps(demo, predictions, shown=True), *scores_maps(demo, offline),
                         delays(demo, predictions), sum(r.early for r in live.values())])  # fmt: skip
            break
    return rows


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def udp_run(model_dir: Path, video: Path, latency_s: float, score_threshold: float | None = None) -> dict:
    """``video`` streamed over UDP in real time (``send_video``) into ``run_live``: its summary."""
    from model.live import LiveSettings, run_live
    from util.live_send import send_video

    url = f"udp://127.0.0.1:{free_port()}"
    stop = threading.Event()

    def feed() -> None:
        time.sleep(5.0)  # run_live listens by then (it loads the model first)
        send_video(video, url)
        time.sleep(1.0)
        stop.set()

    threading.Thread(target=feed, daemon=True).start()
    out = Path(tempfile.mkdtemp(prefix="bench-live-"))
    settings = LiveSettings(latency_s=latency_s)
    summary = run_live(model_dir, url, out, settings, score_threshold=score_threshold, stop=stop)
    return summary | {"output": str(out)}


def udp_line(name: str, summary: dict) -> str:
    """The UDP run in a line: its delays, all and while the feed went on (the events of the feed's last
    ``latency`` seconds are written once it has stopped: a stall, or the end, decides when; a second more is
    left out for the frames whose windows ran with those)."""
    from model.live import iter_events

    events = list(iter_events(Path(summary["output"]) / "events.jsonl"))
    fps = summary["frames"] / summary["stream_s"]
    last = summary["frames"] - round(
        (summary["latency_s"] + 1.0) * fps
    )  # 1 s more: the end's batch of windows
    during = [e["delay_s"] for e in events if e["delay_s"] is not None and e["frame"] < last]

    def stats(values: list[float]) -> str:
        if not values:
            return "-"
        return f"median {np.median(values):.2f} s, p95 {np.percentile(values, 95):.2f} s, max {max(values):.2f} s"

    delays = [e["delay_s"] for e in events if e["delay_s"] is not None]
    return (f"UDP, {name} in real time, latency {summary['latency_s']:g} s: {summary['frames']} frames, "
            f"{summary['events']} events written ({summary.get('early_events', 0)} early), model load "
            f"{summary['model_load']} (model s per s of feed), {summary['skipped_frames']} frames skipped; delay from "
            f"a frame's arrival to its event written: {stats(delays)}; of the {len(during)} events up to latency + 1 s "
            f"before the feed's end: {stats(during)}; {summary['output']}")  # fmt: skip


def table(args: argparse.Namespace) -> None:
    print(machine_line())
    demo = open_demo(args.demo_dir)
    print(f"{demo.model_dir}: {demo.config['feature_arch']} + {demo.config['temporal_arch']}, "
          f"{demo.config['fps']:g} fps, clip {demo.config['clip_len']}; post-processing {demo.post.describe(demo.config['fps'])}; "
          f"{len(demo.test)} test games")  # fmt: skip
    rows = table_rows(demo, args.latencies)
    print(tabulate(rows, headers=["events", "context / hop / margin (frames)", "mAP@1", "Team mAP@1",
                                  "mAP@1, shown", "Team mAP@1, shown", "offline mAP@1, same post",
                                  "offline Team mAP@1, same post", "delay of shown events, s", "early"],
                   floatfmt=".3f"))  # fmt: skip
    print(
        "'shown': the events above the model folder's display thresholds, those run_live writes; 'delay': seconds "
        "of feed from an event's frame to the frame after which it was given, median / p95 / max (no compute)"
    )
    if args.udp:
        game = demo.test[0]["video"]
        print(udp_line(game, udp_run(demo.model_dir, demo.videos / game / "224p.mp4", DEFAULT_LATENCY_S)))
    print(machine_line())


def get_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--table", action="store_true", help="the latency table on the demo's test games")
    parser.add_argument("--demo_dir", type=Path, default=Path("demo"), help="--table: the demo's outputs")
    parser.add_argument("--udp", action=argparse.BooleanOptionalAction, default=True,
                        help="--table: also one test game over UDP in real time (2 minutes)")  # fmt: skip
    parser.add_argument("--models", default="demo,real", help="speed: model sizes (demo, real, tdeed, tiny)")
    parser.add_argument("--runtimes", default="fp32,bf16",
                        help="speed: of " + ", ".join(RUNTIMES) + " (default: fp32,bf16; compile takes minutes)")  # fmt: skip
    parser.add_argument("--latencies", default=",".join(f"{x:g}" for x in LATENCIES_S), help="seconds")
    parser.add_argument("--seconds", type=float, help="speed: seconds of feed (default: 120 demo, 20 real)")
    parser.add_argument("--rounds", type=int, default=2, help="speed: rounds per measurement, best counts")
    parser.add_argument("--feed", type=Path, help="speed: also stream this video over UDP in real time into "
                        "run_live with each model (a real 720p H.264 stream shows the decoding's cost)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="a tiny model, 4 s, eager only (a smoke test)")
    args = parser.parse_args(argv)
    args.models, args.runtimes = args.models.split(","), args.runtimes.split(",")
    args.latencies = [float(x) for x in args.latencies.split(",")]
    if args.quick:
        args.models, args.runtimes, args.rounds = ["tiny"], ["fp32", "bf16"], 1
    unknown = sorted(set(args.models) - set(model_sizes())) + sorted(set(args.runtimes) - set(RUNTIMES))
    if unknown:
        parser.error(f"unknown model size or runtime: {', '.join(unknown)}")
    if args.feed is not None and not args.feed.is_file():
        parser.error(f"--feed {args.feed}: no such video file")
    return args


def main(argv: list[str] | None = None) -> None:
    args = get_args(argv if argv is not None else [])
    if args.table:
        table(args)
    else:
        speed(args)


if __name__ == "__main__":
    from util.allocator import use_fast_allocator
    from util.cli import run_main

    use_fast_allocator()
    sys.exit(run_main(main, sys.argv[1:]))
