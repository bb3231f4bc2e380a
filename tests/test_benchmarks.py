"""Every benchmark's --quick mode runs to the end (``make bench`` must not rot; its figures are not checked here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import benchmarks.__main__ as bench_main

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_every_benchmark_runs_in_quick_mode(tmp_path):
    names = bench_main.benchmark_names()
    assert {"extract", "inference", "loader", "model", "score"} <= set(names)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # From a scratch folder: the benchmarks cache their inputs under ./bench-out.
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    for name in names:
        assert f"=== {name} done in" in result.stdout, name
    assert "speed-up" in result.stdout and "(same)" in result.stdout  # score: equal to the official evaluator
    assert "closest to ours" in result.stdout  # extract: the baseline's JPEG quality was matched


def test_live_benchmark_prints_real_time_factors_against_offline(tmp_path, monkeypatch, capsys):
    """bench_live --quick: a tiny model, eager fp32 (and bf16 where native), live at 1/2/4/8 s against offline."""
    from benchmarks import bench_live

    monkeypatch.chdir(tmp_path)  # its inputs are cached under ./bench-out
    bench_live.main(["--quick"])
    out = capsys.readouterr().out
    assert "offline (predict_scores, batch 8)" in out and "eager fp32" in out
    # 1 s at 5 fps is below the default post-processing's margin: hard NMS +-5 frames, and the next frame.
    assert "live 1 s" in out and "refused: margin is 6 frames (1.2 s)" in out
    assert "live 4 s" in out and "14 / 4" in out  # context = 20 - 6 frames, hop = the offline stride
    assert "real-time factor" in out and "(below 1 keeps up)" in out


def test_live_benchmark_shrinks_the_nms_window_to_fit_a_short_latency():
    from benchmarks.bench_live import shrunk_post
    from model.live import event_margin
    from util.postprocess import PostProcess

    post = PostProcess(
        nms_window_s=1.0, soft=True, sigma_s=0.1
    )  # the demo's: margin 5 + 2 + 1 frames at 5 fps
    assert event_margin(post, 5.0) == 8
    shrunk = shrunk_post(post, 5.0, latency_frames=5, displacement=0)
    assert shrunk.nms_window_s == pytest.approx(0.4) and shrunk.soft and shrunk.sigma_s == 0.1
    assert event_margin(shrunk, 5.0) == 5
    assert shrunk_post(post, 5.0, latency_frames=3, displacement=0) is None  # not even one frame of NMS fits
