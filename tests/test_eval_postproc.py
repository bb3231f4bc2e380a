"""util.postprocess (scores -> events, NMS, ensembles) and eval_soccernet_ball.py end to end on a tiny dataset."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from util.io import DataError, store_json
from util.postprocess import (
    PostProcess,
    average_scores,
    find_peaks,
    hard_nms,
    nms_events,
    postprocess_grid,
    scores_to_events,
    smooth_scores,
    soft_nms,
    window_frames,
)
from util.soccernet import frame_to_position_ms, game_time
from util.submission import write_labels

CLASSES4 = ["PASS", "DRIVE", "HEADER", "HIGH PASS"]


# ---- peaks and NMS


def test_find_peaks_keeps_local_maxima_above_the_threshold():
    series = np.array([0, 0.2, 0.5, 0.2, 0, 0.3, 0.3, 0.3, 0.1, 0.6])
    assert find_peaks(series, 0.25).tolist() == [2, 6, 9]  # a flat top gives its middle frame
    assert find_peaks(series, 0.4).tolist() == [2, 9]
    assert find_peaks(np.array([0.1, 0.2, 0.2, 0.9]), 0.0).tolist() == [3]  # a step up is not a peak


def test_hard_nms_removes_lower_candidates_within_the_window():
    frames, scores = np.array([10, 15, 30, 60]), np.array([0.5, 0.9, 0.8, 0.4])
    assert frames[hard_nms(frames, scores, 15)].tolist() == [15, 60]  # 30 is 15 frames away: removed
    assert frames[hard_nms(frames, scores, 14)].tolist() == [15, 30, 60]
    assert frames[hard_nms(frames, scores, 0)].tolist() == [10, 15, 30, 60]
    assert hard_nms(np.array([0, 10]), np.array([0.5, 0.5]), 20).tolist() == [0]  # a tie keeps the earlier


def test_soft_nms_decays_neighbours_quadratically():
    frames, scores = np.array([100, 105, 150]), np.array([0.9, 0.8, 0.5])
    keep, decayed = soft_nms(frames, scores, 10)
    assert frames[keep].tolist() == [100, 105, 150]
    np.testing.assert_allclose(decayed, [0.9, 0.8 * (5 / 10) ** 2, 0.5])
    keep, _ = soft_nms(frames, scores, 10, threshold=0.3)
    assert frames[keep].tolist() == [100, 150]


def _bumps(length: int, peaks: dict[int, list[tuple[int, float]]], num_classes: int = 2) -> np.ndarray:
    scores = np.zeros((length, num_classes + 1))
    scores[:, 0] = 0.95  # a large background column is never an event
    t = np.arange(length)
    for c, items in peaks.items():
        for frame, height in items:
            scores[:, c + 1] = np.maximum(scores[:, c + 1], height * np.exp(-0.5 * ((t - frame) / 2.0) ** 2))
    return scores


def test_scores_to_events_peaks_nms_and_threshold():
    scores = _bumps(200, {0: [(50, 0.9), (60, 0.4), (120, 0.005)], 1: [(150, 0.7)]})
    events = scores_to_events(scores, ["PASS", "DRIVE"], 25.0, threshold=0.01, nms_window=25)
    assert [(e["frame"], e["label"]) for e in events] == [(50, "PASS"), (150, "DRIVE")]
    assert events[0]["score"] == pytest.approx(0.9)
    no_nms = scores_to_events(scores, ["PASS", "DRIVE"], 25.0, threshold=0.01, nms_window=0)
    assert [e["frame"] for e in no_nms] == [50, 60, 150]
    every_frame = scores_to_events(scores, ["PASS", "DRIVE"], threshold=0.3, nms_window=0, peaks=False)
    assert len(every_frame) > 10 and all(e["score"] >= 0.3 for e in every_frame)
    with pytest.raises(ValueError, match="expected"):
        scores_to_events(scores, ["PASS"], 25.0)


def test_smoothing_keeps_the_peak_and_flattens_noise():
    t = np.arange(101, dtype=float)
    bump = np.exp(-0.5 * ((t - 50) / 3) ** 2)[:, None]
    smoothed = smooth_scores(bump, 3.0)
    assert int(smoothed.argmax()) == 50 and smoothed.max() < bump.max()
    np.testing.assert_allclose(smooth_scores(np.full((40, 2), 0.3), 2.0), 0.3)
    noisy = _bumps(100, {0: [(50, 0.8)]}, 1)
    noisy[51, 1] += 0.3  # a spike beside the peak: smoothing merges them into one event
    events = scores_to_events(noisy, ["PASS"], 25.0, 0.05, nms_window=0, sigma=3.0)
    assert [e["frame"] for e in events] == [50] or [e["frame"] for e in events] == [51]


def test_team_of_each_event():
    scores = _bumps(100, {0: [(20, 0.9), (70, 0.8)]}, 1)
    p_right = np.full(100, 0.5)
    p_right[15:25], p_right[65:75] = 0.2, 0.9
    events = scores_to_events(scores, ["PASS"], 25.0, team_scores=p_right)
    assert [(e["team"], e["team_score"]) for e in events] == [("left", pytest.approx(0.8)), ("right", 0.9)]


def test_nms_on_event_lists_is_per_label_and_keeps_fields():
    events = [
        {"frame": 10, "label": "PASS", "score": 0.9, "team": "left"},
        {"frame": 12, "label": "PASS", "score": 0.5, "team": "right"},
        {"frame": 12, "label": "DRIVE", "score": 0.4},
    ]
    kept = nms_events(events, 5)
    assert kept == [events[0], events[2]]
    assert nms_events(events, 0) == events


def test_average_scores():
    a = {"v": np.array([[0.2, 0.8]]), "v::team": np.array([0.1])}
    assert average_scores([a, a])["v"].tolist() == [[0.2, 0.8]]
    b = {"v": np.array([[0.6, 0.4]]), "v::team": np.array([0.5])}
    np.testing.assert_allclose(average_scores([a, b])["v"], [[0.4, 0.6]])
    with pytest.raises(ValueError, match="different videos"):
        average_scores([a, {"w": a["v"]}])


# ---- eval_soccernet_ball.py


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    """A parsed dataset (one-video game + a game in halves), its Labels-ball.json, and a model directory with
    pred-test.3.json and pred-test.3.score.npz made from the same per-frame scores."""
    root = tmp_path_factory.mktemp("toy")
    rng = np.random.default_rng(0)
    dataset = root / "data" / "toy"
    dataset.mkdir(parents=True)
    (dataset / "class.txt").write_text("".join(c + "\n" for c in CLASSES4))
    videos, scores = [], {}
    for video in ("lg/2024/game a", "lg/2024/game b/1", "lg/2024/game b/2"):
        frames = np.sort(rng.choice(np.arange(20, 1480), 12, replace=False))
        events = [
            {
                "frame": int(f),
                "label": str(rng.choice(CLASSES4[:3])),
                "team": str(rng.choice(["left", "right"])),
            }
            | {"visibility": "not shown" if rng.random() < 0.2 else "visible"}
            for f in frames
        ]
        videos.append(
            {"video": video, "num_frames": 1500, "fps": 25.0, "width": 398, "height": 224, "events": events}
        )
        array = rng.random((1500, 5)) * 0.03
        p_right = np.full(1500, 0.5)
        for e in events:
            centre = e["frame"] + int(rng.integers(-8, 9))
            t = np.arange(1500)
            array[:, CLASSES4.index(e["label"]) + 1] += rng.uniform(0.3, 0.9) * np.exp(
                -0.5 * ((t - centre) / 3) ** 2
            )
            p_right[max(0, centre - 4) : centre + 5] = 0.85 if e["team"] == "right" else 0.15
        scores[video], scores[video + "::team"] = array, p_right
    store_json(dataset / "test.json", videos)
    write_labels(videos, root / "labels")
    model = root / "model"
    model.mkdir()
    store_json(model / "config.json", {"classes": CLASSES4})
    preds = [
        {"video": v["video"], "fps": 25.0}
        | {
            "events": scores_to_events(
                scores[v["video"]],
                CLASSES4,
                25.0,
                team_scores=scores[v["video"] + "::team"],
                **PostProcess().event_options(25.0),  # what a model directory without selection.json gets
            )
        }
        for v in videos
    ]
    store_json(model / "pred-test.3.json", preds)
    np.savez(model / "pred-test.3.score.npz", **scores)
    return root


def run_eval(*argv: str) -> tuple[int, str, str]:
    from eval_soccernet_ball import get_args, main
    from util.cli import run_main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_main(main, get_args([str(a) for a in argv]))
    return code, out.getvalue(), err.getvalue()


# ---- post-processing in seconds


def test_windows_in_seconds_mean_the_same_at_any_frame_rate():
    post = PostProcess(nms_window_s=0.5, sigma_s=0.2)
    assert post.event_options(10.0)["nms_window"] == 5 and post.event_options(25.0)["nms_window"] == 13
    assert post.event_options(50.0) == {"threshold": 0.01, "nms_window": 25, "soft": False, "sigma": 10.0}
    assert window_frames(0.0, 25.0) == 0 and window_frames(0.01, 25.0) == 1  # a window is never rounded away
    # --nms_window is frames at the model's rate; --nms_window_s seconds; both at once is refused.
    assert post.with_overrides(nms_window=5, fps=10.0).nms_window_s == 0.5
    assert post.with_overrides(nms_window_s=2.0, soft=True) == PostProcess(2.0, True, 0.2)
    with pytest.raises(ValueError, match="not both"):
        post.with_overrides(nms_window=5, nms_window_s=1.0, fps=10.0)
    assert PostProcess.from_dict(post.to_dict()) == post
    assert "hard NMS +-0.5 s (5 frames at 10 fps)" in post.describe(10.0)
    with pytest.raises(ValueError, match="nms_window_s"):
        PostProcess(nms_window_s=-1.0)


def test_the_grid_prefers_the_simplest_of_equally_good_entries():
    from model.select import best_entry

    grid = postprocess_grid()
    assert len(grid) == len(set(grid)) == 16 and grid[0] == PostProcess(0.25, False, 0.0)
    value = {0.25: 0.3, 0.5: 0.6, 1.0: 0.6, 2.0: 0.1}
    rows = [{"postprocess": p, "mAP": value[p.nms_window_s] - 0.5 * p.soft - p.sigma_s} for p in grid]
    assert best_entry(rows, "mAP")["postprocess"] == PostProcess(
        0.5
    )  # 0.5 s and 1 s tie: no smoothing, hard, narrower


def test_every_input_gives_the_same_numbers(toy, tmp_path):
    """Prediction file, model directory (per-frame scores), an ensemble of two identical models, and ground truth
    from Labels-ball.json (-l) all agree; the team metrics are there since the predictions carry teams."""
    dataset, model = toy / "data" / "toy", toy / "model"
    runs = {
        "file": [dataset, "frames", model / "pred-test.3.json"],
        "model_dir": [dataset, "frames", model],
        "ensemble": [dataset, "frames", model, model],
        "label_dir": [dataset, "frames", model, "-l", toy / "labels"],
    }
    results = {}
    for name, argv in runs.items():
        code, out, _ = run_eval(*argv, "--results_json", tmp_path / f"{name}.json")
        assert code == 0
        results[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert "PASS" in out and "Team mAP" in out and "tight" in out
    first = results["file"]
    assert set(first) == {"at1", "at2", "at3", "at4", "at5", "tight", "loose"} | {
        f"team_{m}" for m in ("at1", "at2", "at3", "at4", "at5", "tight")
    }
    assert 0.2 < first["at1"]["mAP"] <= 1 and set(first["at1"]["per_class"]) == set(CLASSES4)
    for name, result in results.items():
        assert result == first, name


def _official_at1(label_dir: Path, prediction_dir: Path, metric: str = "at1") -> dict:
    from SoccerNet.Evaluation.ActionSpotting import evaluate

    with contextlib.redirect_stderr(io.StringIO()):
        return evaluate(
            str(label_dir),
            str(prediction_dir),
            prediction_file="results_spotting.json",
            label_files="Labels-ball.json",
            version=2,
            framerate=25,
            metric=metric,
            dataset=None,
            EVENT_DICTIONARY={c: i for i, c in enumerate(CLASSES4)},
        )


def test_submission_files_score_the_same_with_the_official_evaluator(toy, tmp_path):
    code, out, _ = run_eval(
        toy / "data" / "toy",
        "frames",
        toy / "model",
        "--eval_dir",
        tmp_path / "sub",
        "--results_json",
        tmp_path / "r.json",
    )
    assert code == 0
    with zipfile.ZipFile(tmp_path / "sub" / "results_spotting.zip") as archive:
        assert sorted(archive.namelist()) == [
            "lg/2024/game a/results_spotting.json",
            "lg/2024/game b/results_spotting.json",
        ]
    ours = json.loads((tmp_path / "r.json").read_text())
    theirs = _official_at1(toy / "labels", tmp_path / "sub")
    assert ours["at1"]["mAP"] == pytest.approx(theirs["a_mAP"], abs=1e-6)


@pytest.mark.parametrize(
    ("fps", "flags"),
    [(25.0, ()), (50.0, ()), (12.5, ()), (25.0, ("--nms_window", "0")), (12.5, ("--nms_window_s", "0"))],
)
def test_a_prediction_file_with_duplicates_ties_and_zeros_scores_as_the_official_evaluator_reads_it(
    toy, tmp_path, fps, flags
):
    """Rows of one frame and class several times (the later one in the file wins, officially), equal scores and
    zero scores, in both layouts: eval on the prediction file, eval's own submission files and the official
    evaluator on the file's rows in file order give the same mAP@1 and per-class APs."""
    rng = np.random.default_rng(int(fps))
    videos, games = [], {}
    for video in ("lg/2024/game a", "lg/2024/game b/1", "lg/2024/game b/2"):
        frames = rng.integers(0, int(60 * fps), 250)
        events = [
            {"frame": int(f), "label": str(rng.choice(CLASSES4)), "score": float(rng.choice([0.0, 0.5, rng.random()]))}
            for f in frames
        ]  # fmt: skip
        events += [
            dict(events[i], score=float(rng.choice([0.0, 0.5, rng.random()]))) for i in range(0, 250, 2)
        ]
        events = [events[i] for i in rng.permutation(len(events))]  # duplicates before and after each other
        videos.append({"video": video, "fps": fps, "events": events})
        game, _, half = video.rpartition("/") if video.endswith(("/1", "/2")) else (video, "", "1")
        rows = games.setdefault(game, [])
        for e in events:  # the file's order, untouched
            position = frame_to_position_ms(e["frame"], fps)
            rows.append({"gameTime": game_time(int(half), position), "label": e["label"], "position": str(position),
                         "half": half, "confidence": str(e["score"])})  # fmt: skip
    pred_file = tmp_path / "pred-test.0.json"
    store_json(pred_file, videos)
    for game, rows in games.items():
        store_json(tmp_path / "official" / game / "results_spotting.json", {"predictions": rows})
    argv = [toy / "data" / "toy", "frames", pred_file, "--eval_dir", tmp_path / "sub", *flags]
    code, _, err = run_eval(*argv, "--results_json", tmp_path / "r.json")  # a zero window: no post-processing
    assert code == 0, err
    results = json.loads((tmp_path / "r.json").read_text())
    # Every delta once (with a zero window), mAP@1 on the others: the official evaluator takes ~1 s a metric.
    metrics = (
        ("at1", "at2", "at3", "at4", "at5", "tight", "loose") if flags[:1] == ("--nms_window",) else ("at1",)
    )
    for metric in metrics:
        ours = results[metric]
        for folder in ("official", "sub"):
            theirs = _official_at1(toy / "labels", tmp_path / folder, metric)
            assert ours["mAP"] == pytest.approx(theirs["a_mAP"], abs=1e-9), (folder, metric)
            np.testing.assert_allclose(
                [ours["per_class"][c] for c in CLASSES4], theirs["a_mAP_per_class"], atol=1e-9
            )


