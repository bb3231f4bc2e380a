"""The evaluation report (eval_soccernet_ball.py --report; util/metrics/analysis.py, util/report.py): its matching
is the evaluator's, its APs are the printed ones, its intervals behave, and the page shows every figure."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import eval_soccernet_ball
from util.cli import run_main
from util.io import load_json, store_json
from util.metrics.analysis import (
    bootstrap_intervals,
    error_analysis,
    evaluator_spots,
    match_pairs,
    precision_recall,
)
from util.metrics.results import spotting_results
from util.metrics.spotting import SOCCERNET_FPS, _flatten, _match, _prepare, soccernet_maps
from util.report import FIGURES, fmt

CLASSES = ["PASS", "DRIVE", "SHOT"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def games(seed: int, count: int = 2, minutes: float = 4.0, skill: float = 0.7) -> tuple[dict, dict]:
    """Ground truth and predictions {game: events}: each true event is found with probability ``skill`` (within
    +-1 s, sometimes as another class or team), plus random false alarms; scores higher for the found ones."""
    rng = np.random.default_rng(seed)
    truth, preds = {}, {}
    for g in range(count):
        game = f"league/season/game {seed}-{g}"
        gt, pr = [], []
        for ms in sorted(rng.integers(0, int(minutes * 60_000), int(6 * minutes)).tolist()):
            label, team = (
                str(rng.choice(CLASSES[:2] if rng.random() < 0.8 else CLASSES)),
                str(rng.choice(["left", "right"])),
            )
            gt.append({"gameTime": f"1 - {ms // 60000:02d}:00", "position": str(ms), "label": label, "team": team,
                       "visibility": "visible"})  # fmt: skip
            if rng.random() < skill:
                found = label if rng.random() < 0.85 else str(rng.choice(CLASSES))
                side = team if rng.random() < 0.9 else ("left" if team == "right" else "right")
                pr.append({"half": 1, "position_ms": int(ms + rng.integers(-900, 900)), "label": found,
                           "team": side, "confidence": float(rng.uniform(0.4, 1.0))})  # fmt: skip
        for _ in range(int(4 * minutes)):
            pr.append({"half": 1, "position_ms": int(rng.integers(0, int(minutes * 60_000))),
                       "label": str(rng.choice(CLASSES)), "team": str(rng.choice(["left", "right"])),
                       "confidence": float(rng.uniform(0.0, 0.8))})  # fmt: skip
        truth[game], preds[game] = gt, pr
    return truth, preds


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("delta_s", [1, 5])
def test_the_pairs_are_the_evaluators_matches(seed, delta_s):
    truth, preds = games(seed)
    if seed == 3:  # equal confidences: the earliest frame wins, as officially
        for events in preds.values():
            for e in events:
                e["confidence"] = 0.5
    gt, pred = evaluator_spots(truth, preds, CLASSES)
    pairs = match_pairs(gt, pred, delta_s)
    index = {c: i for i, c in enumerate(CLASSES)}
    units = {g: i for i, g in enumerate(truth)}
    prep = _prepare(_flatten(truth, units, index, False, SOCCERNET_FPS, True),
                    _flatten(preds, units, index, False, SOCCERNET_FPS, False), len(CLASSES), SOCCERNET_FPS)  # fmt: skip
    official = _match(prep, int(np.floor(delta_s * SOCCERNET_FPS / 2)))
    assert len(pred) == len(official) and {i for i in pairs} == set(np.flatnonzero(official).tolist())
    for i, j in pairs.items():
        assert (
            gt[j].label == pred[i].label and abs(gt[j].frame - pred[i].frame) <= delta_s * SOCCERNET_FPS / 2
        )
    assert len(set(pairs.values())) == len(pairs)  # one prediction per event


def test_precision_recall_gives_the_printed_ap():
    truth, preds = games(7)
    pr = precision_recall(truth, preds, CLASSES, 1)
    printed = soccernet_maps(truth, preds, CLASSES, ("at1",))["at1"]["per_class"]
    assert pr["ap"] == pytest.approx(printed, abs=1e-12)
    for c in CLASSES:
        assert pr["precision"][c].shape == pr["recall"][c].shape == (200,)
        assert np.all(np.diff(pr["recall"][c]) <= 1e-12)  # recall falls as the threshold rises


def test_error_analysis_on_a_constructed_game():
    def t(s: float) -> str:
        return str(int(s * 1000))

    truth = {"g": [
        {"gameTime": "1 - 00:10", "position": t(10), "label": "PASS", "team": "left"},  # hit, 0.2 s late, team swapped
        {"gameTime": "1 - 00:20", "position": t(20), "label": "DRIVE", "team": "right"},  # seen as a SHOT
        {"gameTime": "1 - 00:30", "position": t(30), "label": "SHOT", "team": "left"},  # missed (score too low)
    ]}  # fmt: skip
    preds = {"g": [
        {"half": 1, "position_ms": 10_200, "label": "PASS", "team": "right", "confidence": 0.9},
        {"half": 1, "position_ms": 20_100, "label": "SHOT", "team": "right", "confidence": 0.8},
        {"half": 1, "position_ms": 30_000, "label": "SHOT", "team": "left", "confidence": 0.3},
        {"half": 1, "position_ms": 50_000, "label": "PASS", "team": "left", "confidence": 0.7},  # background
    ]}  # fmt: skip
    errors = error_analysis(truth, preds, CLASSES, threshold=0.5)
    c = errors["confusion"]
    assert c["PASS"]["PASS"] == 1 and c["SHOT"]["DRIVE"] == 1 and c["PASS"]["none"] == 1
    assert c["missed"]["DRIVE"] == 1 and c["missed"]["SHOT"] == 1 and c["missed"]["PASS"] == 0
    assert errors["team_confusion"]["left"]["right"] == 1 and errors["hits"] == 1
    # 0.2 s late, up to a frame (the official position -> frame rounding: 10200 ms is frame 254, not 255).
    assert errors["offsets"]["PASS"] == [pytest.approx(0.2, abs=0.05)]
    assert [f["confidence"] for f in errors["false_alarms"]] == [0.8, 0.7]
    assert errors["false_alarms"][0]["near"] == "DRIVE" and errors["false_alarms"][1]["near"] is None
    shot = next(m for m in errors["misses"] if m["label"] == "SHOT")
    assert shot["best_confidence"] == pytest.approx(0.3) and shot["time_s"] == 30.0


def test_bootstrap_interval_holds_the_estimate_and_narrows_with_more_games():
    widths = []
    for count in (2, 8):
        truth, preds = games(3, count=count, minutes=6)
        point = spotting_results(truth, preds, CLASSES)
        intervals = bootstrap_intervals(truth, preds, CLASSES, chunk_s=60, rounds=300)
        assert set(intervals) == {"at1", "team_at1"}
        for name, iv in intervals.items():
            assert iv["low"] <= point[name]["mAP"] <= iv["high"], (name, iv["low"], point[name]["mAP"])
            assert iv["chunks"] == 6 * count and iv["chunk_s"] == 60 and len(iv["values"]) == 300
        widths.append(intervals["at1"]["high"] - intervals["at1"]["low"])
    assert widths[1] < 0.75 * widths[0], widths  # 4x the games: about half the width
    # Seeded: the same call gives the same interval.
    truth, preds = games(3)
    a = bootstrap_intervals(truth, preds, CLASSES, rounds=50)
    assert a == bootstrap_intervals(truth, preds, CLASSES, rounds=50)
    # Games too short for 10 chunks of 60 s (2 x 4 min): shorter chunks, said so.
    assert a["at1"]["chunks"] >= 10 and a["at1"]["chunk_s"] < a["at1"]["chunk_s_asked"] == 60


def write_split(root: Path, seed: int = 5) -> tuple[Path, Path]:
    """A parsed-labels folder (test split of 2 games at 25 fps) and a prediction file for it."""
    truth, preds = games(seed)
    data = root / "data"
    data.mkdir(parents=True)
    (data / "class.txt").write_text("\n".join(CLASSES) + "\n")
    videos, predictions = [], []
    for game in truth:
        events = [{"frame": int(e["position"]) * 25 // 1000, "position_ms": int(e["position"]), "label": e["label"],
                   "team": e["team"], "visibility": "visible"} for e in truth[game]]  # fmt: skip
        videos.append({"video": game, "fps": 25.0, "num_frames": 6000, "events": events})
        predictions.append({"video": game, "fps": 25.0, "events": [
            {"frame": round(p["position_ms"] * 25 / 1000), "label": p["label"], "team": p["team"],
             "score": p["confidence"]} for p in preds[game]]})  # fmt: skip
    store_json(data / "test.json", videos)
    store_json(root / "pred-test.0.json", predictions)
    return data, root / "pred-test.0.json"


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    data, pred = write_split(root)
    argv = [str(data), str(root / "frames"), str(pred), "--results_json", str(root / "results.json")]
    argv += ["--report", str(root / "report"), "--bootstrap_rounds", "200"]
    assert run_main(eval_soccernet_ball.main, eval_soccernet_ball.get_args(argv)) == 0
    return root


def test_every_number_in_the_report_is_the_printed_metric(report):
    results = load_json(report / "results.json")
    written = load_json(report / "report" / "report.json")
    assert written["results"] == results
    assert written["pr_ap_at1"] == pytest.approx(results["at1"]["per_class"], abs=1e-12)
    page = (report / "report" / "report.html").read_text()
    for metric in ("at1", "at2", "at3", "at4", "at5"):
        assert f"<td>{fmt(results[metric]['mAP'])}</td>" in page
        for c in CLASSES:
            assert f"<td>{fmt(results[metric]['per_class'][c])}</td>" in page
    for name in ("at1", "team_at1"):
        iv = written["intervals"][name]
        assert f"<td>{fmt(results[name]['mAP'])}</td><td>[{fmt(iv['low'])}, {fmt(iv['high'])}]</td>" in page
        assert iv["low"] <= results[name]["mAP"] <= iv["high"]
    for name in FIGURES:
        assert (report / "report" / f"{name}.png").stat().st_size > 5000
        assert f'id="fig-{name}"' in page
    assert not re.search(r'src="(?!data:)', page)  # self-contained: nothing loaded from elsewhere


def test_report_flags_are_checked(capsys):
    for bad in (["--report_threshold", "2"], ["--bootstrap_rounds", "0"], ["--bootstrap_chunk_s", "0"]):
        with pytest.raises(SystemExit):
            eval_soccernet_ball.get_args(["d", "f", "m", *bad])
    assert "--bootstrap_chunk_s" in capsys.readouterr().err


@pytest.mark.browser
def test_the_report_shows_every_figure_in_chromium(report):
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip("Debian's chromium is not installed (make system-deps installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])  # fmt: skip
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto((report / "report" / "report.html").as_uri())
            sizes = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.id, e.naturalWidth, e.naturalHeight])"
            )
            page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        finally:
            browser.close()
    assert {s[0] for s in sizes} == {f"fig-{name}" for name in FIGURES}
    assert all(w > 300 and h > 150 for _, w, h in sizes), sizes


def test_thresholds_hold_their_target_precision():
    from util.metrics.analysis import precision_thresholds

    def at(s: float) -> str:
        return str(int(s * 1000))

    # PASS: 10 events; 6 found at high scores, then false alarms at 0.5-0.6 mixed with hits: precision 1.0 from
    # 0.7, falling below 0.8 under ~0.55. DRIVE: only a false alarm.
    truth = {"g": [{"gameTime": "1 - 00:00", "position": at(10 * i), "label": "PASS"} for i in range(1, 11)]}
    truth["g"].append({"gameTime": "1 - 00:00", "position": at(300), "label": "DRIVE"})
    preds = {"g": [{"half": 1, "position_ms": 10_000 * i, "label": "PASS", "confidence": 0.7 + 0.04 * i}
                   for i in range(1, 7)]}  # fmt: skip
    preds["g"] += [{"half": 1, "position_ms": 10_000 * i + 500_000, "label": "PASS", "confidence": 0.5 + 0.02 * i}
                   for i in range(1, 5)]  # fmt: skip
    preds["g"] += [
        {"half": 1, "position_ms": 70_000, "label": "PASS", "confidence": 0.58}
    ]  # a hit among them
    preds["g"] += [{"half": 1, "position_ms": 400_000, "label": "DRIVE", "confidence": 0.9}]
    found = precision_thresholds(truth, preds, CLASSES, target_precision=0.8)
    p = found["PASS"]
    assert p["rule"] == "precision" and p["precision"] >= 0.8
    # Every threshold from it up keeps the precision; the one just below does not (the lowest that holds).
    gt, pred = evaluator_spots(truth, preds, CLASSES)

    def precision_from(t: float) -> float:
        shown = [x for x in pred if x.label == "PASS" and x.value >= t]
        return len(match_pairs(gt, shown)) / len(shown)

    thresholds = np.linspace(0, 1, 200)
    k = int(np.searchsorted(thresholds, p["threshold"]))
    assert all(
        precision_from(t) >= 0.8
        for t in thresholds[k:]
        if any(x.value >= t for x in pred if x.label == "PASS")
    )
    assert precision_from(thresholds[k - 1]) < 0.8
    # DRIVE never right, SHOT without events: no evidence, no threshold (the display threshold applies).
    none = {"threshold": None, "precision": None, "recall": None, "f1": None, "rule": "none"}
    assert found["DRIVE"] == found["SHOT"] == none
    # A class that never reaches the target: its best F1 (PASS at 0.99 cannot be held).
    strict = precision_thresholds(truth, preds, CLASSES, target_precision=1.0)["PASS"]
    assert strict["rule"] == "precision" and strict["precision"] == 1.0
    harder = dict(
        preds, g=[*preds["g"], {"half": 1, "position_ms": 600_000, "label": "PASS", "confidence": 0.99}]
    )
    f1 = precision_thresholds(truth, harder, CLASSES, target_precision=1.0)["PASS"]
    assert f1["rule"] == "f1" and 0 < f1["f1"] <= 1 and f1["precision"] < 1.0
