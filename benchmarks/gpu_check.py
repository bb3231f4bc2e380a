"""Prove every CUDA path on the GPU(s) at hand and measure them: ``make gpu-check``.

``python -m benchmarks.gpu_check`` renders a tiny synthetic library, runs each step below, timed, and writes
the results to ``gpu-report.json`` (``--out``) and a table with the precision each step computed in:

- ``library``: render 7 games (4 train, 1 val, 2 test), extract their frames, parse the labels against the
  frames and against the video library itself.
- ``train_bf16`` / ``train_fp16``: ``train_e2e.py``, ``rny002_gsm`` + ``gru``, GPU augmentation and mixup, two
  short epochs under ``--amp_dtype bf16`` and ``--amp_dtype fp16`` (a GradScaler), ``--deterministic``: finite
  losses, the checkpoint loads back, config.json records the planned precision, and a run stopped after epoch
  0 then resumed reaches the same weights bit for bit. ``train_bf16`` is skipped on a GPU without native bf16
  (compute capability below 8.0: bf16 would be emulated; ``--amp_dtype auto`` trains there in fp16).
- ``train_tdeed`` (T-DEED's Ball recipe: ``-t tdeed --displacement 4 --team``) and ``train_video`` (FRAME_DIR
  = the video library, clips decoded on the fly): one epoch each in ``--amp_dtype auto``.
- ``ddp``: ``torchrun --standalone``, one process per GPU, NCCL (with one GPU: two processes on it, NCCL
  first, gloo on CUDA tensors when NCCL refuses a shared GPU). ``mgpu``: the seed's ``-mgpu`` (one process per
  local GPU, spawned without torchrun). ``--batch_size`` is 4 clips per process times the processes: every
  rank accepts it.
- ``eval``: ``eval_soccernet_ball.py`` on the T-DEED model, predicting the test split again
  (``--window_overlap 0``) and scoring it (Team mAP, the displacement). ``inference_video``:
  ``inference_spot.py --video`` on a test game's file with the T-DEED model, ``--tta flip`` and
  ``--create_video``. ``extract_features``: ``extract_features.py`` with the video-library model's backbone,
  from the video library.
- ``predict_throughput`` / ``train_throughput``: forward frames/s of the README's backbones + ``gru`` at
  224x398 (1, 4 and 8 clips of 32 frames), and forward + backward + AdamW frames/s of ``rny002_gsm`` /
  ``rny008_gsm`` at clip length 100, in the GPU's mixed precision. ``jpeg_decode``: nvJPEG (batched) against
  one OpenCV worker. ``video_decode``: PyAV's CPU decoding rate (one video-library loader worker).

Each command runs in its own process group, ended on a timeout or when the command exits with every process it
started (its environment carries a tag): no rank is left holding a GPU.

``--plan [--gpus N] [--capability X.Y]`` runs nothing and needs no GPU: it prints every step's commands,
processes, batch size and precision for N GPUs of that compute capability (default: the GPUs here), from the
very list a run executes, so that a node can be checked before it is reserved.

A run takes a few minutes on one GPU, never downloads anything (``--no_pretrained`` everywhere), and exits
non-zero if any CUDA path fails. Without CUDA it prints so and exits 0. ``--device cpu --quick`` runs the same
steps on the CPU at toy sizes (the CUDA-only ones skipped; the scripts in this process, which starts faster):
the test suite does, so the script cannot rot.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import platform
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BACKBONES = ("rn18", "rn18_tsm", "rn18_gsm", "rn50", "rny002", "rny002_gsm", "rny008", "rny008_gsm")
HEIGHT, WIDTH = 224, 398
PER_PROCESS_BATCH = 4  # clips per optimiser step and process: --batch_size is this times the processes
SPLIT_COUNTS = "4,1,2,0"  # train, val, test and challenge games of the synthetic library
SEED = 1
# The sizes of the short runs: on a GPU, and at toy size (--quick).
SIZE: dict[bool, dict[str, int]] = {
    False: {"seconds": 12, "height": HEIGHT, "clip_len": 32, "epoch_num_frames": 1024, "workers": 4},
    True: {"seconds": 3, "height": 48, "clip_len": 8, "epoch_num_frames": 64, "workers": 0},
}
COMMAND_TIMEOUT_S = 600
SHARED_GPU_NCCL_TIMEOUT_S = 120  # two NCCL ranks on one GPU are refused, or hang: a short limit before gloo
GRACE_S = 10.0  # after SIGTERM, the time a process group has before SIGKILL


class Skip(Exception):
    """A step that cannot run here (no CUDA, a GPU without native bf16): reported, not a failure."""


# ---- processes: each command in its own process group, ended whole with everything it started

TAG_VAR = "SPOT_GPU_CHECK_COMMAND"  # set in a command's environment, inherited by every process it starts


def _remaining(pgid: int, tag: str) -> list[int]:
    """The processes of a command still running (a zombie, dead but not yet reaped, is not): those of its
    process group, and those whose environment carries its tag. torchrun starts each rank in a session of
    its own, and a rank outlives a killed launcher with init as its parent: only the tag still finds it."""
    if not Path("/proc").is_dir():  # no /proc (macOS): the process group only
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        return [pgid]
    needle, found = f"{TAG_VAR}={tag}".encode(), []
    for folder in Path("/proc").iterdir():
        if not folder.name.isdigit():
            continue
        try:
            fields = (folder / "stat").read_text().rsplit(")", 1)[1].split()  # after "pid (command name)"
            if fields[0] in ("Z", "X"):
                continue
            if int(fields[2]) == pgid or needle in (folder / "environ").read_bytes().split(b"\0"):
                found.append(int(folder.name))
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile, or not ours to read
    return found


def end_command(proc: subprocess.Popen, tag: str, grace_s: float = GRACE_S) -> None:
    """End ``proc`` (started with ``start_new_session``) and every process it started: its process group
    and every process carrying its tag (torchrun's ranks, -mgpu's spawned processes, loader workers).
    SIGTERM first (torchrun then stops its ranks itself), SIGKILL to what still runs after ``grace_s``:
    none is left holding a GPU."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        proc.poll()  # reap the leader, so that it does not count as running
        pids = _remaining(proc.pid, tag)
        if not pids:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            proc.poll()
            if not _remaining(proc.pid, tag):
                return
            time.sleep(0.1)
    proc.poll()


