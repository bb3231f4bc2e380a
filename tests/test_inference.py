"""Step 5: inference on a video file or a frame folder, its outputs, the annotated video, and bad input.

A tiny untrained model (with a team head, its classifier scaled up so scores vary from frame to frame) runs on a
4-second synthetic match; every output a user opens is checked: predictions in both formats, the scores, the
timeline, the frames, and an H.264 video that browsers play (codec, pixel format, moov in front, frame count with
slow motion, audio kept).
"""

from __future__ import annotations

import csv
import json
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from inference_spot import get_args, main
from tests.conftest import draw_index, read_index, write_tiny_model
from util.cli import run_main
from util.io import DataError

FPS = 5.0  # the tiny model's frame rate: the 25 fps clip is resampled, 20 frames for 4 seconds
SOURCE_FPS = 25  # the clip's own rate, at which the annotated video is drawn (100 frames)
SECONDS = 4


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    # rny002 (no shift), its classifier scaled up so that scores vary from frame to frame.
    return write_tiny_model(tmp_path_factory.mktemp("model"), sharpen=40.0, feature_arch="rny002", fps=FPS)


@pytest.fixture(scope="module")
def clip(match_video) -> Path:
    return match_video  # SECONDS long


@pytest.fixture(scope="module")
def video_run(model_dir, clip, tmp_path_factory) -> dict:
    from model.inference import run_inference

    calls = []
    result = run_inference(
        model_dir,
        tmp_path_factory.mktemp("out"),
        video=clip,
        score_threshold=0.0,
        nms_window=3,
        visualize=True,
        create_video=True,
        slowmo_factor=3,
        slowmo_span=0.2,
        progress=lambda stage, done, total: calls.append((stage, done, total)),
    )
    result["progress_calls"] = calls
    return result


def _video_streams(path: Path) -> dict:
    import av

    with av.open(str(path)) as container:
        video = container.streams.video[0]
        info = {
            "codec": video.codec_context.name,
            "pix_fmt": video.codec_context.pix_fmt,
            "size": (video.width, video.height),
            "rate": Fraction(video.average_rate),
            "audio": [
                (s.codec_context.name, float(s.duration * s.time_base)) for s in container.streams.audio
            ],
            "duration_s": float(video.duration * video.time_base),
        }
        info["frames"] = sum(1 for _ in container.decode(video=0))
    return info


def _slowed_count(num_frames: int, event_frames: list[int], factor: int, span: int) -> int:
    slowed = {f for e in event_frames for f in range(e - span, e + span + 1) if 0 <= f < num_frames}
    return num_frames + (factor - 1) * len(slowed)


def test_video_predictions_in_both_formats(video_run):
    result = video_run
    assert result["video_id"].startswith("synthetic_league/2024-2025/")
    assert result["num_frames"] == SECONDS * FPS and result["fps"] == FPS
    doc = json.loads(result["predictions"].read_text())
    assert doc["video"] == result["video_id"] and doc["fps"] == FPS
    assert doc["events"] and doc["events"] == result["events"]
    for event in doc["events"]:
        assert 0 <= event["frame"] < result["num_frames"] and 0 <= event["score"] <= 1
        assert event["team"] in ("left", "right") and 0.5 <= event["team_score"] <= 1
        assert event["time_s"] == pytest.approx(event["frame"] / FPS)
        minutes, seconds = event["time"].split(":")
        assert int(minutes) * 60 + float(seconds) == pytest.approx(event["frame"] / FPS)
    # events.csv: the same events, one row each in time order, for a spreadsheet.
    with result["events_csv"].open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["time_s", "time", "label", "team", "score", "team_score", "frame"]
    shown = sorted(doc["events"], key=lambda e: (e["frame"], -e["score"]))
    assert [(int(r["frame"]), r["label"], r["team"], r["time"]) for r in rows] == [
        (e["frame"], e["label"], e["team"], e["time"]) for e in shown
    ]
    assert [float(r["score"]) for r in rows] == pytest.approx([e["score"] for e in shown], abs=1e-4)
    soccernet = json.loads(result["results_spotting"].read_text())
    assert result["results_spotting"].parent == result["predictions"].parent
    assert len(soccernet["predictions"]) == len(doc["events"])
    by_key = {(e["label"], round(e["score"], 6)): e for e in doc["events"]}
    for row in soccernet["predictions"]:
        event = by_key[(row["label"], round(float(row["confidence"]), 6))]
        assert int(row["position"]) // 200 == event["frame"]  # 5 fps: 200 ms a frame
        assert row["half"] == "1" and row["team"] == event["team"]


