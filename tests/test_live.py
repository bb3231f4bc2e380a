"""Live spotting (model/live.py, inference_spot.py --live): scores final behind the newest frame, events given once,
a real-time UDP feed that drops and comes back."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from model.common import load_model
from model.live import (
    LiveEvents,
    LiveScorer,
    LiveSettings,
    event_margin,
    iter_events,
    live_geometry,
    run_live,
)
from model.predict import _run_batch, model_frame_source, predict_scores, window_stride
from tests.conftest import free_udp_port, keyframes_every_half_second, render_match, write_tiny_model
from util.io import DataError
from util.live_send import send_video
from util.postprocess import PostProcess


@pytest.fixture
def sharp_model(live_model_dir) -> Path:
    """A tiny model with peaked scores (conftest's, shared with the app's live tests)."""
    return live_model_dir


def _model(model_dir: Path):
    model, config, _ = load_model(model_dir, device="cpu")
    model.eval()

    def run(windows):
        with torch.inference_mode():
            return _run_batch(model, windows, config, torch.device("cpu"), precision=torch.float32)

    return model, config, run


def _frames(config: dict, video: Path) -> np.ndarray:
    return np.concatenate(list(model_frame_source(config, video).iter_chunks(64)))


@pytest.mark.parametrize("stretch_len", [5, 23, 30])
def test_with_a_full_context_the_live_scores_are_offline_inferences(sharp_model, match_video_6s, stretch_len):
    model, config, run = _model(sharp_model)
    frames = _frames(config, match_video_6s)[:stretch_len]
    clip_len, stride = int(config["clip_len"]), window_stride(config)
    scorer = LiveScorer(run, clip_len, stride, context=clip_len)
    for image in frames:  # one frame at a time, as a feed gives them
        scorer.push([image])
    scorer.finish()

    class Source:
        num_frames, name = len(frames), "frames"

        def iter_chunks(self, n):
            yield from (frames[i : i + n] for i in range(0, len(frames), n))

    # float32 on both sides: in bf16 a batch of 1 and a batch of 8 round differently (about 1e-3)
    offline, team, _ = predict_scores(model, config, Source(), device="cpu", precision=torch.float32)
    live = scorer.scores(0, len(frames))
    assert np.allclose(live["scores"], offline, atol=1e-5)
    assert np.allclose(live["team"], team, atol=1e-5)


def test_a_final_score_never_changes_and_every_frame_gets_one(sharp_model, match_video_6s):
    _, config, run = _model(sharp_model)
    frames = _frames(config, match_video_6s)
    clip_len = int(config["clip_len"])
    for context in (0, 2, clip_len + 3):
        hop = min(window_stride(config), context + 1)
        scorer = LiveScorer(run, clip_len, hop, context)
        first_seen: dict[int, np.ndarray] = {}
        for image in frames:
            scorer.push([image])
            for t in range(len(first_seen), scorer.final_end):
                first_seen[t] = scorer.scores(t, t + 1)["scores"][0]
        scorer.finish()
        end = scorer.scores(0, len(frames))
        assert len(first_seen) <= len(frames) - min(context, len(frames) - clip_len)
        for t, values in first_seen.items():
            assert np.array_equal(values, end["scores"][t]), (context, t)
        assert (scorer.count[: len(frames)] > 0).all()
        assert np.allclose(end["scores"].sum(1), 1.0, atol=1e-4)


def test_events_come_once_in_order_and_equal_the_offline_post_processing(sharp_model, match_video_6s):
    from util.postprocess import scores_to_events

    _, config, run = _model(sharp_model)
    frames = _frames(config, match_video_6s)
    fps, classes = float(config["fps"]), list(config["classes"])
    post = PostProcess(nms_window_s=0.6, sigma_s=0.2, threshold=0.05)
    clip_len = int(config["clip_len"])
    scorer = LiveScorer(run, clip_len, window_stride(config), clip_len - 1)
    events = LiveEvents(scorer, classes, post, fps)
    given = []
    for image in frames:
        scorer.push([image])
        given += events.new_events()
    scorer.finish()
    given += events.new_events()
    arrays = scorer.scores(0, len(frames))
    expected = scores_to_events(
        arrays["scores"], classes, fps, team_scores=arrays["team"], **post.event_options(fps)
    )
    assert given == expected and len(given) > 3
    assert (
        event_margin(post, fps) == 3 + 4 + 1
    )  # NMS +-3 frames, smoothing radius 4 (sigma 1 frame), the peak


def _chained_scores(rng: np.random.Generator, n: int, classes: int) -> np.ndarray:
    """Scores with many peaks close together, rising and falling in runs (chains of suppression), plateaus."""
    raw = rng.random((n, classes)) ** 4
    for c in range(classes):  # runs of peaks 2-3 frames apart, each higher than the last: NMS chains
        for start in rng.integers(0, n - 20, size=n // 40):
            steps = np.arange(int(rng.integers(3, 7)))
            raw[start + 3 * steps, c] = 0.5 + 0.08 * (steps if rng.random() < 0.5 else steps[::-1])
        raw[rng.integers(0, n - 4, size=n // 60)[:, None] + np.arange(3), c] = 0.7  # flat tops
    scores = np.concatenate([1.0 - raw.max(1, keepdims=True), raw], axis=1)
    return scores


@pytest.mark.parametrize(
    "options",
    [
        {"nms_window": 4},
        {"nms_window": 4, "sigma": 1.0},
        {"nms_window": 5, "soft": True, "sigma": 0.7},
        {"nms_window": 0, "sigma": 1.5},
        {"nms_window": 3, "peaks": False},
        {"nms_window": 6, "class_windows": {"B": 2}},
    ],
    ids=["hard", "hard-smoothed", "soft", "no-nms", "no-peaks", "class-windows"],
)
def test_events_before_the_final_end_are_those_of_every_longer_series(options):
    """What live spotting writes: the events before ``final_events_end`` of a series' first frames are the
    whole series' events there, whatever follows (chains of NMS included, which a fixed margin missed)."""
    from util.postprocess import final_events_end, scores_to_events

    rng = np.random.default_rng(0)
    classes = ["A", "B", "C"]
    for trial in range(3):
        scores = _chained_scores(rng, 400, len(classes))
        displacement = rng.integers(-2, 3, size=len(scores)).astype(np.float32) if trial == 2 else None
        radius = 2 if displacement is not None else 0
        everything = scores_to_events(scores, classes, threshold=0.2, displacement=displacement, **options)
        written: list[dict] = []
        done = 0
        for n in range(1, len(scores) + 1):
            part = scores[:n]
            moved = None if displacement is None else displacement[:n]
            end = final_events_end(part, classes, threshold=0.2, displacement=moved, displacement_radius=radius,
                                   **options)  # fmt: skip
            assert end >= done - 0, "the final end went back"
            events = scores_to_events(part, classes, threshold=0.2, displacement=moved, **options)
            written += [e for e in events if done <= e["frame"] < end]
            done = max(done, end)
        written += [e for e in everything if e["frame"] >= done]
        assert written == everything, (options, trial)
        assert done >= len(scores) - 60, f"events waited too long: final end {done}"


