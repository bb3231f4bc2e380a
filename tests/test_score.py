"""util.metrics: the SoccerNet mAP against the SoccerNet package's own evaluator, Team mAP against a loop-based
reference of its definition, hand-computed APs, and E2E-Spot's frame mAP."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from util.metrics.frame import frame_map
from util.metrics.results import labels_by_game, predictions_by_game
from util.metrics.spotting import METRIC_DELTAS_S, soccernet_map, soccernet_maps, team_maps
from util.soccernet import CLASSES, game_time
from util.submission import write_results_spotting

FPS = 25
VECTOR = 120 * 60 * FPS
TOL = 1e-6


# ---- random and adversarial games (Labels-ball.json annotations, results_spotting.json rows)


def _annotation(rng, half: int, ms: int, label: str, hidden: float = 0.15) -> dict:
    return {
        "gameTime": game_time(half, ms),
        "label": label,
        "position": str(ms),
        "team": "left" if rng.random() < 0.5 else "right",
        "visibility": "not shown" if rng.random() < hidden else "visible",
    }


def _prediction(rng, half: int, ms: int, label: str, confidence) -> dict:
    row = {"gameTime": game_time(half, ms), "label": label, "position": str(ms), "half": str(half)}
    return row | {"confidence": str(confidence), "team": "left" if rng.random() < 0.5 else "right"}


SMALL = CLASSES[:4]  # the official evaluator's time grows with classes x 200 thresholds x deltas


def make_games(seed: int, case: str = "random", games: int = 2, halves=(1,), minutes=2.0, classes=SMALL):
    """Labels and predictions per game; ``case`` adds one kind of adversarial input. The last class never has
    ground truth, and a few labels are outside ``classes``."""
    rng = np.random.default_rng(seed)
    length = int(minutes * 60_000)
    gt_classes = classes[:1] if case == "empty_classes" else classes[:-1]
    pred_classes = [*classes, "NOT A CLASS"]
    labels, predictions = {}, {}
    for g in range(games):
        game = f"league/2024-2025/game {g}"
        ann, rows = [], []
        for half in halves:
            n_gt = 60 if case == "dense" else 25
            span = 6_000 if case == "dense" else length  # dense: every event within a few seconds
            for ms in rng.integers(0, span, n_gt):
                ann.append(_annotation(rng, half, int(ms), str(rng.choice(gt_classes))))
            for _ in range(120):
                if ann and rng.random() < 0.6:
                    near = ann[rng.integers(len(ann))]
                    ms, label = int(near["position"]) + int(rng.integers(-2500, 2500)), near["label"]
                else:
                    ms, label = int(rng.integers(0, span)), str(rng.choice(pred_classes))
                confidence = rng.random()
                if case == "ties":
                    confidence = rng.choice([0.0, 0.25, 0.5, 1.0, np.linspace(0, 1, 200)[37]])
                rows.append(_prediction(rng, half, max(ms, 0), label, float(confidence)))
        labels[game], predictions[game] = ann, rows
    _adversarial(rng, case, labels, predictions)
    return labels, predictions


def _adversarial(rng, case: str, labels: dict, predictions: dict) -> None:
    game = next(iter(labels))
    ann, rows = labels[game], predictions[game]
    if case == "duplicates":
        # Same frame and class twice (the later row wins), positions at float-rounding edges, repeated labels.
        for ms in (2280, 2290, 2320, 40_000):
            ann.append(_annotation(rng, 1, ms, "PASS"))
            ann.append(_annotation(rng, 1, ms, "PASS", hidden=1.0))
            rows.append(_prediction(rng, 1, ms, "PASS", 0.9))
            rows.append(_prediction(rng, 1, ms + 10, "PASS", 0.3))
            rows.append(_prediction(rng, 1, ms, "PASS", 0.6))
    elif case == "long":
        # Past the evaluator's 120-minute vector: clipped to its last frame.
        for minute in (119.99, 125, 130, 131):
            ms = int(minute * 60_000)
            ann.append(_annotation(rng, 1, ms, "DRIVE"))
            rows.append(_prediction(rng, 1, ms + 300, "DRIVE", 0.7))
            rows.append(_prediction(rng, 1, ms, "PASS", 0.4))
    elif case == "odd_rows":
        # Labels outside the classes, negative and >1 confidences, a half with predictions but no labels.
        ann.append(_annotation(rng, 1, 5000, "NOT A CLASS"))
        rows.append(_prediction(rng, 1, 5000, "NOT A CLASS", 0.9))
        rows.append(_prediction(rng, 1, 7000, "PASS", -0.5))
        rows.append(_prediction(rng, 1, 9000, "DRIVE", 1.5))
        rows.append(_prediction(rng, 2, 9000, "DRIVE", 0.8))
        predictions[list(labels)[-1]] = []  # a game without predictions


def official(tmp: Path, labels: dict, predictions: dict, metric: str, classes=CLASSES) -> dict:
    """SoccerNet's evaluator on Labels-ball.json / results_spotting.json folders written here."""
    from SoccerNet.Evaluation.ActionSpotting import evaluate

    for game in labels:
        (tmp / "L" / game).mkdir(parents=True, exist_ok=True)
        (tmp / "P" / game).mkdir(parents=True, exist_ok=True)
        (tmp / "L" / game / "Labels-ball.json").write_text(json.dumps({"annotations": labels[game]}))
        rows = {"predictions": predictions.get(game, [])}
        (tmp / "P" / game / "results_spotting.json").write_text(json.dumps(rows))
    with contextlib.redirect_stderr(io.StringIO()):
        return evaluate(
            str(tmp / "L"),
            str(tmp / "P"),
            prediction_file="results_spotting.json",
            label_files="Labels-ball.json",
            version=2,
            framerate=FPS,
            metric=metric,
            dataset=None,  # the games are the label folder's
            EVENT_DICTIONARY={c: i for i, c in enumerate(classes)},
        )


