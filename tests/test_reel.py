"""The highlight reel (issue 33 item 2): bounded by default (a share of the match, at most a cap), filled with the
best-scoring actions of the chosen classes and team, windows merged, in time order, no slow motion unless asked,
and rendered by seeking to its windows: only the frames it shows are decoded, not the whole match."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import read_index, write_index_video
from util.io import DataError

FPS = 25.0


def dense_match(minutes: float = 60, gap_s: float = 2.5, jitter: float = 0.5, seed: int = 0) -> list[dict]:
    """Ball actions as dense as a real match's (one every ~2.5 s: ~1,440 an hour; gaps of ``gap_s`` +- ``jitter``
    of it), random scores, both teams."""
    rng = np.random.default_rng(seed)
    classes = ["PASS", "DRIVE", "SHOT", "HEADER", "CROSS"]
    events, t = [], 1.0
    while t < minutes * 60 - 1:
        events.append(
            {
                "frame": round(t * FPS),
                "label": classes[int(rng.integers(len(classes)))],
                "team": "left" if rng.random() < 0.5 else "right",
                "score": float(rng.uniform(0.3, 1.0)),
            }
        )
        t += gap_s * rng.uniform(1 - jitter, 1 + jitter)
    return events


def test_the_default_reel_of_a_dense_match_is_at_most_its_target_length():
    from model.render import RenderOptions, plan_reel

    events = dense_match(60)
    num_frames = round(60 * 60 * FPS)
    reel_options = RenderOptions(highlights_s=5.0)
    reel = plan_reel(events, num_frames, FPS, reel_options)
    # The defaults: 10 % of a 60-minute match is 6 minutes, capped at 5.
    assert reel_options.reel_target_frames(num_frames, FPS) == reel.target == round(300 * FPS)
    assert 0.9 * reel.target < reel.frames <= reel.target
    assert reel.frames == int(reel.covered.sum()) == sum(b - a for a, b in reel.windows)
    # Every action +- 5 s (the app's reel before): the whole match, near enough.
    every = plan_reel(events, num_frames, FPS, RenderOptions(highlights_s=5.0, reel_share=1.0, reel_max_s=0))
    assert every.frames > 0.95 * num_frames and all(every.picked)
    # The share wins under the cap, never under a minute (or the whole video); the cap wins over the share.
    assert RenderOptions(highlights_s=5).reel_target_frames(round(20 * 60 * FPS), FPS) == round(120 * FPS)
    assert RenderOptions(highlights_s=5).reel_target_frames(round(5 * 60 * FPS), FPS) == round(60 * FPS)
    assert RenderOptions(highlights_s=5).reel_target_frames(round(30 * FPS), FPS) == round(30 * FPS)
    assert RenderOptions(highlights_s=5, reel_max_s=30).reel_target_frames(num_frames, FPS) == round(30 * FPS)
    for bad in ({"reel_share": 0.0}, {"reel_share": 1.5}, {"reel_share": float("nan")}, {"reel_max_s": -1.0}):
        with pytest.raises(DataError, match="reel"):
            RenderOptions(highlights_s=5, **bad)


def test_the_reel_picks_the_best_scoring_actions_of_the_chosen_classes_and_team():
    from model.render import RenderOptions, plan_reel

    events = dense_match(
        60, gap_s=11.0, jitter=0
    )  # windows of +- 5 s never overlap: each costs a whole window
    num_frames = round(60 * 60 * FPS)
    options = RenderOptions(highlights_s=5.0, highlight_classes=("SHOT", "HEADER"), highlight_team="left")
    reel = plan_reel(events, num_frames, FPS, options)
    chosen = [i for i, e in enumerate(events) if e["label"] in ("SHOT", "HEADER") and e["team"] == "left"]
    window = 2 * round(5 * FPS) + 1
    fit = reel.target // window
    assert len(chosen) > fit  # more chosen actions than fit: the reel had to choose
    best = sorted(chosen, key=lambda i: -events[i]["score"])[:fit]
    assert [i for i, p in enumerate(reel.picked) if p] == sorted(best)
    assert reel.frames == fit * window <= reel.target
    # No other class or team is in it (their frames are shown only where they fall in a chosen window).
    assert not any(reel.picked[i] for i in range(len(events)) if i not in chosen)


def test_overlapping_windows_merge_and_play_in_time_order():
    from model.render import RenderOptions, plan_reel

    def event(frame: int, score: float) -> dict:
        return {"frame": frame, "label": "PASS", "team": "left", "score": score}

    # The best action comes last in the match; two actions 10 frames apart share one window.
    events = [event(100, 0.5), event(2000, 0.6), event(2010, 0.7), event(5000, 0.9), event(8000, 0.1)]
    options = RenderOptions(highlights_s=2.0, reel_max_s=9.0)  # 225 frames; windows of 101
    reel = plan_reel(events, 10_000, FPS, options)
    # 5000 (101 frames), 2010 (202), then 2000 adds the 10 frames its window has before 2010's (212): it fits
    # where a window of its own would not; 100 and 8000 do not.
    assert reel.windows == [(1950, 2061), (4950, 5051)]  # merged, in time order
    assert reel.picked == [False, True, True, True, False]
    assert reel.frames == 111 + 101 <= reel.target == 225


def test_no_slow_motion_in_a_reel_unless_asked_and_asked_for_it_counts_in_the_length():
    from model.render import DEFAULT_SLOWMO_FACTOR, RenderOptions, plan_reel
    from util.visualize import slowmo_repeats

    assert RenderOptions().slowmo == DEFAULT_SLOWMO_FACTOR == 3  # the whole video: slowed down around actions
    assert RenderOptions(highlights_s=5).slowmo == 1
    assert RenderOptions(highlights_s=5, slowmo_factor=2).slowmo == 2
    events = dense_match(60)
    num_frames = round(60 * 60 * FPS)
    slowed = RenderOptions(highlights_s=5, slowmo_factor=3)
    repeats = slowmo_repeats(num_frames, [e["frame"] for e in events], 3, round(0.4 * FPS))
    reel = plan_reel(events, num_frames, FPS, slowed, repeats)
    assert reel.frames == int(repeats[reel.covered].sum()) <= reel.target
    assert (
        reel.covered.sum() < plan_reel(events, num_frames, FPS, RenderOptions(highlights_s=5)).covered.sum()
    )


def test_a_window_longer_than_the_target_is_cut_around_its_action():
    from model.render import RenderOptions, plan_reel

    events = [{"frame": 500, "label": "GOAL", "score": 0.9}, {"frame": 900, "label": "PASS", "score": 0.95}]
    options = RenderOptions(highlights_s=10.0, reel_max_s=2.0, highlight_classes=("GOAL",))
    reel = plan_reel(events, 1000, FPS, options)
    assert reel.windows == [(475, 525)] and reel.frames == reel.target == 50 and reel.picked == [True, False]
    nothing = plan_reel([], 1000, FPS, RenderOptions(highlights_s=1.0))
    assert nothing.windows == [(0, 26)]  # no action: a window's worth from the start, still a video


def _index_match(path: Path, seconds: float = 90, fps: float = 10.0) -> Path:
    """A video whose frame k shows k (mod 1024), a keyframe every 25 frames and B-frames, so a reel seeks."""
    write_index_video(
        path, fps=fps, seconds=seconds,
        options={"preset": "veryfast", "crf": "12", "x264-params": "keyint=25:min-keyint=25:bframes=2:scenecut=0"},
    )  # fmt: skip
    return path


def _reel_events() -> list[dict]:
    def event(frame: int, score: float, label: str = "PASS") -> dict:
        return {"frame": frame, "label": label, "team": "left", "score": score}

    rng = np.random.default_rng(1)
    events = [event(f, float(rng.uniform(0.1, 0.5))) for f in range(20, 900, 50)]  # none fits beside the best
    events += [event(400, 0.99, "SHOT"), event(410, 0.98), event(100, 0.97), event(700, 0.96)]
    return sorted(events, key=lambda e: e["frame"])


def _decoded_frames(container_path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(container_path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]


def test_rendering_a_reel_decodes_only_the_frames_it_shows(tmp_path, monkeypatch):
    import util.video
    import util.video_index
    from dataset.source import resolve_input
    from model.render import RenderOptions, plan_reel, render

    video = _index_match(tmp_path / "match.mp4")
    item = resolve_input(video, None, None, None)
    events = _reel_events()
    opened: list = []

    class Counted(util.video_index.VideoFrames):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            opened.append(self)

    def no_whole_decode(*args, **kwargs):
        raise AssertionError("a reel must not decode the whole video")

    monkeypatch.setattr(util.video_index, "VideoFrames", Counted)
    monkeypatch.setattr(util.video, "VideoReader", no_whole_decode)
    options = RenderOptions(highlights_s=1.0, reel_max_s=6.0)  # 60 frames at 10 fps; windows of 21
    calls = []
    path, _, written, times = render(
        item, tmp_path / "out", events, ["PASS", "SHOT"], 10.0, 900, options,
        progress=lambda stage, done, total: calls.append((done, total)),
    )  # fmt: skip
    reel = plan_reel(events, 900, 10.0, options)
    assert reel.windows == [(90, 111), (390, 421)]  # 400 and 410 merged; the best (at 400) plays second
    shown = [k for a, b in reel.windows for k in range(a, b)]
    assert written == len(shown) == 52 <= reel.target == 60  # no slow motion: each frame once
    (frames,) = opened
    assert frames.used == len(shown)  # converted and drawn: the shown frames only
    keyint = 25
    assert (
        frames.decoded <= len(shown) + len(reel.windows) * keyint
    )  # and the decoder ran from their keyframes
    assert frames.decoded < 900 / 4
    assert calls[-1] == (len(shown), len(shown))
    out = _decoded_frames(path)
    assert [read_index(f) for f in out] == shown  # the right frames, in time order
    in_reel = {e["frame"]: t for e, t in zip(events, times, strict=True)}
    assert in_reel[400] == pytest.approx((400 - 390 + 21) / 10.0) and in_reel[100] == pytest.approx(1.0)
    assert in_reel[20] is None and in_reel[420] is not None  # left out; not picked, but in a window


def test_a_reel_of_a_frame_folder_reads_only_its_frames(tmp_path, monkeypatch):
    import cv2

    from dataset.source import JpegDirSource, resolve_input
    from model.render import RenderOptions, render
    from tests.conftest import draw_index

    folder = tmp_path / "frames"
    folder.mkdir()
    for k in range(300):
        cv2.imwrite(str(folder / f"{k:06d}.jpg"), draw_index(k, 160, 90))
    (folder / "fps.txt").write_text("10\n")
    item = resolve_input(None, folder, None, None)
    read: list[int] = []
    original = JpegDirSource._read

    def counted(self, frame):
        read.append(frame)
        return original(self, frame)

    monkeypatch.setattr(JpegDirSource, "_read", counted)
    events = [{"frame": 50, "label": "PASS", "team": "left", "score": 0.9},
              {"frame": 200, "label": "PASS", "team": "left", "score": 0.8}]  # fmt: skip
    options = RenderOptions(highlights_s=0.5)
    path, _, written, _ = render(item, tmp_path / "out", events, ["PASS"], 10.0, 300, options)
    shown = [*range(45, 56), *range(195, 206)]
    assert sorted(read) == shown and written == len(shown)
    assert [read_index(f) for f in _decoded_frames(path)] == shown


def test_step5_flags_for_the_reel(tmp_path):
    from inference_spot import get_args
    from model.inference_options import InferenceOptions

    base = ["--model_dir", "m", "--video", "v.mp4", "--output_dir", str(tmp_path), "--create_video"]
    args = get_args([*base, "--highlights", "4", "--reel_share", "0.05", "--reel_max_s", "120"])
    drawing = InferenceOptions.from_namespace(args).render_options()
    assert (drawing.reel_share, drawing.reel_max_s, drawing.slowmo, drawing.highlights_s) == (
        0.05,
        120.0,
        1,
        4.0,
    )
    defaults = InferenceOptions.from_namespace(get_args([*base, "--highlights", "4"])).render_options()
    assert (defaults.reel_share, defaults.reel_max_s, defaults.slowmo) == (0.1, 300.0, 1)
    whole = InferenceOptions.from_namespace(get_args(base)).render_options()
    assert not whole.reel and whole.slowmo == 3  # the whole annotated video, on request, as before
    with pytest.raises(SystemExit):
        get_args([*base, "--reel_max_s", "60"])  # bounds without a reel


def test_the_app_reel_has_no_slow_motion_unless_asked_and_takes_bounds():
    from werkzeug.datastructures import MultiDict

    from app.options import inference_options, parse_options, resolved_slowmo

    def parse(**form):
        return parse_options(MultiDict(form), 0.5, 3, outputs={"classes": ["PASS"], "team": True})

    assert parse()["slowmo_factor"] == "auto" and parse(slowmo="2")["slowmo_factor"] == 2
    assert resolved_slowmo("auto", "highlights") == 1 and resolved_slowmo("auto", "full") == 3
    assert resolved_slowmo(2, "highlights") == 2
    assert parse_options(MultiDict(), 0.5, 1)["slowmo_factor"] == 1  # a server's own default stands
    reel = parse(reel_max_s="90", reel_share="0.2")
    assert reel["annotated"] == "highlights" and (reel["reel_max_s"], reel["reel_share"]) == (90.0, 0.2)
    chosen = inference_options(reel, Path("v.mp4"), "v", None).render_options()
    assert (chosen.reel_max_s, chosen.reel_share, chosen.slowmo) == (90.0, 0.2, 1)
    full = inference_options(parse(annotated="full"), Path("v.mp4"), "v", None).render_options()
    assert not full.reel and full.slowmo == 3
    for bad in (
        {"reel_share": "2"},
        {"reel_max_s": "-5"},
        {"slowmo": "7"},
        {"reel_max_s": "60", "annotated": "full"},
    ):
        with pytest.raises(ValueError):
            parse(**bad)


def test_actions_left_out_of_the_reel_have_no_time_in_it():
    from app.results import _events_document

    result = {
        "fps": 25.0, "num_frames": 100, "video_frames": 30, "in_reel": [True, True, False],
        "events": [{"frame": 10, "label": "PASS", "score": 0.9}, {"frame": 60, "label": "PASS", "score": 0.2},
                   {"frame": 12, "label": "DRIVE", "score": 0.5}],
        "video_times_s": [0.4, None, 0.48],
    }  # fmt: skip
    doc = _events_document(result)
    json.dumps(doc)
    first, second, third = doc["events"]
    assert first["video_time_s"] == 0.4 and "in_reel" not in first
    assert "video_time_s" not in second and second["in_reel"] is False  # not among the best that fit
    assert third["video_time_s"] == 0.48 and third["in_reel"] is False  # not of the reel's classes