def test_after_a_gap_the_windows_are_back_on_offlines_grid(sharp_model, match_video_6s):
    """A stretch that starts mid-match (after a gap) scores its frames as offline inference of the whole match
    does, once the windows no longer reach back before the stretch."""
    model, config, run = _model(sharp_model)
    frames = _frames(config, match_video_6s)
    clip_len, stride = int(config["clip_len"]), window_stride(config)

    class Source:
        num_frames, name = len(frames), "frames"

        def iter_chunks(self, n):
            yield from (frames[i : i + n] for i in range(0, len(frames), n))

    offline, _, _ = predict_scores(model, config, Source(), device="cpu", precision=torch.float32)
    for gap_end in (5, 6, 7):  # stretches starting off the grid, and on it
        scorer = LiveScorer(run, clip_len, stride, context=clip_len, origin=gap_end)
        for image in frames[gap_end:]:
            scorer.push([image])
        scorer.finish()
        live = scorer.scores(0, len(frames) - gap_end)["scores"]
        assert np.allclose(live[clip_len:], offline[gap_end + clip_len :], atol=1e-5), gap_end


def test_a_latency_below_the_post_processings_window_is_refused():
    with pytest.raises(DataError, match="longer --latency"):
        live_geometry(clip_len=8, stride=4, latency_frames=3, margin=6)
    assert live_geometry(8, 4, latency_frames=20, margin=6) == (14, 4)
    assert live_geometry(8, 4, latency_frames=8, margin=6) == (
        2,
        3,
    )  # a shorter hop: every frame has a window