def assert_same(ours: dict, theirs: dict, classes=CLASSES) -> None:
    assert ours["mAP"] == pytest.approx(theirs["a_mAP"], abs=TOL)
    assert ours["mAP_visible"] == pytest.approx(theirs["a_mAP_visible"], abs=TOL)
    assert ours["mAP_unshown"] == pytest.approx(theirs["a_mAP_unshown"], abs=TOL)
    for key, their_key in (
        ("per_class", "a_mAP_per_class"),
        ("per_class_visible", "a_mAP_per_class_visible"),
        ("per_class_unshown", "a_mAP_per_class_unshown"),
    ):
        np.testing.assert_allclose([ours[key][c] for c in classes], theirs[their_key], atol=TOL, rtol=0)


# ---- agreement with the SoccerNet package


@pytest.mark.parametrize(
    ("seed", "case", "halves", "metrics", "classes"),
    [
        (0, "random", (1,), ("at1", "tight"), CLASSES),
        (1, "random", (1, 2), ("at3", "loose"), SMALL),
        (2, "ties", (1,), ("at1", "tight"), SMALL),
        (3, "empty_classes", (1, 2), ("tight",), SMALL),
        (4, "duplicates", (1,), ("tight",), SMALL),
        (5, "long", (1,), ("tight",), SMALL),
        (6, "odd_rows", (1, 2), ("tight",), SMALL),
        (7, "dense", (1,), ("at1", "tight"), SMALL),
    ],
)
def test_same_numbers_as_the_official_evaluator(tmp_path, seed, case, halves, metrics, classes):
    labels, predictions = make_games(seed, case, halves=halves, classes=classes)
    ours = soccernet_maps(labels, predictions, classes, metrics)
    for metric in metrics:
        assert_same(ours[metric], official(tmp_path / metric, labels, predictions, metric, classes), classes)


def test_the_2023_two_classes_and_frame_inputs(tmp_path):
    classes = ["PASS", "DRIVE"]
    labels, predictions = make_games(11, halves=(1, 2), classes=classes)
    ours = soccernet_map(labels, predictions, classes, "at2")
    assert_same(ours, official(tmp_path, labels, predictions, "at2", classes), classes)
    # The same events given as 25 fps frames (the official frame of each position) give the same numbers.
    as_frames = {
        game: [
            {k: v for k, v in row.items() if k != "position"}
            | {"frame": int(FPS * (int(row["position"]) / 1000))}
            for row in rows
        ]
        for game, rows in predictions.items()
    }
    assert soccernet_map(labels, as_frames, classes, "at2") == ours