def run_process(
    command: list[str], timeout_s: float, env: dict[str, str] | None = None, grace_s: float = GRACE_S
) -> str:
    """Run ``command`` in a process group of its own, within ``timeout_s``; returns its output (stdout and
    stderr). Whatever happens (an exit, a timeout, an interruption), it is ended then with everything it
    started (``end_command``). subprocess.TimeoutExpired past ``timeout_s``; RuntimeError with the output's
    tail on a non-zero exit."""
    tag = f"{os.getpid()}-{uuid.uuid4().hex}"
    env = dict(os.environ if env is None else env, **{TAG_VAR: tag})
    # The output goes to a file, not a pipe: a lingering child cannot keep the reading from ending.
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=timeout_s)
        finally:
            end_command(proc, tag, grace_s)
        out.seek(0)
        text = out.read()
    if code != 0:
        raise RuntimeError(f"exit {code}: " + "\n".join(text.strip().splitlines()[-15:]))
    return text


# ---- the machine and its precision


@dataclass(frozen=True)
class Machine:
    """What a run is for: ``gpus`` GPUs of compute ``capability`` (device "cuda"), or the CPU; toy size or
    not."""

    device: str
    gpus: int = 0
    capability: tuple[int, int] | None = None
    quick: bool = False

    @classmethod
    def here(cls, device: str, quick: bool) -> Machine:
        import torch

        if device != "cuda":
            return cls("cpu", 0, None, quick)
        count = torch.cuda.device_count()
        # Mixed GPUs: the weakest is planned for (each rank resolves the precision of its own GPU).
        capability = min(torch.cuda.get_device_capability(i) for i in range(count))
        return cls("cuda", count, capability, quick)

    @property
    def sm(self) -> str:
        return "sm_{}{}".format(*self.capability) if self.capability else "cpu"

    def describe(self) -> str:
        if self.device != "cuda":
            return "the CPU"
        return "{} GPU(s) of compute capability {}.{} ({})".format(self.gpus, *self.capability, self.sm)


@contextlib.contextmanager
def _as_capability(machine: Machine) -> Iterator[None]:
    """The toolkit's own precision rules (``train_precision``, ``cuda_amp_dtype``) answered for
    ``machine``'s GPU, which need not be here: meanwhile torch.cuda.get_device_capability says its
    capability."""
    import torch

    if machine.device != "cuda":
        yield
        return
    real = torch.cuda.get_device_capability
    torch.cuda.get_device_capability = lambda device=None: machine.capability
    try:
        yield
    finally:
        torch.cuda.get_device_capability = real


def planned_train_precision(machine: Machine, options: Any) -> Any:
    """The ``model.train.loop.Precision`` a training with ``options`` (TrainOptions) resolves to on
    ``machine``."""
    import torch

    from model.train.loop import train_precision

    with _as_capability(machine):
        return train_precision(options, torch.device(machine.device))


def planned_predict_precision(machine: Machine) -> str:
    """The autocast of eval, inference and feature extraction on ``machine`` (``model.predict.autocast``'s
    default): "bf16", "fp16" or "fp32"."""
    import torch

    from model.predict import cpu_amp_enabled, cuda_amp_dtype

    if machine.device != "cuda":
        return "bf16" if cpu_amp_enabled() else "fp32"
    with _as_capability(machine):
        return "bf16" if cuda_amp_dtype(torch.device("cuda")) == torch.bfloat16 else "fp16"


def precision_label(precision: Any) -> str:
    """A training Precision in short: "bf16", "fp16 + GradScaler" or "fp32"."""
    return precision.name + (" + GradScaler" if precision.scaled else "")


def _predict_why(machine: Machine, predict: str) -> str:
    if machine.device != "cuda":
        return f"{predict}: model.predict.autocast on this CPU (bf16 where it is native, else fp32)"
    return f"{predict} autocast, no GradScaler: model.predict.autocast on {machine.sm} (bf16 where native)"


# ---- commands and steps


@dataclass
class Command:
    """One script run: ``python [launcher...] argv...`` in the repository."""

    argv: list[str]  # the script (a path in the repository) or -m module, then its arguments
    label: str = ""  # what the command is within its step ("nccl", "stopped after epoch 0", ...)
    launcher: list[str] = field(default_factory=list)  # -m torch.distributed.run ...: always a subprocess
    timeout_s: float = COMMAND_TIMEOUT_S
    threads: int | None = None  # OMP_NUM_THREADS of each process, so that processes share the cores
    note: str = ""  # shown by the plan

    def text(self, root: Path) -> str:
        """The command as a shell line, with the work folder as $WORK."""
        return " ".join(_shell_word(a, root) for a in ["python", *self.launcher, *self.argv])


