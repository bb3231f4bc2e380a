"""One truth between the steps: a model directory's selection.json decides the epoch and the post-processing, and
eval, inference (frame folder and video file) and the web app give the same events with their default flags."""

from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path

import pytest

from tests.conftest import write_tiny_model
from util.cli import run_main
from util.io import load_json
from util.postprocess import PostProcess

# Not the defaults, so that a step that ignored selection.json would give other events.
CHOSEN = PostProcess(nms_window_s=0.6, soft=True, sigma_s=0.0, threshold=0.02)
DISPLAY_THRESHOLD = 0.2
FPS = 5.0  # the tiny model's frame rate


@pytest.fixture(scope="module")
def world(tmp_path_factory, match_video_6s) -> dict:
    """A one-game library (its video, its 5 fps frames, parsed labels with the game as the test split) and a model
    directory of two epochs whose selection.json picks the earlier one, with ``CHOSEN`` post-processing."""
    import torch

    from model.common import build_model, load_config, save_checkpoint
    from model.usage import save_selection
    from util.extract import extract_video
    from util.parse import parse_library, write_parsed

    root, video = tmp_path_factory.mktemp("truth"), match_video_6s
    videos = video.parents[3]  # the library: <league>/<season>/<game>/224p.mp4
    game = video.parent.relative_to(videos).as_posix()
    extract_video(video, root / "frames" / game, sample_fps=FPS, height=64)
    classes, parsed, _ = parse_library(videos, root / "frames", {"test": [game]})
    write_parsed(root / "data", classes, parsed)
    model_dir = write_tiny_model(root / "model")
    net = build_model(load_config(model_dir))
    for epoch, gain in ((1, 1.5), (2, 0.5)):
        torch.manual_seed(epoch)
        with torch.no_grad():  # an untrained classifier gives near-uniform scores; sharpen them
            net.head.fc.weight.normal_().mul_(gain)
        save_checkpoint(model_dir, epoch, net)
    selection = {"epoch": 1, "criterion": "map", "metric": "val mAP@1", "value": 0.5}
    save_selection(
        model_dir, selection | {"postprocess": CHOSEN.to_dict(), "display_threshold": DISPLAY_THRESHOLD}
    )
    return {"root": root, "video": video, "game": game, "model": model_dir}


def _run(module, argv: list) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert run_main(module.main, module.get_args([str(a) for a in argv])) == 0
    return out.getvalue()


def _rows(path: Path) -> list[dict]:
    return load_json(path)["predictions"]