def test_nms_window_applies_to_prediction_files(toy, tmp_path):
    pred_file = toy / "model" / "pred-test.3.json"
    maps = []
    for window in ("0", "25", "200"):
        code, _, _ = run_eval(
            toy / "data" / "toy",
            "frames",
            pred_file,
            "--nms_window",
            window,
            "--results_json",
            tmp_path / "r.json",
        )
        assert code == 0
        maps.append(json.loads((tmp_path / "r.json").read_text())["at1"]["mAP"])
    assert maps[0] == maps[1]  # the file's events already went through 25-frame NMS
    assert maps[2] != maps[1]  # a 16 s window removes real events


def test_clear_errors(toy, tmp_path):
    empty = tmp_path / "empty_model"
    empty.mkdir()
    code, _, err = run_eval(toy / "data" / "toy", "frames", empty)
    assert code == 2 and "empty_model" in err and "no pred-test" in err
    code, _, err = run_eval("no_such_dataset", "frames", toy / "model")
    assert code == 2 and "no_such_dataset" in err
    code, _, err = run_eval(toy / "data" / "toy", "frames", toy / "model", "-l", tmp_path)
    assert code == 2 and "Labels-ball.json" in err


def test_default_epoch_is_the_selected_one(tmp_path):
    from model.usage import load_selection, save_selection

    for epoch in (3, 5):
        (tmp_path / f"checkpoint_{epoch:03d}.pt").write_bytes(b"")
    assert load_selection(tmp_path)["epoch"] == 5  # nothing recorded: the latest checkpoint
    history = [{"epoch": e, "val": 1.0, "val_mAP": m} for e, m in ((2, 0.5), (3, 0.7), (5, 0.6), (6, 0.9))]
    store_json(tmp_path / "loss.json", history)
    # An older model directory: the best val mAP of loss.json among the epochs that have a checkpoint.
    assert load_selection(tmp_path)["epoch"] == 3
    post = PostProcess(nms_window_s=0.5, soft=True)
    save_selection(tmp_path, {"epoch": 5, "criterion": "map", "postprocess": post.to_dict()})
    selection = load_selection(tmp_path)
    assert (selection["epoch"], selection["postprocess"], selection["recorded"]) == (5, post, True)
    # A recorded epoch whose checkpoint was deleted is not silently replaced by other weights.
    from model.usage import selected_epoch

    save_selection(tmp_path, {"epoch": 9, "postprocess": post.to_dict()})
    assert load_selection(tmp_path)["postprocess"] == post
    with pytest.raises(DataError, match="selects epoch 9, whose checkpoint is missing"):
        selected_epoch(tmp_path)
    (tmp_path / "selection.json").write_text("[1, 2]")
    with pytest.raises(DataError, match="selection.json"):
        load_selection(tmp_path)