def test_scores_timeline_and_summary(video_run):
    from util.postprocess import load_scores

    ((video, (scores, team, _)),) = load_scores(video_run["scores"]).items()
    assert video == video_run["video_id"]
    assert scores.shape == (video_run["num_frames"], 13) and team.shape == (video_run["num_frames"],)
    assert np.allclose(scores.sum(axis=1), 1, atol=1e-4)
    assert video_run["timeline"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = video_run["summary"]
    assert "PASS" in summary and "left" in summary and str(len(video_run["events"])) in summary
    stages = [stage for stage, _, _ in video_run["progress_calls"]]
    assert stages[0] == "decoding" and "detecting" in stages and stages[-1] == "rendering"
    last = {stage: (done, total) for stage, done, total in video_run["progress_calls"]}
    assert last["detecting"] == (20, 20) and last["rendering"] == (100, 100)  # drawn at the source's 25 fps
    assert set(video_run["seconds"]) == {"load", "detect", "render", "total"}


def test_annotated_video_is_browser_playable_h264_with_slow_motion(video_run, clip):
    path = video_run["video"]
    info = _video_streams(path)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["size"] == (398, 224)  # the source's resolution, not the model's
    assert info["rate"] == SOURCE_FPS  # the source's rate, not the model's 5 fps: it plays smoothly
    head = path.read_bytes()[:4096]
    assert head.find(b"moov") != -1 and (head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat"))
    scale = SOURCE_FPS / FPS
    source_frames = round(video_run["num_frames"] * scale)
    # Events at their times in the source's frames; slow motion over +-0.2 s = +-5 frames at 25 fps.
    event_frames = [round(e["frame"] * scale) for e in video_run["events"]]
    expected = _slowed_count(source_frames, event_frames, 3, 5)
    assert expected > source_frames
    assert info["frames"] == video_run["video_frames"] == expected
    frames = sorted(video_run["frames"].glob("*.jpg"))
    assert [f.name for f in frames] == [f"{k:06d}.jpg" for k in range(source_frames)]


def test_slowmo_factor_one_keeps_every_frame_once_and_max_frames(model_dir, clip, tmp_path):
    from model.inference import run_inference

    result = run_inference(
        model_dir, tmp_path, video=clip, score_threshold=0.0, create_video=True, slowmo_factor=1, max_frames=7
    )
    assert result["num_frames"] == 7
    scores = np.load(result["scores"])[result["video_id"]]
    assert scores.shape == (7, 13)
    assert all(e["frame"] < 7 for e in result["events"])
    assert _video_streams(result["video"])["frames"] == 7 * SOURCE_FPS / FPS  # 1.4 s of the source
    assert result["frames"] is None


def test_video_and_its_frame_folder_give_the_same_scores(model_dir, clip, video_run, tmp_path):
    from model.inference import run_inference
    from util.extract import extract_video

    extract_video(clip, tmp_path / "frames" / "clip", sample_fps=FPS, height=64)
    result = run_inference(
        model_dir, tmp_path / "out", frame_dir=tmp_path / "frames", video_name="clip", score_threshold=0.0
    )
    assert result["notes"] == []
    # Not a SoccerNet game id: written as one game of one half, with every event of the post-processing.
    rows = json.loads(result["results_spotting"].read_text())
    assert rows["UrlLocal"] == "clip" and len(rows["predictions"]) == len(result["all_events"])
    from_folder = np.load(result["scores"])["clip"]
    from_video = np.load(video_run["scores"])[video_run["video_id"]]
    assert from_folder.shape == from_video.shape
    difference = np.abs(from_folder - from_video)
    neighbours = np.abs(from_video[1:] - from_video[:-1]).mean()  # one frame off would differ this much
    print(
        f"folder vs video: max {difference.max():.4f}, mean {difference.mean():.5f}; frame to frame {neighbours:.5f}"
    )
    assert difference.max() < 0.02  # JPEG noise only
    assert difference.mean() < 0.25 * neighbours


def test_resampled_frame_folder_picks_the_nearest_frames(tmp_path):
    import cv2

    from dataset.source import JpegDirSource, ResampledSource

    folder = tmp_path / "v"
    folder.mkdir()
    for i in range(10):
        cv2.imwrite(str(folder / f"{i:06d}.jpg"), draw_index(i, 80, 40))
    (folder / "fps.txt").write_text("10.0\n")
    source = ResampledSource(JpegDirSource(folder), 4.0)
    frames = np.concatenate(list(source.iter_chunks(3)))
    # times 0, 0.25, 0.5, 0.75 s; 0.25 s is halfway between frames 2 and 3: the earlier one, as util.video does
    assert [read_index(f) for f in frames] == [0, 2, 5, 7]
    assert source.num_frames == 4


def test_frame_folder_at_another_fps_is_resampled_with_a_note(model_dir, clip, tmp_path):
    from model.inference import run_inference
    from util.extract import extract_video

    extract_video(clip, tmp_path / "frames" / "clip", sample_fps=10, height=64)
    result = run_inference(model_dir, tmp_path / "out", frame_dir=tmp_path / "frames" / "clip")
    assert result["num_frames"] == SECONDS * FPS
    assert len(result["notes"]) == 1 and "10 fps resampled to the model's 5 fps" in result["notes"][0]


def _video_with_audio(path: Path, seconds: float = 2.0, size: tuple[int, int] = (160, 90)) -> None:
    import av

    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        audio = container.add_stream("aac", rate=22050, layout="mono")
        for i in range(round(seconds * 25)):
            image = draw_index(i, *size)
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        for start in range(0, round(seconds * 22050), 1024):
            t = np.arange(start, start + 1024) / 22050
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 22050, start
            container.mux(audio.encode(frame))
        container.mux(video.encode())
        container.mux(audio.encode())


def test_source_audio_is_kept_in_step_with_slow_motion(model_dir, tmp_path):
    from model.inference import run_inference

    source = tmp_path / "upload.mp4"
    _video_with_audio(source)
    result = run_inference(
        model_dir,
        tmp_path / "out",
        video=source,
        video_name="my match",
        score_threshold=0.0,
        create_video=True,
        slowmo_factor=2,
        slowmo_span=0.2,
    )
    assert result["video_id"] == "my match"
    info = _video_streams(result["video"])
    assert info["size"] == (398, 224)  # small sources are scaled up so the labels stay legible
    assert info["frames"] == result["video_frames"] > result["num_frames"]
    ((codec, audio_s),) = info["audio"]
    assert codec == "aac"
    assert audio_s == pytest.approx(result["video_frames"] / float(info["rate"]), abs=0.1)


# ---- bad input: one line on stderr, exit status 2, no traceback


def _truncated(clip: Path, tmp: Path) -> Path:
    """The clip with its index in front (as a download would have it), cut after 30% of its bytes."""
    import av

    whole = tmp / "whole.mp4"
    with av.open(str(clip)) as source, av.open(str(whole), "w", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(source.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    path = tmp / "truncated.mp4"
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 10])
    return path


def _not_a_video(clip: Path, tmp: Path) -> Path:
    path = tmp / "notes.mp4"
    path.write_text("this is not a video\n")
    return path


def _folder_without_fps(clip: Path, tmp: Path) -> Path:
    from util.extract import extract_video

    folder = tmp / "frames" / "clip"
    extract_video(clip, folder, sample_fps=FPS, height=64)
    (folder / "fps.txt").unlink()
    return folder


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing video", "file not found"),
        ("truncated video", "truncated or damaged"),
        ("video without its index", "not a readable video"),
        ("not a video", "not a readable video"),
        ("frame folder without fps.txt", "fps.txt"),
        ("model without checkpoint", "no checkpoint"),
        ("missing model", "config.json"),
        ("missing frame folder", "frame folder not found"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(case, expected, model_dir, clip, tmp_path, capsys):
    model, source = str(model_dir), ["--video", str(clip)]
    if case == "missing video":
        source = ["--video", str(tmp_path / "nowhere.mp4")]
    elif case == "truncated video":
        source = ["--video", str(_truncated(clip, tmp_path))]
    elif case == "video without its index":  # cut before the moov atom at its end
        path = tmp_path / "cut.mp4"
        path.write_bytes(clip.read_bytes()[:20000])
        source = ["--video", str(path)]
    elif case == "not a video":
        source = ["--video", str(_not_a_video(clip, tmp_path))]
    elif case == "frame folder without fps.txt":
        source = ["--frame_dir", str(_folder_without_fps(clip, tmp_path))]
    elif case == "model without checkpoint":
        shutil.copy(model_dir / "config.json", tmp_path / "config.json")
        model = str(tmp_path)
    elif case == "missing model":
        model = str(tmp_path / "no_model")
    elif case == "missing frame folder":
        source = ["--frame_dir", str(tmp_path), "--video_name", "league/season/game"]
    args = get_args(["--model_dir", model, *source, "--output_dir", str(tmp_path / "out")])
    code = run_main(main, args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    errors = [line for line in err if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], err
    assert not any("Traceback" in line for line in err)


def test_script_prints_the_summary_and_the_files(model_dir, clip, tmp_path, capsys):
    args = get_args(
        [
            "--model_dir",
            str(model_dir),
            "--video",
            str(clip),
            "--output_dir",
            str(tmp_path),
            "--max_frames",
            "10",
        ]
    )
    assert run_main(main, args) == 0
    out = capsys.readouterr().out
    assert "10 frames at 5 fps" in out and "class" in out and "predictions.json" in out
    assert (tmp_path / "predictions.json").is_file() and not (tmp_path / "annotated.mp4").exists()


# ---- drawing helpers (util.visualize)


def test_slow_motion_plan_and_clock():
    from util.visualize import format_clock, repeat_segments, slowmo_repeats

    repeats = slowmo_repeats(20, [3, 5, 18], factor=4, span_frames=1)
    slowed = [2, 3, 4, 5, 6, 17, 18, 19]  # overlapping spans merge; the last one stops at the end
    assert repeats.tolist() == [4 if f in slowed else 1 for f in range(20)]
    assert repeats.sum() == _slowed_count(20, [3, 5, 18], 4, 1)
    assert repeat_segments(repeats) == [(0, 2, 1), (2, 7, 4), (7, 17, 1), (17, 20, 4)]
    assert slowmo_repeats(20, [3], factor=1, span_frames=5).sum() == 20
    assert format_clock(83.456) == "01:23.46" and format_clock(6000) == "100:00.00"


def test_class_colours_are_distinct_and_shared():
    from util.soccernet import CLASSES
    from util.visualize import class_colors

    colors = class_colors(CLASSES)
    assert len(set(colors.values())) == len(CLASSES)
    assert class_colors(["GOAL", "PASS"]) == {"GOAL": colors["GOAL"], "PASS": colors["PASS"]}
    custom = class_colors(["kick", "dive", "PASS"])
    assert len(set(custom.values())) == 3 and custom["PASS"] == colors["PASS"]


def test_labels_show_around_their_frame_with_a_team_marker():
    from util.visualize import EventSpans, class_colors, draw_overlay

    events = [{"frame": 10, "label": "SHOT", "score": 0.9, "team": "left"}]
    spans = EventSpans(events, 3)
    assert spans.at(7) == events and spans.at(13) == events and spans.at(6) == spans.at(14) == []
    colors = class_colors(["SHOT"])
    blank = np.zeros((224, 398, 3), np.uint8)
    shown = draw_overlay(blank.copy(), 10, 25.0, spans.at(10), colors, 3)
    hidden = draw_overlay(blank.copy(), 20, 25.0, spans.at(20), colors, 3)
    shot = np.all(shown == colors["SHOT"], axis=2).sum()
    assert shot > 500 and np.all(hidden == colors["SHOT"], axis=2).sum() == 0


def test_a_highlight_reel_keeps_only_the_frames_around_each_action(model_dir, tmp_path):
    from model.inference import run_inference
    from util.visualize import highlight_mask

    source = tmp_path / "upload.mp4"
    _video_with_audio(source, seconds=4.0)
    result = run_inference(
        model_dir, tmp_path / "out", video=source, score_threshold=0.3, create_video=True, slowmo_factor=1,
        highlights_s=0.2,
    )  # fmt: skip
    info = _video_streams(result["video"])
    rate = float(info["rate"])
    events = [round(e["frame"] * rate / FPS) for e in result["events"]]
    expected = int(highlight_mask(round(4 * rate), events, round(0.2 * rate)).sum())
    assert result["events"] and info["frames"] == result["video_frames"] == expected < 4 * rate
    ((codec, audio_s),) = info["audio"]  # the audio follows the cuts
    assert codec == "aac" and audio_s == pytest.approx(expected / rate, abs=0.1)
    assert all(0 <= t <= info["duration_s"] for t in result["video_times_s"])
    # A reel of one class (and of one team): cut around those actions only.
    label = result["events"][0]["label"]
    for team in (None, result["events"][0]["team"]):
        chosen = [round(e["frame"] * rate / FPS) for e in result["events"]
                  if e["label"] == label and (team is None or e["team"] == team)]  # fmt: skip
        one = run_inference(
            model_dir, tmp_path / f"one-{team}", video=source, score_threshold=0.3, create_video=True,
            slowmo_factor=1, highlights_s=0.2, highlight_classes=[label], highlight_team=team,
        )  # fmt: skip
        assert one["video_frames"] == int(highlight_mask(round(4 * rate), chosen, round(0.2 * rate)).sum())
        assert 0 < one["video_frames"] <= result["video_frames"]
    with pytest.raises(DataError, match="NOT A CLASS"):
        run_inference(model_dir, tmp_path / "x", video=source, create_video=True, highlights_s=0.2,
                      highlight_classes=["NOT A CLASS"])  # fmt: skip
    with pytest.raises(DataError, match="need a highlight span"):
        run_inference(model_dir, tmp_path / "y", video=source, create_video=True, highlight_team="left")


def test_a_bounded_reel_keeps_the_best_actions_without_slow_motion(model_dir, clip, tmp_path):
    """The reel of step 5 holds the best-scoring actions that fit its length, each frame once (no slow motion
    unless asked); the actions left out have no time in it."""
    from model.inference import run_inference
    from model.render import RenderOptions, plan_reel

    result = run_inference(
        model_dir,
        tmp_path,
        video=clip,
        score_threshold=0.0,
        create_video=True,
        highlights_s=0.2,
        reel_max_s=1.0,
    )
    info = _video_streams(result["video"])
    rate = float(info["rate"])
    assert info["frames"] == result["video_frames"] <= round(1.0 * rate)  # at most the 1-second cap
    events = result["events"]
    at_rate = [{**e, "frame": round(e["frame"] * rate / FPS)} for e in events]
    reel = plan_reel(at_rate, round(SECONDS * rate), rate, RenderOptions(highlights_s=0.2, reel_max_s=1.0))
    assert result["video_frames"] == reel.frames == int(reel.covered.sum())  # each frame once: no slow motion
    times = result["video_times_s"]
    assert [t is not None for t in times] == [reel.shows(e["frame"]) for e in at_rate]
    assert 0 < sum(t is not None for t in times) < len(events)  # a reel had to choose
    assert times[max(range(len(events)), key=lambda i: (events[i]["score"], -events[i]["frame"]))] is not None


def test_ground_truth_beside_the_predictions(video_run, clip, model_dir, tmp_path):
    """A library video's Labels-ball.json is found beside it: its events are drawn and marked under SoccerNet's
    matching at 1 s (the evaluator's hits at the same threshold), and predictions.json carries them."""
    from model.inference import run_inference
    from util.metrics.analysis import error_analysis
    from util.soccernet import LABEL_FILE, load_labels

    truth = video_run["ground_truth"]
    labels = [a for a in load_labels(clip.parent / LABEL_FILE) if a["position_ms"] < SECONDS * 1000]
    assert truth is not None and len(truth) == len(labels) > 0
    assert [t["position_ms"] for t in truth] == [a["position_ms"] for a in labels]
    summary = video_run["ground_truth_summary"]
    shown = video_run["events"]
    assert summary["found"] == sum(t["found"] for t in truth) and summary["events"] == len(truth)
    assert summary["false_alarms"] == sum(not e["correct"] for e in shown)
    # The same hits as step 4's error analysis on these events (every shown one: threshold 0 here).
    game = {"v": [{"half": 1, "position": str(a["position_ms"]), "label": a["label"]} for a in labels]}
    rows = json.loads(video_run["results_spotting"].read_text())["predictions"]
    preds = {"v": [{"half": 1, "position": r["position"], "label": r["label"], "confidence": float(r["confidence"])}
                   for r in rows]}  # fmt: skip
    classes = json.loads((model_dir / "config.json").read_text())["classes"]
    assert error_analysis(game, preds, classes, threshold=0.0)["hits"] == summary["found"]
    doc = json.loads(video_run["predictions"].read_text())
    assert doc["ground_truth_summary"] == summary and len(doc["ground_truth"]) == len(truth)
    # Off on request, and a --labels that is not there is an error naming it.
    off = run_inference(model_dir, tmp_path / "off", video=clip, labels="none", max_frames=10)
    assert off["ground_truth"] is None and "ground_truth" not in json.loads(off["predictions"].read_text())
    with pytest.raises(DataError, match="nowhere.json"):
        run_inference(
            model_dir, tmp_path / "bad", video=clip, labels=tmp_path / "nowhere.json", max_frames=10
        )


def test_the_annotated_frame_labels_the_ground_truth_and_frames_false_detections():
    from util.visualize import FOUND, MISSED, class_colors, draw_overlay

    colors = class_colors(["PASS", "DRIVE"])
    blank = np.zeros((224, 398, 3), np.uint8)

    def share(img: np.ndarray, rgb, half: str) -> float:
        part = img[:, :199] if half == "left" else img[:, 199:]
        return float((np.abs(part.astype(int) - rgb).sum(axis=2) < 30).mean())

    right = {"frame": 10, "label": "PASS", "score": 0.9, "team": "left", "correct": True}
    wrong = {"frame": 10, "label": "DRIVE", "score": 0.4, "team": "right", "correct": False}
    plain = draw_overlay(blank.copy(), 10, 25.0, [right], colors, 3)
    marked = draw_overlay(blank.copy(), 10, 25.0, [right, wrong], colors, 3,
                          truth=[{"frame": 10, "label": "PASS", "found": True},
                                 {"frame": 11, "label": "DRIVE", "found": False}])  # fmt: skip
    assert share(plain, MISSED, "left") == 0 and share(plain, FOUND, "right") == 0
    assert share(marked, MISSED, "left") > 0.002  # the false detection's red frame
    assert share(marked, FOUND, "right") > 0.002 and share(marked, MISSED, "right") > 0.002  # found / missed
