"""SoccerNet mAP: util.metrics against the SoccerNet package's official evaluator, on the same predictions.

2 games x 100 minutes x 12 classes (about 1,600 ground-truth events and 10,000 predictions per game), one video
per game. Both are timed from the same plain data, the same way (best of ``--rounds``): the official evaluator reads
them from Labels-ball.json / results_spotting.json files written once beforehand (its JSON reading is part of its
time, as in real use), ours takes the same rows in memory. Default: at1 and tight (the official evaluator needs
about 1 s + 5 s a round here); ``python -m benchmarks.bench_score --full`` times every metric (minutes).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from util.metrics.spotting import METRICS, soccernet_maps
from util.soccernet import CLASSES, game_time

GAMES = 2
MINUTES = 100
GT_PER_GAME = 1600
PREDICTIONS_PER_GAME = 10_000
# Rough class frequencies of SoccerNet-Ball (PASS and DRIVE dominate; GOAL and FREE KICK are rare).
CLASS_WEIGHTS = np.array([40, 30, 5, 5, 4, 3, 3, 3, 3, 2, 1, 1], np.float64)


def make_games(
    seed: int = 0,
    minutes: float = MINUTES,
    gt_per_game: int = GT_PER_GAME,
    predictions_per_game: int = PREDICTIONS_PER_GAME,
) -> tuple[dict[str, list[dict]], dict[str, list[dict]]]:
    """Synthetic Labels-ball.json annotations and results_spotting.json rows per game."""
    rng = np.random.default_rng(seed)
    p = CLASS_WEIGHTS / CLASS_WEIGHTS.sum()
    length_ms = int(minutes * 60 * 1000)
    labels, predictions = {}, {}
    for g in range(GAMES):
        game = f"bench_league/2024-2025/game {g}"
        gt_ms = np.sort(rng.integers(0, length_ms, gt_per_game))
        gt_cls = rng.choice(len(CLASSES), gt_per_game, p=p)
        labels[game] = [
            {
                "gameTime": game_time(1, int(ms)),
                "label": CLASSES[c],
                "position": str(int(ms)),
                "team": "left" if rng.random() < 0.5 else "right",
                "visibility": "not shown" if rng.random() < 0.1 else "visible",
            }
            for ms, c in zip(gt_ms, gt_cls, strict=True)
        ]
        hit = rng.random(gt_per_game) < 0.85
        true_ms = gt_ms[hit] + rng.normal(0, 400, hit.sum()).astype(np.int64)
        n_false = predictions_per_game - int(hit.sum())
        ms = np.concatenate([true_ms, rng.integers(0, length_ms, n_false)]).clip(0)
        cls = np.concatenate([gt_cls[hit], rng.choice(len(CLASSES), n_false, p=p)])
        score = np.concatenate([rng.beta(5, 2, hit.sum()), rng.beta(1, 5, n_false)])
        order = np.argsort(ms, kind="stable")
        predictions[game] = [
            {"gameTime": game_time(1, int(ms[i])), "label": CLASSES[cls[i]], "position": str(int(ms[i]))}
            | {"half": "1", "confidence": str(float(score[i]))}
            for i in order
        ]
    return labels, predictions


def _write(folder: Path, rows: dict[str, list[dict]], name: str, key: str) -> None:
    for game, items in rows.items():
        (folder / game).mkdir(parents=True, exist_ok=True)
        (folder / game / name).write_text(json.dumps({"UrlLocal": game, key: items}))


def official(label_dir: Path, pred_dir: Path, metric: str) -> float:
    from SoccerNet.Evaluation.ActionSpotting import evaluate

    with contextlib.redirect_stderr(io.StringIO()):  # its tqdm bars
        result = evaluate(
            str(label_dir),
            str(pred_dir),
            prediction_file="results_spotting.json",
            label_files="Labels-ball.json",
            version=2,
            framerate=25,
            metric=metric,
            dataset=None,
            EVENT_DICTIONARY={c: i for i, c in enumerate(CLASSES)},
        )
    return float(result["a_mAP"])


def _timed(fn, repeat: int = 1) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--full", action="store_true", help="time every metric, not only at1 and tight")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each evaluator; the best counts")
    parser.add_argument("--quick", action="store_true", help="10-minute games, one round (a smoke test)")
    args = parser.parse_args(argv if argv is not None else [])
    metrics = list(METRICS) if args.full else ["at1", "tight"]
    minutes, scale = (10, 10) if args.quick else (MINUTES, 1)
    rounds = 1 if args.quick else args.rounds
    labels, predictions = make_games(0, minutes, GT_PER_GAME // scale, PREDICTIONS_PER_GAME // scale)
    n_pred = sum(len(v) for v in predictions.values())
    print(
        f"bench_score: {GAMES} games x {minutes} min x {len(CLASSES)} classes, {n_pred} predictions; "
        f"best of {rounds} round(s) each"
    )
    with tempfile.TemporaryDirectory() as tmp:
        label_dir, pred_dir = Path(tmp) / "labels", Path(tmp) / "predictions"
        _write(label_dir, labels, "Labels-ball.json", "annotations")
        _write(pred_dir, predictions, "results_spotting.json", "predictions")
        total_official = total_ours = 0.0
        for metric in metrics:
            t_official, map_official = _timed(lambda m=metric: official(label_dir, pred_dir, m), rounds)
            t_ours, ours = _timed(
                lambda m=metric: soccernet_maps(labels, predictions, metrics=[m])[m]["mAP"], rounds
            )
            total_official += t_official
            total_ours += t_ours
            if abs(ours - map_official) > 1e-9:
                raise RuntimeError(f"{metric}: util.metrics {ours} != official {map_official}")
            agree = "same"
            print(
                f"  {metric:6s} official {t_official:7.3f} s   util.metrics {t_ours * 1000:7.1f} ms   "
                f"speed-up {t_official / t_ours:6.1f}x   mAP {ours:.4f} ({agree})"
            )
        t_all, _ = _timed(lambda: soccernet_maps(labels, predictions, metrics=METRICS), rounds)
        print(
            f"  {'+'.join(metrics)}: speed-up {total_official / total_ours:.1f}x; util.metrics computes all 7 "
            f"metrics (16 deltas) in {t_all * 1000:.0f} ms"
        )


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