def test_toolkit_formats_score_like_the_submission_files(tmp_path):
    """predictions_by_game gives the rows write_results_spotting writes, so the official evaluator on the files
    agrees; labels_by_game of parsed 25 fps labels equals the Labels-ball.json they came from."""
    rng = np.random.default_rng(5)
    truth, preds = [], []
    for video, fps in (
        ("lg/s/one-video game", 25.0),
        ("lg/s/halves game/1", 12.5),
        ("lg/s/halves game/2", 30.0),
    ):
        frames = np.sort(rng.choice(int(60 * fps), 15, replace=False))
        events = [
            {"frame": int(f), "label": str(rng.choice(CLASSES[:4])), "visibility": "visible"} for f in frames
        ]
        truth.append({"video": video, "fps": 25.0, "events": events})
        guesses = [
            {"frame": int(f), "label": str(rng.choice(CLASSES[:4])), "score": float(rng.random())}
            for f in rng.integers(0, int(60 * fps), 80)
        ]
        guesses += [
            dict(guesses[0], score=0.1),
            dict(guesses[0], score=0.95),
        ]  # the same frame and class thrice
        preds.append({"video": video, "fps": fps, "events": guesses})
    write_results_spotting(preds, tmp_path / "P")
    labels = {}
    for game, rows in labels_by_game(truth).items():
        labels[game] = [
            {
                "gameTime": game_time(r["half"], r["frame"] * 40),
                "label": r["label"],
                "position": str(r["frame"] * 40 + 20),
            }
            for r in rows
        ]
    ours = soccernet_map(labels_by_game(truth), predictions_by_game(preds), SMALL, "tight")
    written = {
        g: json.loads((tmp_path / "P" / g / "results_spotting.json").read_text())["predictions"]
        for g in labels
    }
    assert_same(ours, official(tmp_path / "files", labels, written, "tight", SMALL), SMALL)


# ---- Team mAP against a loop-based reference of its definition


def _reference_team_map(labels: dict, predictions: dict, classes, deltas_s) -> tuple[float, list[float]]:
    """Team mAP as defined (issue 11): label vectors per (class, team) pair; one AP per pair with the package's
    average_mAP; each class's AP the count-weighted mean of its pairs (count = sum of the pair's label vector);
    the mean over classes. A class whose counts sum to 0 gets 0 (the official code would divide 0 by 0)."""
    from SoccerNet.Evaluation.ActionSpotting import average_mAP

    pairs = [(c, t) for c in classes for t in ("left", "right")]
    column = {p: i for i, p in enumerate(pairs)}
    targets, detections, closests = [], [], []
    for game, game_labels in labels.items():
        frames = [int(FPS * (int(a["position"]) / 1000)) for a in game_labels + predictions.get(game, [])]
        size = min(VECTOR, max(frames, default=0) + 100)  # shorter vectors: only the frames in use matter
        target = np.zeros((size, len(pairs)))
        detection = np.full((size, len(pairs)), -1.0)
        for a in game_labels:
            if (a["label"], a["team"]) in column and a["gameTime"][0] == "1":
                frame = min(int(FPS * (int(a["position"]) / 1000)), size - 1)
                target[frame, column[(a["label"], a["team"])]] = -1 if a["visibility"] == "not shown" else 1
        for p in predictions.get(game, []):
            if (p["label"], p["team"]) in column and p["half"] == "1":
                frame = min(int(FPS * (int(p["position"]) / 1000)), size - 1)
                detection[frame, column[(p["label"], p["team"])]] = float(p["confidence"])
        closest = np.full(target.shape, -1.0)
        for j in range(len(pairs)):
            events = np.flatnonzero(target[:, j])
            for k, frame in enumerate(events):
                start = 0 if k == 0 else (events[k - 1] + frame) // 2
                stop = size if k == len(events) - 1 else (frame + events[k + 1]) // 2
                closest[start:stop, j] = target[frame, j]
        targets.append(target)
        detections.append(detection)
        closests.append(closest)
    with contextlib.redirect_stderr(io.StringIO()):
        per_pair = average_mAP(targets, detections, closests, FPS, np.array(deltas_s))[1]
    counts = sum(t.sum(axis=0) for t in targets)
    per_class = []
    for i in range(len(classes)):
        left, right = 2 * i, 2 * i + 1
        total = counts[left] + counts[right]
        per_class.append(
            0.0 if total == 0 else (per_pair[left] * counts[left] + per_pair[right] * counts[right]) / total
        )
    return sum(per_class) / len(per_class), per_class