def test_the_challenge_split_gives_a_checked_submission_and_no_metric(toy, tmp_path):
    """-s challenge (labels withheld): SoccerNet's files and the zip, checked against the format; no zeros printed."""
    dataset = tmp_path / "data"
    shutil.copytree(toy / "data" / "toy", dataset)
    games = ["lg/2025/game c", "lg/2025/game d/1", "lg/2025/game d/2"]
    store_json(dataset / "challenge.json", [
        {"video": v, "num_frames": 1500, "fps": 25.0, "width": 398, "height": 224, "events": []} for v in games
    ])  # fmt: skip
    rng = np.random.default_rng(3)
    preds = [
        {"video": v, "fps": 25.0, "events": [
            {"frame": int(f), "label": CLASSES4[int(f) % 4], "score": float(rng.random()), "team": "left"}
            for f in rng.integers(0, 1500, 30)
        ]} for v in games
    ]  # fmt: skip
    store_json(tmp_path / "pred-challenge.0.json", preds)
    argv = [dataset, "frames", tmp_path / "pred-challenge.0.json", "-s", "challenge"]
    code, _, err = run_eval(*argv)
    assert code == 2 and "labels are withheld" in err and "--eval_dir" in err
    code, out, err = run_eval(
        *argv, "--eval_dir", tmp_path / "sub", "-l", toy / "labels"
    )  # -l: no challenge game
    assert code == 0, err
    assert "mAP" not in out and "0.00" not in out
    assert f"Team Ball Action Spotting challenge: {tmp_path / 'sub' / 'results_spotting.zip'}" in out
    assert "2 game(s), 90 predictions" in out
    with zipfile.ZipFile(tmp_path / "sub" / "results_spotting.zip") as archive:
        assert sorted(archive.namelist()) == ["lg/2025/game c/results_spotting.json",
                                              "lg/2025/game d/results_spotting.json"]  # fmt: skip