def _shell_word(arg: str, root: Path) -> str:
    """``arg`` quoted for a shell, ``root`` written $WORK (in double quotes where the rest needs quoting)."""
    top = str(root)
    if arg != top and not arg.startswith(top + os.sep):
        return shlex.quote(arg)
    rest = arg[len(top) :]
    if rest and shlex.quote(rest) == rest:
        return "$WORK" + rest
    return '"$WORK' + re.sub(r'(["$`\\])', r"\\\1", rest) + '"'


@dataclass
class Step:
    """A step of the check: its commands (none: measured in this process), processes, batch size and
    precision, and ``run``, which runs exactly these commands and checks what they wrote."""

    name: str
    what: str
    run: Callable[[Step, Runner], dict]
    commands: list[Command] = field(default_factory=list)
    processes: int = 1
    batch: int | None = None  # clips per step over all processes (training), or per forward pass
    batch_unit: str = "clips"
    precision: str = ""  # "bf16", "fp16 + GradScaler", "fp16" or "fp32"
    precision_why: str = ""
    skip: str | None = None  # why the step does not run on this machine
    needs: tuple[str, ...] = ()  # the steps whose outputs it uses
    refused: str | None = None  # what train_e2e.py refuses in these commands (TrainOptions.check_run)


class Runner:
    """Runs a step's commands: a subprocess in its own process group (a launcher's, and any on CUDA), or in
    this process (on the CPU: a script's ``main``, as the test suite calls it, without an interpreter's
    start-up)."""

    def __init__(self, in_process: bool):
        self.in_process = in_process

    def __call__(self, command: Command) -> str:
        """Run ``command``; its output (a subprocess's; in this process it goes to stderr as it comes)."""
        if self.in_process and not command.launcher:
            self._in_process(command.argv)
            return ""
        env = dict(os.environ, PYTHONPATH=str(REPO))
        if command.threads is not None:
            env["OMP_NUM_THREADS"] = str(command.threads)
        return run_process([sys.executable, *command.launcher, *command.argv], command.timeout_s, env)

    @staticmethod
    def _in_process(argv: list[str]) -> None:
        from util.cli import run_main

        if str(REPO) not in sys.path:
            sys.path.insert(0, str(REPO))
        name, rest = (argv[1], argv[2:]) if argv[0] == "-m" else (Path(argv[0]).stem, argv[1:])
        module = importlib.import_module(name)
        with contextlib.redirect_stdout(sys.stderr), _torch_settings_kept():
            try:
                code = run_main(module.main, module.get_args(rest))
            except SystemExit as e:  # a parser's refusal
                code = e.code if isinstance(e.code, int) else 2
        if code != 0:
            raise RuntimeError(f"exit {code}: {shlex.join(argv)}")


@contextlib.contextmanager
def _torch_settings_kept() -> Iterator[None]:
    """The process-wide settings a script may change (``--deterministic``: deterministic algorithms, cuDNN's
    flags, cuBLAS's workspace; the threads) as they were before it, for the steps after it."""
    import torch

    cudnn = torch.backends.cudnn
    deterministic = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    flags, threads = (cudnn.benchmark, cudnn.deterministic), torch.get_num_threads()
    workspace = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        cudnn.benchmark, cudnn.deterministic = flags
        torch.set_num_threads(threads)
        if workspace is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = workspace


@dataclass(frozen=True)
class Paths:
    """Where the steps write, under the work folder."""

    root: Path

    @property
    def videos(self) -> Path:
        return self.root / "videos"

    @property
    def frames(self) -> Path:
        return self.root / "frames"

    @property
    def data(self) -> Path:
        """The labels parsed against the frame folders."""
        return self.root / "data"

    @property
    def data_video(self) -> Path:
        """The labels parsed against the video library, to train and extract from the videos."""
        return self.root / "data_video"

    def test_video(self) -> Path:
        """The first test game's video (known before rendering: the library is seeded)."""
        from synthetic.library import SPLITS, library_splits

        counts = dict(zip(SPLITS, (int(x) for x in SPLIT_COUNTS.split(",")), strict=True))
        game = library_splits(sum(counts.values()), SEED, counts)["test"][0]
        return self.videos / game / "224p.mp4"


def train_argv(
    machine: Machine,
    data: Path,
    frames: Path,
    save_dir: Path,
    *extra: str,
    processes: int = 1,
    epochs: int = 2,
) -> list[str]:
    """A short ``train_e2e.py`` run of ``rny002_gsm`` (``extra`` adds the head and more), GPU augmentation and
    mixup; 4 clips per process and step (``--batch_size`` counts all processes), as many frames per process as
    one process alone has."""
    size = SIZE[machine.quick]
    return [
        "train_e2e.py", str(data), str(frames), "-m", "rny002_gsm", "-s", str(save_dir),
        "--clip_len", str(size["clip_len"]), "--batch_size", str(PER_PROCESS_BATCH * processes),
        "--num_epochs", str(epochs), "--warm_up_epochs", "1",
        "--epoch_num_frames", str(size["epoch_num_frames"] * processes), "--start_val_epoch", str(epochs - 1),
        "--no_pretrained", "--device", machine.device, "--mixup", "--augment", "-j", str(size["workers"]),
        *extra,
    ]  # fmt: skip


def train_options(argv: list[str]) -> Any:
    """A train_e2e.py command's TrainOptions, as train_e2e.py parses them."""
    import train_e2e

    return train_e2e.get_args(argv[1:])


def _flag(command: Command, flag: str) -> str:
    return command.argv[command.argv.index(flag) + 1]


