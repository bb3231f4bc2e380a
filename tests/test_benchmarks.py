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
