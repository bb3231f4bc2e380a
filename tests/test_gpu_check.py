"""benchmarks/gpu_check.py: without CUDA it says so and exits 0; its steps run on the CPU at toy sizes;
--plan prints, without a GPU, commands every rank accepts and the precision of the GPU planned for; a
command is ended with every process it started, on a timeout and after its exit."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STEPS = ["library", "train_bf16", "train_fp16", "train_tdeed", "train_video", "ddp", "mgpu", "eval",
         "inference_video", "extract_features", "predict_throughput", "train_throughput", "jpeg_decode",
         "video_decode"]  # fmt: skip
TRAIN_STEPS = ["train_bf16", "train_fp16", "train_tdeed", "train_video", "ddp", "mgpu"]


def test_without_cuda_it_says_so_and_exits_0(monkeypatch, capsys, tmp_path):
    import torch

    from benchmarks import gpu_check

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "r.json")]) == 0
    assert "no CUDA device" in capsys.readouterr().out and not (tmp_path / "r.json").exists()
    assert gpu_check.main(["--device", "cuda"]) == 2


def _world_size(command, gpus: int) -> int:
    """The processes a training command runs in, read from the command itself: torchrun's --nproc_per_node,
    -mgpu's one per GPU, else one."""
    if command.launcher:
        return int(command.launcher[command.launcher.index("--nproc_per_node") + 1])
    return gpus if "-mgpu" in command.argv else 1


@pytest.mark.parametrize("gpus", [1, 2, 3, 8])
@pytest.mark.parametrize("capability", ["7.0", "9.0"])
def test_plan_without_a_gpu_gives_batch_sizes_every_rank_accepts_and_the_gpus_precision(
    gpus, capability, monkeypatch, capsys, tmp_path
):
    import torch

    import train_e2e
    from benchmarks import gpu_check

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    real_capability = torch.cuda.get_device_capability
    argv = ["--plan", "--gpus", str(gpus), "--capability", capability, "--work_dir", str(tmp_path)]
    assert gpu_check.main(argv) == 0
    out = capsys.readouterr().out
    assert torch.cuda.get_device_capability is real_capability  # the hypothetical GPU is gone again
    assert not (tmp_path / "videos").exists()  # nothing ran
    native = capability == "9.0"
    auto = "bf16 autocast: this GPU (sm_90) computes bf16 natively" if native else (
        "fp16 autocast + GradScaler: this GPU (sm_70) has no native bf16"
    )  # fmt: skip
    assert f"training with --amp_dtype auto: {auto}" in out

    machine = gpu_check.Machine("cuda", gpus, (int(capability[0]), int(capability[2])))
    steps = gpu_check.build_steps(machine, tmp_path)
    assert [s.name for s in steps] == STEPS
    for i, step in enumerate(steps, 1):  # every step printed, with every command as run
        assert f"{i:2}. {step.name}: " in out
        for command in step.commands if not step.skip else []:
            assert command.text(tmp_path) in out
    ran = {s.name: s for s in steps if not s.skip}
    assert ("train_bf16" in ran) == native and "train_fp16" in ran
    for name in TRAIN_STEPS:
        if name not in ran:
            continue
        step = ran[name]
        for command in step.commands:
            assert command.argv[0] == "train_e2e.py"
            options = train_e2e.get_args(command.argv[1:])  # as train_e2e.py parses it
            world = _world_size(command, gpus)
            options.check_run(world)  # raises DataError on a batch size some rank refuses
            assert world == step.processes and options.batch_size == 4 * world
        expected = {"train_bf16": "bf16", "train_fp16": "fp16 + GradScaler"}.get(
            name, "bf16" if native else "fp16 + GradScaler"
        )
        assert step.precision == expected and f"precision {expected}" in out
    assert ran["ddp"].processes == max(2, gpus) and ran["mgpu"].processes == gpus
    backends = [c.label for c in ran["ddp"].commands]
    assert backends == (["nccl", "gloo"] if gpus == 1 else ["nccl"])
    predict = "bf16" if native else "fp16"
    for name in ("eval", "inference_video", "extract_features", "predict_throughput", "train_throughput"):
        assert ran[name].precision == predict
    assert "--tta flip" in ran["inference_video"].commands[0].text(tmp_path)
    assert "--create_video" in ran["inference_video"].commands[0].argv
    assert str(tmp_path / "videos") == ran["train_video"].commands[0].argv[2]  # FRAME_DIR = the library
    assert "hwaccel" not in out.lower()