def _train_step(
    machine: Machine,
    name: str,
    what: str,
    commands: list[Command],
    processes: int = 1,
    skip: str | None = None,
    run: Callable[[Step, Runner], dict] | None = None,
) -> Step:
    """A training step: its batch size checked as train_e2e.py checks it with ``processes`` ranks, its
    precision the one the training resolves on ``machine``."""
    from util.io import DataError

    options = train_options(commands[0].argv)
    precision = planned_train_precision(machine, options)
    refused = None
    for command in commands:
        try:
            train_options(command.argv).check_run(processes)
        except DataError as e:
            refused = str(e)
    return Step(
        name,
        what,
        run or _run_train,
        commands,
        processes=processes,
        batch=options.batch_size,
        precision=precision_label(precision),
        precision_why=precision.text(),
        skip=skip,
        needs=("library",),
        refused=refused,
    )


def _check_model(step: Step, command: Command) -> dict[str, Any]:
    """What ``command`` trained: finite losses, a selection, the checkpoint loads back, and config.json
    records the precision the plan says."""
    from model.common import load_model
    from util.io import load_json

    model_dir = Path(_flag(command, "-s"))
    history = load_json(model_dir / "loss.json")
    losses = [h["train"] for h in history] + [h["val"] for h in history if h.get("val") is not None]
    if not all(math.isfinite(x) for x in losses):
        raise RuntimeError(f"non-finite loss: {losses}")
    if not (model_dir / "selection.json").is_file():
        raise RuntimeError(f"{model_dir}: no selection.json")
    _, _, epoch = load_model(model_dir, device=_flag(command, "--device"))
    resolved = load_json(model_dir / "config.json")["train"]["resolved"]["precision"]
    planned = step.precision.split(" ")[0]
    if resolved != planned:
        raise RuntimeError(f"the plan said {planned}, the training resolved {resolved}")
    result = {
        "losses": [round(x, 4) for x in losses],
        "selected_epoch": epoch,
        "resolved_precision": resolved,
    }
    rates = [h["frames_per_s"] for h in history if h.get("frames_per_s")]
    if rates:  # the last epoch's: the first one's includes the warm-up (cuDNN's autotuner, the allocator)
        result["train_frames_per_s"] = round(rates[-1], 1)
    return result


def _run_train(step: Step, runner: Runner) -> dict[str, Any]:
    (command,) = step.commands
    runner(command)
    return _check_model(step, command)


def _run_train_resume(step: Step, runner: Runner) -> dict[str, Any]:
    """The whole run, then one stopped after epoch 0 and resumed: the same weights, bit for bit."""
    whole, stop, resume = step.commands
    started = time.perf_counter()
    output = runner(whole)
    seconds = time.perf_counter() - started
    result = _check_model(step, whole)
    output += runner(stop) + runner(resume)
    last = [Path(_flag(c, "-s")) / "checkpoint_001.pt" for c in (whole, resume)]
    if not _weights_equal(*last):
        # torch.use_deterministic_algorithms(warn_only=True) names each op that has no deterministic kernel.
        ops = sorted({line.strip()[:160] for line in output.splitlines() if "deterministic" in line.lower()})
        raise RuntimeError(
            "--deterministic --resume did not reach the uninterrupted run's weights"
            + (f"; the runs warned: {' | '.join(ops)}" if ops else "")
        )
    return result | {"resume_bit_exact": True, "whole_run_s": round(seconds, 1)}


def _weights_equal(a: Path, b: Path) -> bool:
    import torch

    wa, wb = (torch.load(p, map_location="cpu", weights_only=True) for p in (a, b))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _run_ddp(step: Step, runner: Runner) -> dict[str, Any]:
    """Each command in turn (NCCL, then gloo where the plan has it as the fallback) until one works."""
    tried: dict[str, str] = {}
    for i, command in enumerate(step.commands):
        try:
            runner(command)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            tried[command.label] = f"failed: {(str(e).splitlines() or [''])[-1][:200]}"
            if i + 1 < len(step.commands):
                continue  # NCCL refuses two ranks on one GPU: gloo on CUDA tensors next
            raise RuntimeError(f"no DDP backend worked: {tried}") from e
        tried[command.label] = "ok"
        precision = _check_model(step, command)["resolved_precision"]
        return {"processes": step.processes, "backend": command.label, "tried": tried, "precision": precision}
    raise RuntimeError("no DDP command")


def _library_step(p: Paths, size: dict[str, int]) -> Step:
    splits, height = str(p.videos / "splits.json"), str(size["height"])
    commands = [
        Command(["-m", "synthetic.library", str(p.videos), "--split_counts", SPLIT_COUNTS,
                 "--seconds", str(size["seconds"]), "--seed", str(SEED), "-j", "2"], "render"),
        Command(["frames_as_jpg_soccernet_ball.py", str(p.videos), "-o", str(p.frames), "--height", height,
                 "-j", "2"], "extract"),
        Command(["parse_soccernet_ball.py", str(p.videos), str(p.frames), "-o", str(p.data),
                 "--splits", splits], "parse against the frames"),
        Command(["parse_soccernet_ball.py", str(p.videos), str(p.videos), "-o", str(p.data_video),
                 "--splits", splits, "--sample_fps", "25", "--height", height], "parse against the videos"),
    ]  # fmt: skip

    def run(step: Step, runner: Runner) -> dict[str, Any]:
        for command in step.commands:
            runner(command)
        return {
            "videos": len(list(p.videos.rglob("*.mp4"))),
            "frames": sum(1 for _ in p.frames.rglob("*.jpg")),
        }

    what = (
        "render the synthetic library, extract its frames, parse the labels against the frames and the videos"
    )
    return Step("library", what, run, commands)


