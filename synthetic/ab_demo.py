"""A/B at the demo's setting (5 fps, 112 px, rny002 + GRU from scratch): how the team is spotted, and joint training.

``python -m synthetic.ab_demo --out ab-demo`` renders the demo's library (``synthetic.demo.DEMO``) and, for the
joint and sequential arms, a SoccerNet-v2-style library of the same length (8 train games of two 60 s halves, eight
classes of their own), extracts and parses both (once), then trains each arm with each seed through
``train_e2e.py`` with the demo's own training flags (a run whose model folder already holds ``selection.json`` is
kept). Each run is measured on the demo's test games: SoccerNet mAP@1 and Team mAP@1 (the official metrics,
``util.metrics``) of the events of the post-processing the run chose on val. It prints a Markdown table (the mean,
its 95% t-interval over the seeds, and the runs) and writes ``OUT/ab.json``.

The arms, all at the same compute (12 epochs of 4,000 frames, the demo's):
- ``head``: the demo as it is, a team head beside the classes (sn-teamspotting's encoding);
- ``classes``: team as classes (``--team_encoding classes``, NMS per (class, team)), the 2025 winner's encoding;
- ``joint``: the demo trained jointly with the v2-style library (``--joint``, half of every batch from it);
- ``sequential``: 6 epochs on the v2-style library, then 6 on the demo's (``--init_from``), as the 2024 winners'
  recipe is usually run; one pretraining (seed 0) starts every seed's fine-tuning.

and, without retraining (the NMS changes no weight, only what is chosen on val: :func:`chosen_with`), the trained
arms' models with the other NMS: per (class, team) for the team head (chosen by val mAP@1, or by val Team mAP@1, the
demo's choice since), per class for team as classes.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from pathlib import Path

from synthetic.demo import DEMO, demo_steps
from synthetic.levers import ab_args, run

# The v2-style library: as much video as the demo's train games (8 x 120 s), in halves.
V2_LIBRARY = {"split_counts": "8,1,0,0", "seconds": 60, "seed": 1}
SEQUENTIAL_EPOCHS = 6  # of the demo's 12: pretraining, then as many fine-tuning
JOINT_FRACTION = 0.5
# name -> (what it tests, the flags beside the demo's)
ARMS: dict[str, str] = {
    "head": "the demo: team head (P(right) per frame), NMS per class",
    "head_team_nms": "the same models, NMS per (class, team) on p(c) P(team) (`--team_nms class_team`)",
    "head_team_nms_team_map": "the same, the epoch and NMS chosen by val Team mAP@1 (`--criterion team_map`)",
    "classes": "team as classes (2 x 12 + background), NMS per (class, team)",
    "classes_class_nms": "the same models, NMS per class on p(c, left) + p(c, right) (`--team_nms class`)",
    "joint": f"joint with a v2-style library, {JOINT_FRACTION:.0%} of each batch from it, a second class head",
    "sequential": f"{SEQUENTIAL_EPOCHS} epochs on the v2-style library, then {SEQUENTIAL_EPOCHS} on the demo's",
    "joint_team_nms_team_map": "joint's models, NMS per (class, team), chosen by val Team mAP@1 (the demo's now)",
    "sequential_team_nms_team_map": "sequential's models, the same",
}
# Student's t at 97.5% for n - 1 degrees of freedom (n seeds): the half-width of a 95% interval of the mean.
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def demo_train_argv(out: Path, python: str) -> list[str]:
    """The demo's step 3 (its training command) on the A/B's library, without ``-s``, as it was when the A/B ran:
    the epoch and the NMS chosen by val mAP@1, NMS per class (the demo adopted NMS per (class, team) and selection
    by val Team mAP@1 from this A/B: ``head_team_nms_team_map``)."""
    steps = demo_steps(out, python)
    argv = next(s.argv for s in steps if s.title.startswith("Step 3"))
    i = argv.index("-s")
    argv = argv[:i] + argv[i + 2 :]
    if "--team_nms" in argv:  # the demo since this A/B: its baseline is the demo before it (NMS per class)
        i = argv.index("--team_nms")
        argv = argv[:i] + argv[i + 2 :]
    return argv if "--criterion" in argv else [*argv, "--criterion", "map"]


def with_flag(argv: list[str], flag: str, value: str) -> list[str]:
    """``argv`` with ``flag``'s value replaced (the flag must be there)."""
    i = argv.index(flag)
    return argv[: i + 1] + [value] + argv[i + 2 :]