def _offline_events(model_dir: Path, video: Path, threshold: float) -> list[dict]:
    """Offline inference's events of a whole video (float32), with the model folder's post-processing."""
    from model.folder import ModelFolder
    from util.postprocess import scores_to_events

    model, config, _ = _model(model_dir)
    scores, team, _ = predict_scores(model, config, model_frame_source(config, video), device="cpu",
                                     precision=torch.float32)  # fmt: skip
    post = ModelFolder.of(model_dir).selection["postprocess"]
    fps = float(config["fps"])
    events = scores_to_events(scores, config["classes"], fps, team_scores=team, **post.event_options(fps))
    return [e for e in events if e["score"] >= threshold]


def _unmatched(ours: list[dict], theirs: list[dict]) -> list[dict]:
    """Events of ``ours`` with no event of the same class and team within one frame in ``theirs``."""
    return [e for e in ours if not any(e["label"] == t["label"] and e["team"] == t["team"]
                                       and abs(e["frame"] - t["frame"]) <= 1 for t in theirs)]  # fmt: skip


def test_a_udp_feed_that_drops_and_comes_back(tmp_path):
    """A synthetic match streamed in real time over UDP, stopped for 3 s and restarted: every event is written
    once, in order, and outside the gap they are offline inference's."""

    from model.usage import save_selection

    # This untrained model's peaks of one class come every 3-4 frames: with NMS +-0.4 s (2 frames) no chain of
    # suppression outlasts the budget, so every event is final when written (early_events 0) and equals offline's.
    model_dir = write_tiny_model(tmp_path / "model", sharpen=30.0)
    save_selection(model_dir, {"epoch": 0, "postprocess": {"nms_window_s": 0.4}, "display_threshold": 0.1})
    video = keyframes_every_half_second(
        render_match(tmp_path / "match", seconds=20), tmp_path / "feed.mp4", crf=20
    )
    url = f"udp://127.0.0.1:{free_udp_port()}"
    stop, sent = threading.Event(), {}
    # The events of the last latency_s before a stall wait for it to be seen: at most latency_s + stall_s.
    pause_at, pause_s, latency_s, stall_s = 8.0, 3.0, 3.0, 1.0

    def feed() -> None:
        time.sleep(2.0)  # the reader is listening by then
        sent["packets"] = send_video(video, url, pause=(pause_at, pause_s))
        time.sleep(stall_s + 2.0)  # the reader has seen the feed stop: the frames before are all in
        stop.set()

    threading.Thread(target=feed, daemon=True).start()
    settings = LiveSettings(latency_s=latency_s, connect_timeout_s=20, stall_timeout_s=stall_s,
                            precision=torch.float32)  # fmt: skip
    summary = run_live(model_dir, url, tmp_path / "live", settings, stop=stop)
    live = list(iter_events(tmp_path / "live" / "events.jsonl"))
    assert summary["events"] == len(live) > 0
    keys = [(e["frame"], e["label"]) for e in live]
    assert len(keys) == len(set(keys)), "an event written twice"
    assert [k[0] for k in keys] == sorted(k[0] for k in keys)
    assert len(summary["gaps"]) == 1 and summary["gaps"][0]["seconds"] == pytest.approx(pause_s, abs=0.6)
    assert summary["frames"] == pytest.approx(20 * 5.0 - pause_s * 5.0, abs=3), str(summary)
    assert summary["delay_s"]["p95"] <= latency_s + 1.0, str(summary)
    text = (tmp_path / "live" / "events.csv").read_text().splitlines()
    assert text[0].startswith("frame,time_s,time,label") and len(text) == len(live) + 1

    # Outside the gap the events are offline inference's within one frame. Near it, offline's windows see frames
    # the feed lost: the frames within a window and the post-processing's margin of the gap are left out.
    assert summary["context_frames"] >= 8  # a context of a whole window (clip_len 8): offline's windows
    assert summary["early_events"] == 0
    gap = summary["gaps"][0]
    near = 8 + summary["margin_frames"]
    lost_from, lost_to = round(gap["after_s"] * 5.0) + 1, round((gap["after_s"] + gap["seconds"]) * 5.0)
    offline = _offline_events(model_dir, video, threshold=0.1)

    def outside(events):
        return [e for e in events if not lost_from - near <= e["frame"] < lost_to + near]

    assert len(outside(offline)) >= 8
    assert not _unmatched(outside(live), offline), "written live, not found offline"
    assert not _unmatched(outside(offline), live), "found offline, not written live"