def test_the_submission_check_names_what_the_server_would_refuse(tmp_path):
    from util.submission import check_submission

    def write(rows_by_game: dict) -> Path:
        path = tmp_path / "s.zip"
        with zipfile.ZipFile(path, "w") as archive:
            for game, rows in rows_by_game.items():
                archive.writestr(f"{game}/results_spotting.json", json.dumps({"predictions": rows}))
        return path

    good = {"gameTime": "2 - 00:01", "label": "PASS", "position": "1000", "half": "2", "confidence": "0.5"}
    assert check_submission(write({"g/a": [good], "g/b": []}), ["g/a", "g/b"], CLASSES4, team=False) == {
        "games": 2,
        "rows": 1,
    }
    for rows, games, team, expected in (
        ({"g/a": [good]}, ["g/a", "g/b"], False, "g/b/results_spotting.json: missing"),
        ({"g/a": [good]}, ["g/a"], True, "lacks team"),
        ({"g/a": [dict(good, half="1")]}, ["g/a"], False, "disagree"),
        ({"g/a": [dict(good, label="CORNER")]}, ["g/a"], False, "not one of the classes"),
        ({"g/a": [dict(good, position="1.5")]}, ["g/a"], False, "not milliseconds"),
        ({"g/a": [good], "g/x": []}, ["g/a"], False, "not a game of the split"),
    ):
        with pytest.raises(DataError, match=expected):
            check_submission(write(rows), games, CLASSES4, team)