def prepare(out: Path, python: str) -> None:
    """The demo's library, frames and parsed labels, once (its steps, not inference)."""
    if (out / "data" / "test.json").is_file():
        return
    for step in demo_steps(out, python)[:3]:
        run(step.argv, out / "prepare.log")


def prepare_v2(out: Path, python: str) -> None:
    """The v2-style library at the demo's frame rate and size, its frames and parsed labels, once."""
    if (out / "v2data" / "train.json").is_file():
        return
    log, videos, frames = out / "prepare-v2.log", out / "v2videos", out / "v2frames"
    run([python, "-m", "synthetic.library", str(videos), "--label_format", "v2", "--split_counts",
         V2_LIBRARY["split_counts"], "--seconds", str(V2_LIBRARY["seconds"]), "--seed", str(V2_LIBRARY["seed"]),
         "-j", "2"], log)  # fmt: skip
    run([python, "frames_as_jpg_soccernet_ball.py", str(videos), "-o", str(frames), "--sample_fps",
         str(DEMO["sample_fps"]), "--height", str(DEMO["height"]), "--chroma", "444", "-j", "2"], log)  # fmt: skip
    run([python, "parse_soccernet_ball.py", str(videos), str(frames), "-o", str(out / "v2data"), "--labels", "v2",
         "--splits", str(videos / "splits.json")], log)  # fmt: skip


def short(argv: list[str], epochs: int) -> list[str]:
    """The demo's flags for a run of ``epochs`` epochs, val mAP over its last 3 (as the demo's 12)."""
    return with_flag(
        with_flag(argv, "--num_epochs", str(epochs)), "--start_val_epoch", str(max(0, epochs - 3))
    )


def pretrain_v2(out: Path, seed: int, python: str) -> Path:
    """The sequential arm's first half: the demo's recipe on the v2-style library (no team: v2's is home/away)."""
    prepare_v2(out, python)
    model = out / "models" / f"v2-pretrain-s{seed}"
    if not (model / "selection.json").is_file():
        swap = {str(out / "data"): str(out / "v2data"), str(out / "frames"): str(out / "v2frames")}
        argv = [
            swap.get(a, a) for a in short(demo_train_argv(out, python), SEQUENTIAL_EPOCHS) if a != "--team"
        ]
        run([*argv, "-s", str(model), "--seed", str(seed)], out / f"train-v2-pretrain-s{seed}.log")
    return model


def arm_argv(out: Path, arm: str, seed: int, python: str) -> list[str]:
    argv = demo_train_argv(out, python)
    if arm == "classes":
        return argv + ["--team_encoding", "classes"]
    if arm == "joint":
        prepare_v2(out, python)
        return argv + [
            "--joint",
            str(out / "v2data"),
            str(out / "v2frames"),
            "--joint_fraction",
            str(JOINT_FRACTION),
        ]
    if arm == "sequential":
        # One pretraining (seed 0) for every seed's fine-tuning, as a published pretrained model would be.
        return short(argv, SEQUENTIAL_EPOCHS) + ["--init_from", str(pretrain_v2(out, 0, python))]
    return argv


# Arms that choose again with a trained arm's models: name -> (the trained arm, NMS per (class, team) or not, the
# val metric that chooses the epoch and the post-processing).
PREDICT_ARMS = {
    "head_team_nms": ("head", True, "mAP"),
    "head_team_nms_team_map": ("head", True, "team_mAP"),
    "classes_class_nms": ("classes", False, "mAP"),
    "joint_team_nms_team_map": ("joint", True, "team_mAP"),
    "sequential_team_nms_team_map": ("sequential", True, "team_mAP"),
}


