"""A/B of the winners' levers on the synthetic library at 25 fps (README, "What each lever does").

``python -m synthetic.levers --out ab`` renders a 25 fps library, extracts its frames and parses it (once), then
trains every arm with each seed through the numbered scripts (a run whose model folder already holds
``selection.json`` is kept) and measures each on the unseen test games: SoccerNet mAP@1 (the official evaluator's
number, ``util.metrics``) and E2E-Spot's frame mAP at 0 and 1 frame of tolerance, both on the events of the
post-processing the run chose on val. The arms that only change how a trained model is used (test-time flips, the
window overlap, per-class NMS windows) are measured on the baseline's runs, without retraining. It prints a
Markdown table (mean and the runs) and writes ``OUT/levers.json``.

Arms that need what other steps make: ``transfer`` fine-tunes from a model pretrained on a v2-style library (other
classes; rendered and trained here with the same budget), ``features_*`` train a temporal head on frozen features
of the baseline's first run (``extract_features.py``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

# The library and the training budget of every arm (the demo's recipe at 25 fps: frames 112 px high with full
# colour resolution, rny002 from scratch, class-balanced foreground clips, no colour augmentation).
LIBRARY = {"split_counts": "6,1,2,0", "seconds": 90, "seed": 0}
FPS = 25
HEIGHT = 112
TRAIN = [
    "-m", "rny002", "--clip_len", "50", "--batch_size", "8", "--num_epochs", "8", "--warm_up_epochs", "1",
    "--epoch_num_frames", "4000", "-lr", "0.002", "--start_val_epoch", "5", "--fg_upsample", "0.8",
    "--fg_balance", "--dilate_len", "1", "--criterion", "map", "--no-mixup", "--no-augment", "--no_pretrained",
    "-j", "1",
]  # fmt: skip
DISPLACEMENT_R = 4  # frames: +-0.16 s at 25 fps
# name -> (training flags beside TRAIN, what it tests)
TRAINED_ARMS: dict[str, tuple[list[str], str]] = {
    "baseline": (["-t", "gru"], "rny002 + GRU, weighted cross-entropy"),
    "tdeed": (["-t", "tdeed"], "T-DEED's SGP encoder-decoder head"),
    "displacement": (
        ["-t", "gru", "--displacement", str(DISPLACEMENT_R)],
        f"GRU + displacement R={DISPLACEMENT_R}",
    ),
    "tdeed_displacement": (
        ["-t", "tdeed", "--displacement", str(DISPLACEMENT_R)],
        f"T-DEED head + displacement R={DISPLACEMENT_R}",
    ),
    "focal": (["-t", "gru", "--loss", "focal"], "GRU, focal loss (gamma 2)"),
    "flip_trained": (["-t", "gru", "--augment"], "GRU trained with augmentation (flips, crops, colour)"),
}
# name -> (config overrides at prediction, what it tests, the trained arm whose runs predict again).
PREDICT_ARMS: dict[str, tuple[dict, str, str]] = {
    "tta_flip": ({"tta": "flip"}, "baseline + test-time flip", "baseline"),
    "overlap_0.75": ({"window_overlap": 0.75}, "baseline, windows overlapping by 3/4", "baseline"),
    "flip_trained_tta_flip": ({"tta": "flip"}, "flip_trained + test-time flip", "flip_trained"),
}
# name -> (training flags beside TRAIN, what it tests): a temporal head on frozen features of the baseline's first
# run (the whole backbone, seed 0), seconds an epoch, so the temporal levers can be compared at little cost.
FEATURE_ARMS: dict[str, tuple[list[str], str]] = {
    "features_gru": (["-t", "gru"], "frozen features + GRU"),
    "features_tdeed": (["-t", "tdeed"], "frozen features + T-DEED head"),
    "features_displacement": (
        ["-t", "gru", "--displacement", str(DISPLACEMENT_R)],
        "frozen features + GRU + displacement",
    ),
    "features_tdeed_displacement": (
        ["-t", "tdeed", "--displacement", str(DISPLACEMENT_R)],
        "frozen features + T-DEED head + displacement",
    ),
    "features_focal": (["-t", "gru", "--loss", "focal"], "frozen features + GRU, focal loss"),
    "features_mstcn": (["-t", "mstcn"], "frozen features + MS-TCN"),
}
ARMS = [*TRAINED_ARMS, *PREDICT_ARMS, "per_class_nms", "transfer", *FEATURE_ARMS]
# The pretraining library of the transfer arm: SoccerNet-v2-style (Labels-v2.json, halves, classes of its own).
V2_LIBRARY = {"split_counts": "6,1,0,0", "seconds": 45, "seed": 1}  # 6 games x 2 halves of 45 s


def run(argv: list[str], log: Path) -> None:
    print(f"$ {shlex.join(argv)}", flush=True)
    with log.open("a") as f:
        f.write(f"$ {shlex.join(argv)}\n")
        f.flush()
        code = subprocess.call(argv, stdout=f, stderr=subprocess.STDOUT)
    if code:
        sys.exit(f"failed (exit {code}); see {log}")


def prepare(out: Path, python: str) -> None:
    """Library, frames and parsed labels, once."""
    if (out / "data" / "test.json").is_file():
        return
    log = out / "prepare.log"
    videos, frames = out / "videos", out / "frames"
    run([python, "-m", "synthetic.library", str(videos), "--split_counts", LIBRARY["split_counts"],
         "--seconds", str(LIBRARY["seconds"]), "--seed", str(LIBRARY["seed"]), "-j", "2"], log)  # fmt: skip
    run([python, "frames_as_jpg_soccernet_ball.py", str(videos), "-o", str(frames), "--sample_fps", str(FPS),
         "--height", str(HEIGHT), "--chroma", "444", "-j", "2"], log)  # fmt: skip
    run([python, "parse_soccernet_ball.py", str(videos), str(frames), "-o", str(out / "data"), "--splits",
         str(videos / "splits.json")], log)  # fmt: skip


def prepare_v2(out: Path, python: str) -> None:
    """The v2-style library of the transfer arm, its frames and parsed labels, once."""
    if (out / "v2data" / "train.json").is_file():
        return
    log = out / "prepare-v2.log"
    videos, frames = out / "v2videos", out / "v2frames"
    run([python, "-m", "synthetic.library", str(videos), "--label_format", "v2", "--split_counts",
         V2_LIBRARY["split_counts"], "--seconds", str(V2_LIBRARY["seconds"]), "--seed", str(V2_LIBRARY["seed"]),
         "-j", "2"], log)  # fmt: skip
    run([python, "frames_as_jpg_soccernet_ball.py", str(videos), "-o", str(frames), "--sample_fps", str(FPS),
         "--height", str(HEIGHT), "--chroma", "444", "-j", "2"], log)  # fmt: skip
    run([python, "parse_soccernet_ball.py", str(videos), str(frames), "-o", str(out / "v2data"), "--labels", "v2",
         "--splits", str(videos / "splits.json")], log)  # fmt: skip


def pretrain(out: Path, python: str) -> Path:
    """The model the transfer arm starts from: the baseline's recipe on the v2-style library (seed 0)."""
    prepare_v2(out, python)
    model = out / "models" / "v2-pretrain"
    if not (model / "selection.json").is_file():
        argv = [python, "train_e2e.py", str(out / "v2data"), str(out / "v2frames"), *TRAIN, "-t", "gru"]
        run([*argv, "-s", str(model), "--seed", "0"], out / "train-v2-pretrain.log")
    return model