def test_a_feed_that_never_sends_a_frame_ends_with_a_clear_error(sharp_model, tmp_path):
    url = f"udp://127.0.0.1:{free_udp_port()}"
    started = time.monotonic()
    with pytest.raises(DataError, match="no video frame in 2 s"):
        run_live(sharp_model, url, tmp_path / "live", LiveSettings(connect_timeout_s=2, stall_timeout_s=1))
    assert time.monotonic() - started < 15
    assert (tmp_path / "live" / "live_summary.json").is_file()


def test_reading_the_events_while_one_is_being_written_gives_the_complete_ones(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"frame": 3, "label": "PASS"}\n{"frame": 9, "lab')
    assert list(iter_events(path)) == [{"frame": 3, "label": "PASS"}]


def test_a_shorter_nms_window_fits_a_short_latency(sharp_model, tmp_path):
    """--live --latency 1 with the model's NMS window (+-1 s) is refused; with --nms_window_s 0.4 it fits."""
    missing = str(tmp_path / "no-such-feed.ts")
    with pytest.raises(DataError, match="longer --latency"):
        run_live(sharp_model, missing, tmp_path / "a", LiveSettings(latency_s=1.0))
    with pytest.raises(DataError, match="no such file"):  # past the geometry: it would read the feed
        run_live(sharp_model, missing, tmp_path / "b", LiveSettings(latency_s=1.0), nms_window_s=0.4)


def test_a_model_behind_the_feed_skips_frames_and_the_delay_stays_bounded(sharp_model, tmp_path, monkeypatch):
    """Frames waiting longer than --max_lag are skipped (counted), checked before each batch of windows: the delay
    stays within max_lag + the latency + one batch, however long the backlog."""
    import model.predict

    real = model.predict._run_batch

    def slow(*args, **kwargs):
        time.sleep(0.3)
        return real(*args, **kwargs)

    monkeypatch.setattr(model.predict, "_run_batch", slow)
    video = render_match(tmp_path / "match", seconds=20)  # a file: its 100 frames come at once
    settings = LiveSettings(latency_s=3.0, max_lag_s=1.0, batch_size=2, precision=torch.float32)
    summary = run_live(sharp_model, str(video), tmp_path / "live", settings, score_threshold=0.0)
    assert summary["skipped_frames"] > 20, str(summary)
    assert summary["frames"] + summary["skipped_frames"] == 100
    assert summary["delay_s"]["max"] <= 1.0 + 3.0 + 2.0, str(summary)