def train(out: Path, arm: str, seed: int, python: str) -> Path:
    arm = PREDICT_ARMS[arm][0] if arm in PREDICT_ARMS else arm
    model = out / "models" / f"{arm}-s{seed}"
    if not (model / "selection.json").is_file():
        argv = arm_argv(out, arm, seed, python)
        start = time.perf_counter()
        run([*argv, "-s", str(model), "--seed", str(seed)], out / f"train-{arm}-s{seed}.log")
        print(f"    {arm} seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    return model


def test_metrics(out: Path, model: Path, per_team: bool | None = None, key: str = "mAP") -> dict[str, float]:
    """mAP@1 and Team mAP@1 of a trained run's test scores under the epoch and post-processing it chose on val;
    with ``per_team``, those that training with ``--team_nms class_team`` (True) or ``class`` (False) and the
    criterion of ``key`` would have chosen (:func:`chosen_with`; kept in the model folder)."""
    import json

    cache = model / f"ab-{'class_team' if per_team else 'class'}-{key}.json"
    if per_team is not None and cache.is_file():
        return json.loads(cache.read_text())
    from model.common import load_config, load_selection
    from model.predict import scores_to_predictions
    from util.io import load_json
    from util.metrics.results import labels_by_game, predictions_by_game
    from util.metrics.spotting import soccernet_map, team_map
    from util.postprocess import load_scores

    config = load_config(model)
    classes = config["classes"]
    if per_team is None:
        selection = load_selection(model)
        scores = load_scores(model / f"pred-test.{selection['epoch']}.score.npz")
        post = selection["postprocess"]
    else:
        config, scores, post = chosen_with(out, model, per_team, key)
    truth = labels_by_game(load_json(out / "data" / "test.json"))
    predicted = predictions_by_game(scores_to_predictions(scores, config, post))
    metrics = {
        "mAP@1": soccernet_map(truth, predicted, classes)["mAP"],
        "Team mAP@1": team_map(truth, predicted, classes)["mAP"],
    }
    if per_team is not None:
        cache.write_text(json.dumps(metrics))
    return metrics


def chosen_with(out: Path, model: Path, per_team: bool, key: str = "mAP"):
    """(config, test scores, post-processing) of a trained run as if trained with ``--team_nms class_team``
    (``per_team``) or ``class``. The NMS mode changes no weight, only what is chosen on val: each validated epoch's
    checkpoint predicts the val game again, the epoch and the post-processing are chosen as training chooses them
    (by val mAP@1, the demo's criterion, ties to the later epoch), and that epoch predicts the test games."""
    from model.common import load_model
    from model.predict import predict_videos
    from model.select import best_entry, grid_scores
    from util.io import load_json

    val, test = (load_json(out / "data" / f"{split}.json") for split in ("val", "test"))
    mode = "class_team" if per_team else "class"
    history = load_json(model / "loss.json")
    best = None
    for epoch in [h["epoch"] for h in history if h.get("val_mAP") is not None]:
        net, config, _ = load_model(model, epoch)
        config = {**config, "team_nms": mode}
        row = best_entry(grid_scores(predict_videos(net, config, out / "frames", val), val, config), key)
        if best is None or row[key] >= best[1][key]:
            best = (epoch, row)
    net, config, _ = load_model(model, best[0])
    config = {**config, "team_nms": mode}
    return config, predict_videos(net, config, out / "frames", test), best[1]["postprocess"]


def interval(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of its 95% t-interval over the runs; nan for one run)."""
    mean = statistics.mean(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, T_975.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))


def table(results: dict[str, list[dict[str, float]]]) -> str:
    keys = ("mAP@1", "Team mAP@1")
    lines = ["| arm | what | " + " | ".join(keys) + " |", "|---|---|" + "---|" * len(keys)]
    for arm, runs in results.items():
        cells = []
        for key in keys:
            values = [r[key] for r in runs]
            mean, half = interval(values)
            spread = "" if math.isnan(half) else f" ± {half:.3f}"
            cells.append(f"**{mean:.3f}**{spread} ({', '.join(f'{v:.3f}' for v in values)})")
        lines.append(f"| {arm} | {ARMS[arm]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def get_args(argv: list[str] | None = None):
    """(args, arms, seeds) of the command line."""
    return ab_args(argv, "python -m synthetic.ab_demo", __doc__, "ab-demo", "0,1,2", list(ARMS))


def main(argv: list[str] | None = None) -> int:
    args, arms, seeds = get_args(argv)
    python = sys.executable
    args.out.mkdir(parents=True, exist_ok=True)
    prepare(args.out, python)
    for seed in seeds:  # seed by seed, so that an interrupted A/B has every arm's first seeds
        for arm in arms:
            train(args.out, arm, seed, python)
    results: dict[str, list[dict[str, float]]] = {}
    for arm in arms:
        _, per_team, key = PREDICT_ARMS.get(arm, (arm, None, "mAP"))
        results[arm] = [
            test_metrics(args.out, train(args.out, arm, seed, python), per_team, key) for seed in seeds
        ]
        runs = results[arm]
        print(
            f"{arm}: " + ", ".join(f"{k} {statistics.mean(r[k] for r in runs):.3f}" for k in runs[0]),
            flush=True,
        )
    text = table(results)
    print(text)
    (args.out / "ab.json").write_text(
        json.dumps({"results": results, "arms": ARMS, "seeds": seeds}, indent=1)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
