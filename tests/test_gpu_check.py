"""benchmarks/gpu_check.py: without CUDA it says so and exits 0; its steps run on the CPU at toy sizes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STEPS = ["library", "train_bf16", "train_fp16", "ddp", "mgpu", "predict_throughput", "train_throughput",
         "jpeg_decode", "video_decode"]  # fmt: skip


def test_without_cuda_it_says_so_and_exits_0(monkeypatch, capsys, tmp_path):
    import torch

    from benchmarks import gpu_check

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "r.json")]) == 0
    assert "no CUDA device" in capsys.readouterr().out and not (tmp_path / "r.json").exists()
    assert gpu_check.main(["--device", "cuda"]) == 2


@pytest.mark.slow
def test_every_step_runs_on_the_cpu_at_toy_sizes(tmp_path):
    report = tmp_path / "gpu-report.json"
    command = [
        sys.executable,
        "-m",
        "benchmarks.gpu_check",
        "--device",
        "cpu",
        "--quick",
        "--out",
        str(report),
    ]
    result = subprocess.run(
        command,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    data = json.loads(report.read_text())
    status = {row["step"]: row["status"] for row in data["steps"]}
    assert list(status) == STEPS
    assert status.pop("mgpu") == status.pop("train_fp16") == "skipped" and set(status.values()) == {"ok"}
    steps = {row["step"]: row["result"] for row in data["steps"]}
    assert steps["train_bf16"]["resume_bit_exact"] is True  # on a CPU --resume must match exactly
    assert steps["ddp"]["backend"] == "gloo" and steps["ddp"]["processes"] == 2
    assert set(steps["predict_throughput"]["frames_per_s"]) == {"rn18", "rn18_tsm"}
    assert steps["jpeg_decode"]["nvjpeg"].startswith("skipped") and "step" in result.stdout