@pytest.mark.slow  # every step on one model, the app's worker included
def test_eval_inference_and_the_app_give_the_same_events(world, tmp_path):
    import eval_soccernet_ball
    import inference_spot
    from app.app import create_app

    root, model, game = world["root"], world["model"], world["game"]
    _run(
        eval_soccernet_ball,
        [root / "data", root / "frames", model, "-s", "test", "--eval_dir", tmp_path / "sub"],
    )
    assert (model / "pred-test.1.json").is_file() and not (model / "pred-test.2.json").exists()  # epoch 1
    from_eval = _rows(tmp_path / "sub" / game / "results_spotting.json")

    printed = _run(inference_spot, ["--model_dir", model, "--frame_dir", root / "frames", "--video_name", game,
                                    "--output_dir", tmp_path / "frames"])  # fmt: skip
    assert (
        "epoch 1" in printed
        and CHOSEN.describe(FPS) in printed
        and f"from score {DISPLAY_THRESHOLD:g}" in printed
    )
    assert _rows(tmp_path / "frames" / "results_spotting.json") == from_eval
    assert len(from_eval) > 5 and min(float(r["confidence"]) for r in from_eval) >= CHOSEN.threshold
    shown = load_json(tmp_path / "frames" / "predictions.json")
    assert shown["epoch"] == 1 and PostProcess.from_dict(shown["postprocess"]) == CHOSEN
    assert 0 < len(shown["events"]) < len(from_eval)
    assert all(e["score"] >= DISPLAY_THRESHOLD for e in shown["events"])

    _run(
        inference_spot, ["--model_dir", model, "--video", world["video"], "--output_dir", tmp_path / "video"]
    )
    from_video = _rows(tmp_path / "video" / "results_spotting.json")

    app = create_app({"MODEL_DIR": model, "JOBS_DIR": tmp_path / "jobs", "TESTING": True})
    try:
        client = app.test_client()
        assert f'value="{DISPLAY_THRESHOLD}"' in client.get("/").get_data(as_text=True)  # the form's default
        with open(world["video"], "rb") as f:  # the form as the browser sends it, default threshold included
            data = {"video": (f, "match.mp4"), "threshold": str(DISPLAY_THRESHOLD), "slowmo": "1"}
            reply = client.post("/upload", data=data, headers={"Accept": "application/json"})
        assert reply.status_code == 202, reply.get_data(as_text=True)
        job_id = reply.get_json()["job_id"]
        deadline = time.monotonic() + 120
        while (status := client.get(f"/api/jobs/{job_id}").get_json())["state"] not in ("done", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert status["state"] == "done", status
    finally:
        app.extensions["spot_jobs"].shutdown()
    (job_out,) = {p.parent for p in (tmp_path / "jobs").rglob("results_spotting.json")}
    strip = [{k: v for k, v in r.items() if k != "gameTime"} for r in from_video]
    assert [
        {k: v for k, v in r.items() if k != "gameTime"} for r in _rows(job_out / "results_spotting.json")
    ] == strip
    app_events = load_json(job_out / "predictions.json")["events"]
    # The library's video has its Labels-ball.json beside it (each event marked "correct"); the upload has none.
    from_script = [
        {k: v for k, v in e.items() if k != "correct"}
        for e in load_json(tmp_path / "video" / "predictions.json")["events"]
    ]
    assert app_events == from_script

    # The frame folder (JPEG) and the video (decoded on the fly) read the same frames up to JPEG error: the same
    # score peaks, so nearly the same events.
    key = {(r["position"], r["label"]) for r in from_eval}
    same = len(key & {(r["position"], r["label"]) for r in from_video}) / max(len(key), 1)
    print(f"frames vs video: {same:.0%} of {len(key)} events at the same frame and class")
    assert same > 0.8


@pytest.mark.slow  # every step on one model, the app's worker included
def test_flags_override_the_recorded_choice(world, tmp_path):
    import eval_soccernet_ball

    root, model = world["root"], world["model"]
    argv = [root / "data", root / "frames", model, "-s", "test"]
    results = {}
    for name, extra in {"recorded": [], "epoch 2": ["--epoch", "2"], "window": ["--nms_window_s", "3"],
                        "frames": ["--nms_window", "15"]}.items():  # fmt: skip
        _run(eval_soccernet_ball, [*argv, *extra, "--eval_dir", tmp_path / name])
        results[name] = _rows(tmp_path / name / world["game"] / "results_spotting.json")
    assert results["epoch 2"] != results["recorded"] and results["window"] != results["recorded"]
    assert results["window"] == results["frames"]  # 15 frames at the model's 5 fps are 3 s
    assert len(results["window"]) < len(results["recorded"])


@pytest.mark.slow  # every step on one model, the app's worker included
def test_per_class_thresholds_recorded_on_val_are_what_inference_and_the_app_show(world, tmp_path):
    import shutil

    import inference_spot
    from app.app import create_app
    from model.usage import load_selection, save_selection

    model = tmp_path / "model"
    shutil.copytree(world["model"], model)
    classes = load_json(model / "config.json")["classes"]
    # Every class its own threshold (as training records them), one class left out: it uses display_threshold.
    per_class = {c: round(0.15 + 0.05 * (i % 5), 2) for i, c in enumerate(classes[1:])}
    save_selection(
        model, load_json(model / "selection.json") | {"class_thresholds": per_class, "target_precision": 0.8}
    )
    assert load_selection(model)["class_thresholds"] == per_class
    printed = _run(
        inference_spot,
        ["--model_dir", model, "--video", world["video"], "--output_dir", tmp_path / "v", "--labels", "none"],
    )
    assert "per-class thresholds (val precision >= 0.8 at 1 s, else best F1)" in printed
    doc = load_json(tmp_path / "v" / "predictions.json")
    limits = {c: per_class.get(c, DISPLAY_THRESHOLD) for c in classes}
    assert doc["class_thresholds"] == limits and doc["score_threshold"] is None
    every = load_json(tmp_path / "v" / "results_spotting.json")["predictions"]
    expected = sorted((round(float(r["confidence"]), 4), r["label"]) for r in every
                      if float(r["confidence"]) >= limits[r["label"]])  # fmt: skip
    assert sorted((round(e["score"], 4), e["label"]) for e in doc["events"]) == expected and expected
    # --score_threshold overrides them, for every class.
    _run(inference_spot, ["--model_dir", model, "--video", world["video"], "--output_dir", tmp_path / "o",
                          "--score_threshold", "0.5"])  # fmt: skip
    assert set(load_json(tmp_path / "o" / "predictions.json")["class_thresholds"].values()) == {0.5}

    app = create_app({"MODEL_DIR": model, "JOBS_DIR": tmp_path / "jobs", "TESTING": True})
    try:
        client = app.test_client()
        page = client.get("/").get_data(as_text=True)
        assert 'name="thresholds" value="model" checked' in page and "about 80 %" in page
        jobs = []
        for form in ({"thresholds": "model", "threshold": "0.4"}, {"threshold": "0.4"}):  # ticked, then not
            with open(world["video"], "rb") as f:
                reply = client.post("/upload", data={"video": (f, "m.mp4"), "slowmo": "1", **form},
                                    headers={"Accept": "application/json"})  # fmt: skip
            assert reply.status_code == 202, reply.get_data(as_text=True)
            jobs.append(reply.get_json()["job_id"])
        for job_id in jobs:
            deadline = time.monotonic() + 120
            while (status := client.get(f"/api/jobs/{job_id}").get_json())["state"] not in ("done", "failed"):
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert status["state"] == "done", status
        assert "the model's per-class thresholds" in client.get(f"/jobs/{jobs[0]}/result").get_data(
            as_text=True
        )
    finally:
        app.extensions["spot_jobs"].shutdown()
    jobs_dir = tmp_path / "jobs"
    assert load_json(jobs_dir / jobs[0] / "output" / "predictions.json")["events"] == doc["events"]
    assert set(
        load_json(jobs_dir / jobs[1] / "output" / "predictions.json")["class_thresholds"].values()
    ) == {0.4}


@pytest.mark.slow  # step 4 on the tiny model, its report included
def test_a_report_written_with_record_thresholds_shows_the_thresholds_just_recorded(world, tmp_path):
    """eval --record_thresholds --report: the report's table is what this command recorded in selection.json, not
    what the model folder held before (it is read once, before the recording)."""
    import shutil

    import eval_soccernet_ball
    from util.parse import write_parsed

    root, model = world["root"], tmp_path / "model"
    shutil.copytree(world["model"], model)
    classes = (root / "data" / "class.txt").read_text().split()
    write_parsed(tmp_path / "data", classes, {"val": load_json(root / "data" / "test.json")})
    assert "class_thresholds" not in load_json(model / "selection.json")
    _run(eval_soccernet_ball, [tmp_path / "data", root / "frames", model, "-s", "val", "--record_thresholds",
                               "--target_precision", "0.6", "--report", tmp_path / "report",
                               "--bootstrap_rounds", "20"])  # fmt: skip
    recorded = load_json(model / "selection.json")
    assert "class_thresholds" in recorded and recorded["target_precision"] == 0.6
    report = load_json(tmp_path / "report" / "report.json")
    assert report["target_precision"] == 0.6
    assert {r["class"] for r in report["display_thresholds"]} == set(recorded["class_thresholds"])