@pytest.mark.parametrize(
    ("seed", "case"), [(0, "random"), (1, "ties"), (2, "empty_classes"), (3, "dense"), (4, "duplicates")]
)
def test_team_map_matches_its_definition(seed, case):
    classes = CLASSES[:3]
    labels, predictions = make_games(seed, case, games=2, minutes=1.0, classes=classes)
    game = next(iter(labels))
    labels[game] += [
        _annotation(np.random.default_rng(0), 1, 30_000, classes[-1], hidden=1.0)
    ]  # a count of -1
    ours = team_maps(labels, predictions, classes, ["team_at1", "team_tight"])
    for metric in ("team_at1", "team_tight"):
        expected, per_class = _reference_team_map(labels, predictions, classes, METRIC_DELTAS_S[metric[5:]])
        assert ours[metric]["mAP"] == pytest.approx(expected, abs=TOL)
        np.testing.assert_allclose(
            [ours[metric]["per_class"][c] for c in classes], per_class, atol=TOL, rtol=0
        )


def test_team_ap_weights_left_and_right_by_their_counts():
    ann = [{"frame": f, "label": "PASS", "team": "left"} for f in (100, 400, 700)]
    ann.append({"frame": 1000, "label": "PASS", "team": "right"})
    preds = [{"frame": 100, "label": "PASS", "team": "left", "score": 0.9}]  # left AP: recall 1/3
    preds.append({"frame": 1000, "label": "PASS", "team": "right", "score": 0.8})  # right AP: 1
    result = team_maps({"g": ann}, {"g": preds}, ["PASS"], ["team_at1"])["team_at1"]
    left_ap = 4 / 11  # precision 1 at recall 1/3: levels 0, 0.1, 0.2, 0.3
    assert result["per_class"]["PASS"] == pytest.approx((3 * left_ap + 1 * 1.0) / 4)
    # A prediction with the wrong team does not count for Team mAP but does for mAP.
    wrong = [dict(p, team="right" if p["team"] == "left" else "left") for p in preds]
    assert team_maps({"g": ann}, {"g": wrong}, ["PASS"], ["team_at1"])["team_at1"]["mAP"] == 0.0
    assert soccernet_map({"g": ann}, {"g": wrong}, ["PASS"])["mAP"] > 0.5


# ---- hand-computed cases


def _one(frame: int, label: str = "PASS", score: float | None = None, **extra) -> dict:
    event = {"frame": frame, "label": label} | extra
    return event if score is None else event | {"score": score}


def test_a_perfect_prediction_scores_one_and_classes_without_truth_count_as_zero():
    gt, pred = {"g": [_one(500)]}, {"g": [_one(500, score=0.9)]}
    assert soccernet_map(gt, pred, ["PASS"])["mAP"] == 1.0
    assert soccernet_map(gt, pred, CLASSES)["mAP"] == pytest.approx(1 / 12)
    assert soccernet_map(gt, {"g": []}, ["PASS"])["mAP"] == 0.0


def test_at1_tolerance_is_half_a_second_each_side():
    gt = {"g": [_one(1000)]}
    assert soccernet_map(gt, {"g": [_one(1012, score=0.5)]}, ["PASS"], "at1")["mAP"] == 1.0
    assert soccernet_map(gt, {"g": [_one(988, score=0.5)]}, ["PASS"], "at1")["mAP"] == 1.0
    assert soccernet_map(gt, {"g": [_one(1013, score=0.5)]}, ["PASS"], "at1")["mAP"] == 0.0
    assert soccernet_map(gt, {"g": [_one(1013, score=0.5)]}, ["PASS"], "at2")["mAP"] == 1.0


def test_positions_use_the_official_float_rounding():
    # int(25 * (2280 / 1000)) is 56, not 57: a prediction 12 frames after 57 misses it, after 56 is too far.
    gt = {"g": [{"position": "2280", "label": "PASS", "half": 1}]}
    assert soccernet_map(gt, {"g": [_one(68, score=0.5)]}, ["PASS"])["mAP"] == 1.0
    assert soccernet_map(gt, {"g": [_one(69, score=0.5)]}, ["PASS"])["mAP"] == 0.0


def test_eleven_point_interpolated_ap():
    gt = {"g": [_one(1000), _one(3000)]}
    pred = {"g": [_one(1000, score=0.8), _one(2000, score=0.9)]}  # a hit below a false alarm
    # Recall 1/2 at precision 1/2 (thresholds <= 0.8), else recall 0: levels 0 ... 0.5 give 1/2.
    assert soccernet_map(gt, pred, ["PASS"])["mAP"] == pytest.approx(6 * 0.5 / 11)