def test_plan_reports_a_batch_size_a_rank_refuses(monkeypatch, capsys, tmp_path):
    """The old gpu-check's fixed --batch_size 4 with three processes: the plan says so and exits 1."""
    import torch

    from benchmarks import gpu_check

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    plain = gpu_check.train_argv

    def fixed_batch(*args, **kwargs):
        argv = plain(*args, **kwargs)
        argv[argv.index("--batch_size") + 1] = "4"
        return argv

    monkeypatch.setattr(gpu_check, "train_argv", fixed_batch)
    assert gpu_check.main(["--plan", "--gpus", "3", "--capability", "8.0", "--work_dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "REFUSED by train_e2e.py: --batch_size 4 must be a multiple of -ag (1) x processes (3)" in out


def test_plan_without_a_gpu_needs_the_capability(monkeypatch, capsys):
    import torch

    from benchmarks import gpu_check

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--plan", "--gpus", "2"]) == 2
    assert "--capability X.Y" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        gpu_check.get_args(["--gpus", "2"])  # describes a plan's machine only
    with pytest.raises(SystemExit):
        gpu_check.get_args(["--plan", "--capability", "nine"])


def test_plan_commands_are_shell_lines_with_the_work_folder_as_a_variable(tmp_path):
    from benchmarks.gpu_check import Command

    root = tmp_path / "work"
    argv = ["inference_spot.py", "--video", str(root / "a b" / "x$y.mp4"), "--output_dir", str(root)]
    text = Command(argv).text(root)
    assert text.startswith('python inference_spot.py --video "$WORK/a b/x\\$y.mp4" --output_dir "$WORK"')
    shell = f"WORK={shlex.quote(str(root))}; printf '%s\\n' {text.split(' ', 1)[1]}"
    printed = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, check=True).stdout
    assert printed.splitlines() == argv


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _running(pid):
            return True
        time.sleep(0.05)
    return False


# A launcher (the child) whose own child (a rank) holds on: it writes the rank's pid, then waits or exits. The
# rank is in the launcher's process group, or like torchrun's ranks in a session of its own.
LAUNCHER = """
import subprocess, sys, time
own_session = sys.argv[3] == "own session"
rank = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=own_session)
open(sys.argv[1], "w").write(str(rank.pid))
if sys.argv[2] == "wait":
    time.sleep(60)
"""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads /proc")
@pytest.mark.parametrize("session", ["same group", "own session"])
@pytest.mark.parametrize("how", ["wait", "exit"])
def test_a_command_is_ended_with_every_process_it_started(how, session, tmp_path):
    """On a timeout (the NCCL retry) and after a launcher's exit, no rank it started is left holding a GPU,
    even one in a session of its own (torchrun starts its ranks so)."""
    from benchmarks.gpu_check import run_process

    pid_file = tmp_path / "rank.pid"
    command = [sys.executable, "-c", LAUNCHER, str(pid_file), how, session]
    rank = None
    try:
        started = time.monotonic()
        if how == "wait":
            with pytest.raises(subprocess.TimeoutExpired):
                run_process(command, timeout_s=3, grace_s=2)
        else:
            run_process(command, timeout_s=30, grace_s=2)
        assert time.monotonic() - started < 20
        rank = int(pid_file.read_text())
        assert _wait_gone(rank), "the launcher's child outlived it"
    finally:
        if rank is not None and _running(rank):
            os.kill(rank, 9)


@pytest.mark.slow
def test_every_step_runs_on_the_cpu_at_toy_sizes(tmp_path, capsys):
    from benchmarks import gpu_check

    report, work = tmp_path / "gpu-report.json", tmp_path / "work"
    command = [sys.executable, "-m", "benchmarks.gpu_check", "--device", "cpu", "--quick",
               "--out", str(report), "--work_dir", str(work)]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    data = json.loads(report.read_text())
    status = {row["step"]: row["status"] for row in data["steps"]}
    assert list(status) == STEPS
    assert status.pop("mgpu") == status.pop("train_fp16") == "skipped" and set(status.values()) == {"ok"}
    rows = {row["step"]: row for row in data["steps"]}
    steps = {name: row["result"] for name, row in rows.items()}
    assert steps["train_bf16"]["resume_bit_exact"] is True  # on a CPU --resume must match exactly
    for name in ("train_bf16", "train_tdeed", "train_video"):  # the precision planned is the one resolved
        assert steps[name]["resolved_precision"] == rows[name]["precision"]
    assert steps["ddp"]["backend"] == "gloo" and steps["ddp"]["processes"] == rows["ddp"]["processes"] == 2
    assert rows["ddp"]["batch"] == 8 and steps["ddp"]["precision"] == rows["ddp"]["precision"]
    assert "team_at1" in steps["eval"]  # the T-DEED model has the team head
    assert steps["inference_video"]["annotated_mp4_kb"] > 0
    assert steps["extract_features"]["precision"].split(" ")[0] == rows["extract_features"]["precision"]
    assert set(steps["predict_throughput"]["frames_per_s"]) == {"rn18_tsm"}
    assert steps["jpeg_decode"]["nvjpeg"].startswith("skipped") and "step" in result.stdout
    assert set(steps["video_decode"]) == {"cpu_pyav_frames_per_s", "size"}  # no GPU decoding tried
    # The plan is the run's list printed: the same commands.
    assert gpu_check.main(["--plan", "--device", "cpu", "--quick", "--work_dir", str(work)]) == 0
    plan = capsys.readouterr().out
    run_commands = [c for row in data["steps"] for c in row["commands"] if row["status"] == "ok"]
    assert run_commands and all(c in plan for c in run_commands)