def _train_steps(machine: Machine, p: Paths) -> list[Step]:
    """The gru recipe in each explicit precision (with --resume's exactness), the recipes a user runs in
    --amp_dtype auto (the default), DDP over every GPU and -mgpu."""
    root, on_cuda, steps = p.root, machine.device == "cuda", []
    for dtype in ("bf16", "fp16"):
        whole, parts = root / f"train_{dtype}", root / f"train_{dtype}_parts"
        extra = ("-t", "gru", "--amp_dtype", dtype, "--deterministic")
        skip = None
        if not on_cuda and dtype == "fp16":
            skip = "fp16 autocast is a CUDA path; on a CPU this run repeats train_bf16's"
        if on_cuda and dtype == "bf16" and machine.capability < (8, 0):
            skip = (
                f"{machine.sm} has no native bf16 (compute capability below 8.0): --amp_dtype bf16 would be "
                "emulated; --amp_dtype auto trains in fp16 + GradScaler"
            )
        commands = [
            Command(train_argv(machine, p.data, p.frames, whole, *extra), "whole run"),
            Command(train_argv(machine, p.data, p.frames, parts, *extra, "--stop_after_epoch", "0"),
                    "stopped after epoch 0"),
            Command(train_argv(machine, p.data, p.frames, parts, *extra, "--resume"), "resumed"),
        ]  # fmt: skip
        what = (
            f"gru, --amp_dtype {dtype}, 2 epochs: the checkpoint loads back; stopped after epoch 0 and "
            "resumed, the same weights bit for bit (--deterministic)"
        )
        steps.append(_train_step(machine, f"train_{dtype}", what, commands, skip=skip, run=_run_train_resume))

    recipes = [
        ("train_tdeed", "T-DEED's Ball recipe: its head, the displacement head and the team head", p.data,
         p.frames, ("-t", "tdeed", "--displacement", "4", "--team")),
        ("train_video", "gru, FRAME_DIR = the video library (clips decoded on the fly)", p.data_video,
         p.videos, ("-t", "gru")),
    ]  # fmt: skip
    for name, what, data, frames, extra in recipes:
        command = Command(train_argv(machine, data, frames, root / name, *extra, epochs=1))
        steps.append(_train_step(machine, name, f"{what}, --amp_dtype auto, 1 epoch", [command]))

    # DDP over every GPU; with one GPU, two processes share it (NCCL may refuse: then gloo on CUDA tensors).
    procs = max(2, machine.gpus)
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(procs)]
    threads = max(1, (os.cpu_count() or 2) // procs)
    backends = ["gloo"] if not on_cuda else ["nccl", "gloo"] if machine.gpus == 1 else ["nccl"]
    commands = []
    for backend in backends:
        extra = ("-t", "gru", "--dist_backend", backend)
        argv = train_argv(
            machine, p.data, p.frames, root / f"ddp_{backend}", *extra, processes=procs, epochs=1
        )
        shared = backend == "nccl" and machine.gpus == 1
        note = "only if NCCL refuses two processes on one GPU" if backend == "gloo" and on_cuda else ""
        timeout = SHARED_GPU_NCCL_TIMEOUT_S if shared else COMMAND_TIMEOUT_S
        commands.append(Command(argv, backend, launcher, timeout, threads, note))
    where = "on the CPU" if not on_cuda else "over all GPUs" if machine.gpus > 1 else "sharing the one GPU"
    what = f"torchrun, {procs} processes {where}, {backends[0].upper()}, 1 epoch"
    steps.append(_train_step(machine, "ddp", what, commands, processes=procs, run=_run_ddp))

    gpus = max(1, machine.gpus)
    argv = train_argv(
        machine, p.data, p.frames, root / "mgpu", "-t", "gru", "-mgpu", processes=gpus, epochs=1
    )
    skip = None if on_cuda else "-mgpu without GPUs is a plain one-process run"
    what = "the seed's -mgpu, 1 epoch: " + (
        f"{gpus} processes spawned, one per GPU" if gpus > 1 else "one GPU, so one process (nothing spawned)"
    )
    steps.append(_train_step(machine, "mgpu", what, [Command(argv)], processes=gpus, skip=skip))
    return steps


def _predict_steps(machine: Machine, p: Paths) -> list[Step]:
    """eval, inference on a video file and feature extraction, each on a model a training step wrote, in the
    predict path's precision."""
    root, device = p.root, machine.device
    predict = planned_predict_precision(machine)
    results, infer_out, features = root / "eval" / "results.json", root / "inference_video", root / "features"

    def evaluate(step: Step, runner: Runner) -> dict[str, Any]:
        from util.io import load_json

        runner(step.commands[0])
        return {metric: round(values["mAP"], 4) for metric, values in load_json(results).items()}

    def infer(step: Step, runner: Runner) -> dict[str, Any]:
        from util.io import load_json

        runner(step.commands[0])
        video = infer_out / "annotated.mp4"
        if not video.is_file() or video.stat().st_size == 0:
            raise RuntimeError(f"{video}: no annotated video")
        predictions = load_json(infer_out / "predictions.json")
        events = predictions.get("events", []) if isinstance(predictions, dict) else predictions
        return {"annotated_mp4_kb": round(video.stat().st_size / 1024, 1), "events": len(events)}

    def extract(step: Step, runner: Runner) -> dict[str, Any]:
        import numpy as np

        from util.io import load_json

        runner(step.commands[0])
        used = str(load_json(features / "features.json").get("precision", ""))
        arrays = [np.load(f) for f in features.rglob("*.npy")]
        if not arrays or not all(np.isfinite(a.astype(np.float32)).all() for a in arrays):
            raise RuntimeError(f"{features}: no features, or non-finite ones")
        if used.split(" ")[0] != step.precision:
            raise RuntimeError(f"the plan said {step.precision}, features.json records {used!r}")
        return {"videos": len(arrays), "feature_dim": int(arrays[0].shape[1]), "precision": used}

    evaluate_argv = [
        "eval_soccernet_ball.py", str(p.data), str(p.frames), str(root / "train_tdeed"), "-s", "test",
        "--window_overlap", "0", "--results_json", str(results),
    ]  # fmt: skip
    infer_argv = [
        "inference_spot.py", "--model_dir", str(root / "train_tdeed"), "--video", str(p.test_video()),
        "--output_dir", str(infer_out), "--tta", "flip", "--create_video", "--batch_size", "8",
        "--device", device,
    ]  # fmt: skip
    extract_argv = [
        "extract_features.py", str(p.data_video), str(p.videos), "-o", str(features),
        "--model_dir", str(root / "train_video"), "--splits", "val", "--batch_size", "64", "--device", device,
    ]  # fmt: skip
    common: dict[str, Any] = {"precision": predict, "precision_why": _predict_why(machine, predict)}
    what = (
        "eval_soccernet_ball.py on the T-DEED model: the test split predicted again (--window_overlap 0; "
        "eval takes CUDA when there is one) and scored, with Team mAP and the displacement"
    )
    steps = [Step("eval", what, evaluate, [Command(evaluate_argv)], needs=("train_tdeed",), **common)]
    what = (
        "inference_spot.py --video on a test game's file with the T-DEED model, --tta flip (left and right "
        "swapped in the mirror), --create_video (annotated.mp4)"
    )
    steps.append(
        Step("inference_video", what, infer, [Command(infer_argv)], batch=8, needs=("train_tdeed",), **common)
    )
    what = "extract_features.py: the video-library model's backbone over the val game, from the video library"
    steps.append(
        Step(
            "extract_features",
            what,
            extract,
            [Command(extract_argv)],
            batch=64,
            batch_unit="frames",
            needs=("train_video",),
            **common,
        )
    )
    return steps


def build_steps(machine: Machine, root: Path) -> list[Step]:
    """Every step of the check on ``machine``, its commands writing under ``root``: what a run executes and
    what ``--plan`` prints."""
    p = Paths(root)
    predict = planned_predict_precision(machine)
    measured: dict[str, Any] = {"precision": predict, "precision_why": _predict_why(machine, predict)}
    return [
        _library_step(p, SIZE[machine.quick]),
        *_train_steps(machine, p),
        *_predict_steps(machine, p),
        Step("predict_throughput", "forward frames/s of the backbones + gru, channels_last",
             lambda s, r: step_predict_throughput(machine), **measured),
        Step("train_throughput", "forward + backward + AdamW frames/s, no GradScaler (a throughput figure)",
             lambda s, r: step_train_throughput(machine), **measured),
        Step("jpeg_decode", "nvJPEG (batched) against one OpenCV CPU worker",
             lambda s, r: step_jpeg_decode(p, machine), needs=("library",)),
        Step("video_decode", "PyAV decoding on the CPU: one video-library loader worker",
             lambda s, r: step_video_decode(p), needs=("library",)),
    ]  # fmt: skip


# ---- the steps measured in this process


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _dtype(name: str) -> Any:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def step_predict_throughput(machine: Machine) -> dict[str, Any]:
    import torch

    from model.common import build_model, default_config
    from model.predict import autocast

    device, quick = machine.device, machine.quick
    precision = planned_predict_precision(machine)
    backbones = BACKBONES[1:2] if quick else BACKBONES
    batches = (1,) if quick else (1, 4, 8)
    frames = 4 if quick else 32
    height, width = (48, 86) if quick else (HEIGHT, WIDTH)
    rates: dict[str, dict[str, float]] = {}
    for backbone in backbones:
        config = default_config(feature_arch=backbone, temporal_arch="gru", clip_len=frames, pretrained=False)
        model = build_model(config).to(device).eval()
        rates[backbone] = {}
        for batch in batches:
            clip = torch.randint(0, 256, (batch, frames, 3, height, width), dtype=torch.uint8, device=device)
            with torch.inference_mode(), autocast(torch.device(device), _dtype(precision)):
                model(clip)  # warm-up: cuDNN's kernel choice
                _sync(device)
                rounds, started = 0, time.perf_counter()
                while rounds < 3 or time.perf_counter() - started < (0.2 if quick else 1.0):
                    model(clip)
                    rounds += 1
                _sync(device)
            rate = rounds * batch * frames / (time.perf_counter() - started)
            rates[backbone][f"batch {batch}"] = round(rate, 1)
        del model
    return {"frames_per_s": rates, "size": f"{width}x{height}", "clip_frames": frames, "precision": precision}


def _train_rate(backbone: str, machine: Machine) -> tuple[float, float | None]:
    """Training frames/s of ``backbone`` + gru (forward, backward, AdamW in the GPU's mixed precision,
    without a GradScaler: a throughput figure, not a training run) and the peak GiB."""
    import torch
    import torch.nn.functional as F

    from model.common import build_model, default_config
    from model.predict import autocast

    device = machine.device
    clip_len, batch, steps = (8, 2, 1) if machine.quick else (100, 4, 6)
    height, width = (48, 86) if machine.quick else (HEIGHT, WIDTH)
    config = default_config(feature_arch=backbone, temporal_arch="gru", clip_len=clip_len, pretrained=False)
    model = build_model(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters())
    clips = torch.randint(0, 256, (batch, clip_len, 3, height, width), dtype=torch.uint8, device=device)
    targets = torch.randint(0, len(config["classes"]) + 1, (batch * clip_len,), device=device)
    dtype = _dtype(planned_predict_precision(machine))
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def step() -> None:
        with autocast(torch.device(device), dtype):
            logits = model(clips)["logits"]
        F.cross_entropy(logits.float().flatten(0, 1), targets).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up
    _sync(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    rate = steps * batch * clip_len / (time.perf_counter() - started)
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
    return rate, peak


def step_train_throughput(machine: Machine) -> dict[str, Any]:
    result: dict[str, Any] = {"clip_len": 8 if machine.quick else 100, "batch": 2 if machine.quick else 4}
    for backbone in ("rny002_gsm",) if machine.quick else ("rny002_gsm", "rny008_gsm"):
        rate, peak = _train_rate(backbone, machine)
        result[f"{backbone} frames/s"] = round(rate, 1)
        if peak is not None:
            result[f"{backbone} peak GiB"] = round(peak, 2)
    return result


def step_jpeg_decode(paths: Paths, machine: Machine) -> dict[str, Any]:
    import torch
    from torchvision.io import decode_jpeg, read_file

    from dataset.source import read_jpeg

    files = sorted(paths.frames.rglob("*.jpg"))[: 64 if machine.quick else 512]
    started = time.perf_counter()
    for f in files:
        read_jpeg(f)
    cpu_rate = len(files) / (time.perf_counter() - started)
    result: dict[str, Any] = {"frames": len(files), "cpu_opencv_frames_per_s_per_worker": round(cpu_rate, 1)}
    if machine.device != "cuda":
        result["nvjpeg"] = "skipped: needs CUDA"
        return result
    data = [read_file(str(f)) for f in files]
    decode_jpeg(data[:8], device="cuda")  # warm-up (nvJPEG handles)
    torch.cuda.synchronize()
    started = time.perf_counter()
    for i in range(0, len(data), 64):
        decode_jpeg(data[i : i + 64], device="cuda")
    torch.cuda.synchronize()
    gpu_rate = len(data) / (time.perf_counter() - started)
    result.update(
        nvjpeg_frames_per_s=round(gpu_rate, 1), nvjpeg_vs_one_cpu_worker=round(gpu_rate / cpu_rate, 2)
    )
    return result


def step_video_decode(paths: Paths) -> dict[str, Any]:
    import av

    (video,) = sorted(paths.videos.rglob("224p.mp4"))[:1]
    with av.open(str(video)) as container:
        started, count = time.perf_counter(), 0
        for frame in container.decode(video=0):
            frame.to_ndarray(format="rgb24")
            count += 1
    return {"cpu_pyav_frames_per_s": round(count / (time.perf_counter() - started), 1), "size": "398x224"}


# ---- the plan and the run


def machine_info(machine: Machine) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda_build": torch.version.cuda,
        "device": machine.device,
        "cpus": os.cpu_count(),
    }
    if machine.device == "cuda":
        from model.predict import cuda_has_native_bf16  # not is_bf16_supported(): it counts emulation

        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["capability"] = "{}.{}".format(*machine.capability)
        info["native_bf16"] = cuda_has_native_bf16()
        info["nccl"] = bool(torch.distributed.is_nccl_available())
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def print_plan(machine: Machine, steps: list[Step], root: Path, work_dir: Path | None) -> None:
    where = (
        f"$WORK = {work_dir}" if work_dir else "$WORK = a new temporary folder (--work_dir DIR to choose it)"
    )
    print(f"gpu-check plan for {machine.describe()}{' (--quick)' if machine.quick else ''}; {where}")
    auto, predict = (next(s for s in steps if s.name == n) for n in ("train_tdeed", "eval"))
    print(f"precision: training with --amp_dtype auto: {auto.precision_why}")
    print(f"           eval, inference and features: {predict.precision_why}")
    for i, step in enumerate(steps, 1):
        print(f"\n{i:2}. {step.name}: {step.what}")
        if step.skip:
            print(f"    skipped on this machine: {step.skip}")
            continue
        facts = []
        if step.batch is not None or step.processes > 1:
            facts.append(f"processes {step.processes}")
        if step.batch is not None:
            per = f" ({step.batch // step.processes} per process)" if step.processes > 1 else ""
            facts.append(f"batch {step.batch} {step.batch_unit}{per}")
        if step.precision:
            facts.append(f"precision {step.precision}")
        if step.needs and step.needs != ("library",):
            facts.append(f"uses the model of {', '.join(step.needs)}")
        if facts:
            print("    " + "; ".join(facts))
        if step.batch is not None and step.precision_why and step.name.startswith(("train", "ddp", "mgpu")):
            print(f"    ({step.precision_why})")
        if step.refused:
            print(f"    REFUSED by train_e2e.py: {step.refused}")
        for command in step.commands:
            note = f"   # {command.label}" if command.label else ""
            note += f" ({command.note})" if command.note else ""
            print(f"    $ {command.text(root)}{note}")
        if not step.commands:
            print("    (measured in this process)")


def run_steps(steps: list[Step], runner: Runner, root: Path) -> list[dict[str, Any]]:
    rows, passed = [], set()
    for step in steps:
        print(f"[gpu-check] {step.name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        row: dict[str, Any] = {"step": step.name, "precision": "-" if step.skip else step.precision or "-"}
        if step.batch is not None:
            row.update(processes=step.processes, batch=step.batch)
        row["commands"] = [c.text(root) for c in step.commands]
        try:
            if step.skip:
                raise Skip(step.skip)
            missing = [n for n in step.needs if n not in passed]
            if missing:
                raise Skip(f"needs {', '.join(missing)}, which did not pass")
            if step.refused:
                raise RuntimeError(f"train_e2e.py refuses it: {step.refused}")
            row.update(status="ok", result=step.run(step, runner))
            passed.add(step.name)
        except Skip as e:
            row.update(status="skipped", result={"why": str(e)})
        except Exception as e:  # noqa: BLE001 - a failed step is reported and the others still run
            row.update(
                status="FAILED", error=f"{type(e).__name__}: {e}", traceback=traceback.format_exc()[-2000:]
            )
        row["seconds"] = round(time.perf_counter() - started, 1)
        rows.append(row)
    return rows


def _summary(result: dict[str, Any]) -> str:
    text = json.dumps(result, separators=(", ", ": "))
    return text if len(text) <= 100 else text[:97] + "..."


def _capability(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"(\d+)\.(\d)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"a compute capability X.Y (e.g. 7.0, 8.6, 9.0), not {text!r}")
    return int(match[1]), int(match[2])


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"at least 1, not {value}")
    return value


def get_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--device",
        choices=["auto", "cuda", "cpu"],
        default="auto",
        help="auto: cuda when available, else print that there is nothing to check and exit 0",
    )
    p.add_argument("--quick", action="store_true", help="toy sizes (what the test suite runs on a CPU)")
    p.add_argument("--out", type=Path, default=Path("gpu-report.json"), help="where the JSON report goes")
    p.add_argument("--work_dir", type=Path, help="scratch folder (default: a temporary one, removed)")
    plan = p.add_argument_group("the plan (runs nothing, needs no GPU)")
    plan.add_argument(
        "--plan",
        action="store_true",
        help="print every step's commands, processes, batch size and precision for the machine, and exit",
    )
    plan.add_argument(
        "--gpus", type=_positive, help="with --plan: GPUs in the node (default: those here, else 1)"
    )
    plan.add_argument(
        "--capability",
        type=_capability,
        metavar="X.Y",
        help="with --plan: their compute capability, e.g. 7.0 (V100), 7.5 (T4), 8.0 (A100), 8.6 (A10), "
        "8.9 (L4, L40), 9.0 (H100) (default: that of the GPUs here)",
    )
    args = p.parse_args(argv)
    if (args.gpus or args.capability) and not args.plan:
        p.error("--gpus and --capability describe the machine of a --plan; a run uses the GPUs here")
    if args.device == "cpu" and (args.gpus or args.capability):
        p.error("--plan --device cpu plans a run on the CPU: no --gpus or --capability")
    return args


def plan_machine(args: argparse.Namespace) -> Machine:
    """The machine of ``--plan``: the CPU (--device cpu), else --gpus GPUs of --capability, by default the
    GPUs here. DataError when there is no GPU here and no --capability."""
    import torch

    from util.io import DataError

    if args.device == "cpu":
        return Machine("cpu", 0, None, args.quick)
    here = Machine.here("cuda", args.quick) if torch.cuda.is_available() else None
    capability = args.capability or (here.capability if here else None)
    if capability is None:
        raise DataError(
            "--plan: no GPU here, so say which with --capability X.Y (7.0 V100, 7.5 T4, 8.0 A100, 8.6 A10, "
            "8.9 L4, 9.0 H100) and how many with --gpus N"
        )
    return Machine("cuda", args.gpus or (here.gpus if here else 1), capability, args.quick)


def main(argv: list[str] | None = None) -> int:
    import torch
    from tabulate import tabulate

    from util.io import DataError

    args = get_args(argv)
    if args.plan:
        try:
            machine = plan_machine(args)
        except DataError as e:
            print(f"gpu-check: {e}", file=sys.stderr)
            return 2
        root = args.work_dir or Path(tempfile.gettempdir()) / "gpu-check"
        steps = build_steps(machine, root)
        print_plan(machine, steps, root, args.work_dir)
        return 1 if any(s.refused and not s.skip for s in steps) else 0
    device = args.device
    if device == "auto":
        if not torch.cuda.is_available():
            print(
                "gpu-check: no CUDA device here (torch.cuda.is_available() is False): nothing to check. Run "
                "`make gpu-check` on a machine with a GPU; `python -m benchmarks.gpu_check --plan --gpus N "
                "--capability X.Y` prints what it runs there."
            )
            return 0
        device = "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        print("gpu-check: --device cuda, but no CUDA device is available", file=sys.stderr)
        return 2
    machine = Machine.here(device, args.quick)
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        root = args.work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="gpu-check-")))
        root.mkdir(parents=True, exist_ok=True)
        steps = build_steps(machine, root)
        rows = run_steps(steps, Runner(in_process=device == "cpu"), root)
    total = round(time.perf_counter() - started, 1)
    report = {"machine": machine_info(machine), "quick": args.quick, "steps": rows, "total_s": total}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    table = [
        [
            r["step"],
            r["status"],
            r["seconds"],
            r["precision"],
            r.get("error") or _summary(r.get("result", {})),
        ]
        for r in rows
    ]
    print(tabulate(table, headers=["step", "status", "s", "precision", "result"]))
    print(f"{json.dumps(report['machine'])}\ntotal {total} s; report: {args.out}")
    failed = [r["step"] for r in rows if r["status"] == "FAILED"]
    if failed:
        print(f"gpu-check: FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from util.allocator import use_fast_allocator

    use_fast_allocator()
    sys.exit(main(sys.argv[1:]))