def features(out: Path, python: str) -> Path:
    """Frozen per-frame features of every split, from the baseline's first run (extract_features.py), once."""
    folder = out / "features"
    if not (folder / "features.json").is_file() or not any(folder.rglob("*.npy")):
        source = train(out, "baseline", 0, python)
        run([python, "extract_features.py", str(out / "data"), str(out / "frames"), "-o", str(folder),
             "--model_dir", str(source)], out / "features.log")  # fmt: skip
    return folder


def arm_flags(out: Path, arm: str, python: str) -> list[str]:
    if arm == "transfer":
        return ["-t", "gru", "--init_from", str(pretrain(out, python))]
    if arm in FEATURE_ARMS:
        return FEATURE_ARMS[arm][0]
    return TRAINED_ARMS[arm][0]


def train(out: Path, arm: str, seed: int, python: str) -> Path:
    model = out / "models" / f"{arm}-s{seed}"
    if not (model / "selection.json").is_file():
        flags = arm_flags(out, arm, python)
        inputs = features(out, python) if arm in FEATURE_ARMS else out / "frames"
        argv = [
            python,
            "train_e2e.py",
            str(out / "data"),
            str(inputs),
            *TRAIN,
            *flags,
            "-s",
            str(model),
        ]
        start = time.perf_counter()
        run([*argv, "--seed", str(seed)], out / f"train-{arm}-s{seed}.log")
        print(f"    {arm} seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    return model


def test_metrics(out: Path, predictions: list[dict], classes: list[str]) -> dict[str, float]:
    """mAP@1 (SoccerNet) and frame mAP at 0 / 1 frame of the test predictions."""
    from util.io import load_json
    from util.metrics.frame import frame_map
    from util.metrics.results import labels_by_game, predictions_by_game
    from util.metrics.spotting import soccernet_map

    truth = load_json(out / "data" / "test.json")
    frames = frame_map(truth, predictions, classes, tolerances=(0, 1))["by_tolerance"]
    return {
        "mAP@1": soccernet_map(labels_by_game(truth), predictions_by_game(predictions), classes)["mAP"],
        "frame mAP 0": frames[0]["mAP"],
        "frame mAP 1": frames[1]["mAP"],
    }


def trained_metrics(out: Path, model: Path) -> dict[str, float]:
    from model.common import load_config, load_selection
    from util.io import load_json

    epoch = load_selection(model)["epoch"]
    return test_metrics(out, load_json(model / f"pred-test.{epoch}.json"), load_config(model)["classes"])


def predicted_metrics(out: Path, model: Path, overrides: dict) -> dict[str, float]:
    """The baseline model predicting the test games again with other prediction settings."""
    from model.common import load_model, load_selection
    from model.predict import predict_videos, scores_to_predictions
    from util.io import load_json

    net, config, _ = load_model(model)
    config = {**config, **overrides}
    videos = load_json(out / "data" / "test.json")
    results = predict_videos(net, config, out / "frames", videos, device="cpu")
    post = load_selection(model)["postprocess"]
    return test_metrics(out, scores_to_predictions(results, config, post), config["classes"])


def per_class_metrics(out: Path, model: Path) -> dict[str, float]:
    """The baseline's selection with per-class NMS windows chosen on its val scores (as --per_class_nms does)."""
    from model.common import load_config, load_selection
    from model.predict import scores_to_predictions
    from model.select import grid_scores, per_class_windows
    from util.io import load_json
    from util.postprocess import load_scores

    config, selection = load_config(model), load_selection(model)
    epoch = selection["epoch"]
    val = load_scores(model / f"pred-val.{epoch}.score.npz")
    rows = grid_scores(val, load_json(out / "data" / "val.json"), config)
    post = per_class_windows(rows, selection["postprocess"], "per_class")
    print(f"    per-class windows of {model.name}: {post.describe(FPS)}", flush=True)
    test = load_scores(model / f"pred-test.{epoch}.score.npz")
    return test_metrics(out, scores_to_predictions(test, config, post), config["classes"])


def table(results: dict[str, list[dict[str, float]]], notes: dict[str, str]) -> str:
    keys = ("mAP@1", "frame mAP 0", "frame mAP 1")
    lines = ["| arm | what | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for arm, runs in results.items():
        cells = []
        for key in keys:
            values = [r[key] for r in runs]
            cells.append(f"**{statistics.mean(values):.3f}** ({', '.join(f'{v:.3f}' for v in values)})")
        lines.append(f"| {arm} | {notes.get(arm, '')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ab_args(
    argv: list[str] | None, prog: str, doc: str, out: str, seeds: str, known: list[str]
) -> tuple[argparse.Namespace, list[str], list[int]]:
    """An A/B runner's command line (``--out``, ``--seeds``, ``--arms`` from ``known``): (args, arms, seeds)."""
    p = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, default=Path(out), help="working folder (libraries, frames, models)")
    p.add_argument("--seeds", default=seeds, help="training seeds: each arm runs once per seed")
    p.add_argument("--arms", default=",".join(known), help=f"comma-separated, from: {', '.join(known)}")
    args = p.parse_args(argv)
    arms = [a for a in args.arms.split(",") if a]
    unknown = sorted(set(arms) - set(known))
    if unknown:
        p.error(f"unknown arm(s) {unknown}; choose from {', '.join(known)}")
    return args, arms, [int(s) for s in args.seeds.split(",")]


def main(argv: list[str] | None = None) -> int:
    args, arms, seeds = ab_args(argv, "python -m synthetic.levers", __doc__, "ab", "0,1", ARMS)
    python = sys.executable
    args.out.mkdir(parents=True, exist_ok=True)
    prepare(args.out, python)
    results: dict[str, list[dict[str, float]]] = {}
    notes = {a: entry[1] for a, entry in {**TRAINED_ARMS, **PREDICT_ARMS, **FEATURE_ARMS}.items()}
    notes["per_class_nms"] = "baseline, NMS window per class chosen on val"
    notes["transfer"] = "baseline's recipe from a model pretrained on a v2-style library (other classes)"
    bases = ["baseline"] * ("per_class_nms" in arms) + [PREDICT_ARMS[a][2] for a in arms if a in PREDICT_ARMS]
    trained = [a for a in arms if a in TRAINED_ARMS or a in FEATURE_ARMS or a == "transfer"]
    for arm in dict.fromkeys(bases + trained):  # each once, in order
        for seed in seeds:
            train(args.out, arm, seed, python)
    for arm in arms:
        runs = []
        for seed in seeds:
            base = PREDICT_ARMS[arm][2] if arm in PREDICT_ARMS else arm if arm in trained else "baseline"
            model = train(args.out, base, seed, python)
            if arm in trained:
                runs.append(trained_metrics(args.out, model))
            elif arm in PREDICT_ARMS:
                runs.append(predicted_metrics(args.out, model, PREDICT_ARMS[arm][0]))
            else:
                runs.append(per_class_metrics(args.out, model))
        results[arm] = runs
        print(
            f"{arm}: " + ", ".join(f"{k} {statistics.mean(r[k] for r in runs):.3f}" for k in runs[0]),
            flush=True,
        )
    text = table(results, notes)
    print(text)
    (args.out / "levers.json").write_text(json.dumps({"results": results, "notes": notes}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