@pytest.mark.parametrize("flags", [(), ("--nms_window", "0")])
def test_team_map_of_a_prediction_file_matches_its_definition(tmp_path, flags):
    """Team mAP from the CLI, on a prediction file with teams, duplicates, ties and zeros (one-video games), equals
    the loop-based reference of its definition over the package's own average_mAP (tests/test_score.py)."""
    from tests.test_score import _reference_team_map
    from util.metrics.spotting import METRIC_DELTAS_S

    rng = np.random.default_rng(11)
    dataset, videos, labels, rows = tmp_path / "data", [], {}, {}
    dataset.mkdir()
    (dataset / "class.txt").write_text("".join(c + "\n" for c in CLASSES4))
    preds = []
    for game in ("lg/2025/game a", "lg/2025/game b"):
        truth = [
            {"frame": int(f), "label": str(rng.choice(CLASSES4[:3])), "team": str(rng.choice(["left", "right"])),
             "visibility": "visible"} for f in np.sort(rng.choice(np.arange(10, 1490), 20, replace=False))
        ]  # fmt: skip
        videos.append(
            {"video": game, "num_frames": 1500, "fps": 25.0, "width": 398, "height": 224, "events": truth}
        )
        events = [
            {"frame": int(f), "label": str(rng.choice(CLASSES4)), "score": float(rng.choice([0.0, 0.5, rng.random()])),
             "team": str(rng.choice(["left", "right"]))} for f in rng.integers(0, 1500, 150)
        ]  # fmt: skip
        events += [dict(e, score=0.25) for e in events[::3]]  # duplicates of frame and class
        preds.append({"video": game, "fps": 25.0, "events": events})
        rows[game] = [
            {"gameTime": game_time(1, frame_to_position_ms(e["frame"], 25.0)), "label": e["label"], "half": "1",
             "position": str(frame_to_position_ms(e["frame"], 25.0)), "confidence": str(e["score"]), "team": e["team"]}
            for e in events
        ]  # fmt: skip
    store_json(dataset / "test.json", videos)
    write_labels(videos, tmp_path / "labels")
    for game in rows:
        labels[game] = json.loads((tmp_path / "labels" / game / "Labels-ball.json").read_text())[
            "annotations"
        ]
    store_json(tmp_path / "pred-test.0.json", preds)
    argv = [dataset, "frames", tmp_path / "pred-test.0.json", *flags, "--results_json", tmp_path / "r.json"]
    code, _, err = run_eval(*argv)
    assert code == 0, err
    results = json.loads((tmp_path / "r.json").read_text())
    for metric in ("team_at1", "team_tight"):
        expected, per_class = _reference_team_map(labels, rows, CLASSES4, METRIC_DELTAS_S[metric[5:]])
        assert results[metric]["mAP"] == pytest.approx(expected, abs=1e-6)
        np.testing.assert_allclose([results[metric]["per_class"][c] for c in CLASSES4], per_class, atol=1e-6)