def test_greedy_matching_gives_each_event_the_best_free_prediction():
    gt = {"g": [_one(100), _one(110)]}
    pred = {"g": [_one(105, score=0.9), _one(95, score=0.5)]}
    # 100 takes 105 (the best); 110 cannot take 95 (15 frames away): one hit at the top, recall 1/2.
    assert soccernet_map(gt, pred, ["PASS"])["mAP"] == pytest.approx(6 / 11)


def test_later_prediction_at_the_same_frame_replaces_the_earlier():
    gt = {"g": [_one(1000), _one(5000)]}
    high_then_low = {"g": [_one(1000, score=0.9), _one(3000, score=0.5), _one(1000, score=0.1)]}
    low_then_high = {"g": [_one(1000, score=0.1), _one(3000, score=0.5), _one(1000, score=0.9)]}
    assert soccernet_map(gt, low_then_high, ["PASS"])["mAP"] == pytest.approx(6 / 11)
    assert soccernet_map(gt, high_then_low, ["PASS"])["mAP"] == pytest.approx(6 * 0.5 / 11)


def test_tight_integrates_with_the_trapezoidal_rule():
    gt, pred = {"g": [_one(1000)]}, {"g": [_one(1030, score=0.5)]}  # 30 frames: a hit from delta = 3 s
    per_delta = [soccernet_map(gt, pred, ["PASS"], f"at{d}")["mAP"] for d in range(1, 6)]
    assert per_delta == [0.0, 0.0, 1.0, 1.0, 1.0]
    assert soccernet_map(gt, pred, ["PASS"], "tight")["mAP"] == pytest.approx((0 + 0.5 + 1 + 1) / 4)


def test_visible_and_not_shown_breakdown():
    gt = {"g": [_one(1000, visibility="visible"), _one(5000, visibility="not shown")]}
    pred = {"g": [_one(1000, score=0.9), _one(5000, score=0.8)]}
    result = soccernet_map(gt, pred, ["PASS"])
    assert result["mAP"] == result["mAP_visible"] == result["mAP_unshown"] == 1.0
    assert soccernet_map(gt, pred, ["PASS"], "tight")["mAP_unshown"] == pytest.approx(
        17 / 13
    )  # official scaling


def test_bad_events_raise_data_error():
    from util.io import DataError

    with pytest.raises(DataError, match="game 'g', event 0"):
        soccernet_map({"g": [{"label": "PASS"}]}, {"g": []}, ["PASS"])
    with pytest.raises(ValueError, match="unknown metric"):
        soccernet_maps({"g": []}, {"g": []}, metrics=["at9"])


# ---- E2E-Spot frame mAP


def test_frame_map_tolerances_by_hand():
    truth = [{"video": "v", "events": [_one(10), _one(50)]}]
    preds = [{"video": "v", "events": [_one(10, score=0.9), _one(52, score=0.8), _one(30, score=0.7)]}]
    result = frame_map(truth, preds, ["PASS", "DRIVE"], tolerances=(0, 2))
    assert result["by_tolerance"][0]["per_class"]["PASS"] == pytest.approx(0.5)  # 1 hit of 2 at rank 1
    assert result["by_tolerance"][2]["per_class"]["PASS"] == pytest.approx(1.0)
    assert result["by_tolerance"][0]["per_class"]["DRIVE"] is None  # no ground truth: left out of the mean
    assert result["mAP"] == pytest.approx(0.75)


def test_frame_map_matches_the_nearest_free_event_and_ranks_across_videos():
    truth = [{"video": "a", "events": [_one(10), _one(12)]}, {"video": "b", "events": [_one(100)]}]
    preds = [
        {"video": "a", "events": [_one(11, score=0.9), _one(11, score=0.8)]},  # each takes one of 10 and 12
        {"video": "b", "events": [_one(300, score=0.95), _one(100, score=0.5)]},  # a false alarm ranked first
    ]
    ap = frame_map(truth, preds, ["PASS"], tolerances=(1,))["by_tolerance"][1]["per_class"]["PASS"]
    # Ranks: FP (0.95), TP (0.9), TP (0.8), TP (0.5): precisions 1/2, 2/3, 3/4 -> envelope 3/4 each.
    assert ap == pytest.approx(3 * 0.75 / 3)
