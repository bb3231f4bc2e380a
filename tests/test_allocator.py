"""The allocator: every entry point re-executes itself with tcmalloc when it is installed; SPOT_ALLOCATOR=system is off."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from util import allocator

REPO = Path(__file__).resolve().parents[1]
needs_tcmalloc = pytest.mark.skipif(
    allocator.find_tcmalloc() is None, reason="tcmalloc is not installed (make system-deps installs it)"
)
# Every entry point, as a user starts it (with --help: what runs before argparse is what counts).
ENTRY_POINTS = [
    ["frames_as_jpg_soccernet_ball.py"],
    ["parse_soccernet_ball.py"],
    ["train_e2e.py"],
    ["eval_soccernet_ball.py"],
    ["inference_spot.py"],
    ["app/app.py"],
    ["-m", "synthetic.demo"],
    ["-m", "synthetic.library"],
    ["-m", "benchmarks.gpu_check"],
    ["-m", "benchmarks"],
]
# Imported by every Python process started with this folder on PYTHONPATH: at exit, the process writes which
# allocator it ran with (a process replaced by exec never exits, so the file holds the final process's view).
SITECUSTOMIZE = """
import atexit, os
def _report():
    from util.allocator import in_use
    with open(os.environ["ALLOCATOR_REPORT"], "w") as f:
        f.write(in_use() + " " + os.environ.get("LD_PRELOAD", ""))
atexit.register(_report)
"""


def _clean_env(tmp_path: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", allocator.ENV_CHOICE)}
    site = tmp_path / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO)])
    env["ALLOCATOR_REPORT"] = str(tmp_path / "report.txt")
    env["HOME"] = str(tmp_path)  # the once-per-machine hint's stamp goes here
    env.update(extra)
    return env


def _run(argv: list[str], env: dict) -> str:
    proc = subprocess.run(
        [sys.executable, *argv, "--help"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    return Path(env["ALLOCATOR_REPORT"]).read_text()


@pytest.mark.slow  # a subprocess per entry point
@needs_tcmalloc
@pytest.mark.parametrize("argv", ENTRY_POINTS, ids=lambda a: a[-1])
def test_every_entry_point_runs_with_tcmalloc(tmp_path, argv):
    report = _run(argv, _clean_env(tmp_path))
    assert report.startswith("tcmalloc "), report
    assert "libtcmalloc" in report


@pytest.mark.slow  # a subprocess per entry point
@pytest.mark.parametrize("argv", [["train_e2e.py"], ["-m", "synthetic.demo"]], ids=lambda a: a[-1])
def test_spot_allocator_system_switches_it_off(tmp_path, argv):
    report = _run(argv, _clean_env(tmp_path, SPOT_ALLOCATOR="system"))
    assert report.startswith("system"), report


def test_a_preloaded_process_is_not_re_executed(monkeypatch):
    calls = []
    monkeypatch.setattr(os, "execve", lambda *a: calls.append(a))
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4")
    monkeypatch.delenv(allocator.ENV_CHOICE, raising=False)
    allocator.use_fast_allocator()
    monkeypatch.setenv(allocator.ENV_CHOICE, "system")
    monkeypatch.delenv("LD_PRELOAD")
    allocator.use_fast_allocator()
    assert calls == []


@needs_tcmalloc
def test_re_execution_keeps_the_command_line_and_marks_itself(monkeypatch):
    calls = []
    monkeypatch.setattr(os, "execve", lambda *a: calls.append(a))
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv(allocator.ENV_CHOICE, raising=False)
    monkeypatch.delenv(allocator.ENV_REEXECED, raising=False)
    monkeypatch.setattr(sys, "orig_argv", ["python", "-m", "synthetic.demo", "--out", "x"])
    allocator.use_fast_allocator()
    (executable, argv, env) = calls[0]
    assert executable == sys.executable and argv == ["python", "-m", "synthetic.demo", "--out", "x"]
    assert "tcmalloc" in env["LD_PRELOAD"] and env[allocator.ENV_REEXECED] == "1"
    # The re-executed process (marked) does not loop, and its children may re-execute again.
    monkeypatch.setenv(allocator.ENV_REEXECED, "1")
    allocator.use_fast_allocator()
    assert len(calls) == 1 and allocator.ENV_REEXECED not in os.environ


def test_missing_tcmalloc_says_how_to_install_once(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(allocator, "find_tcmalloc", lambda: None)
    monkeypatch.setattr(allocator, "HINT_STAMP", tmp_path / "stamp")
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.delenv(allocator.ENV_CHOICE, raising=False)
    allocator.use_fast_allocator()
    allocator.use_fast_allocator()
    err = capsys.readouterr().err
    assert err.count("libtcmalloc-minimal4") == 1 and "SPOT_ALLOCATOR=system" in err


def test_an_unknown_choice_is_an_error(monkeypatch):
    monkeypatch.setenv(allocator.ENV_CHOICE, "jemalloc")
    with pytest.raises(SystemExit, match="tcmalloc, system"):
        allocator.use_fast_allocator()


def test_system_env_removes_only_tcmalloc():
    env = allocator.system_allocator_env({"LD_PRELOAD": "/x/libfoo.so /y/libtcmalloc_minimal.so.4"})
    assert env["LD_PRELOAD"] == "/x/libfoo.so" and env[allocator.ENV_CHOICE] == "system"
    assert "LD_PRELOAD" not in allocator.system_allocator_env({"LD_PRELOAD": "/y/libtcmalloc.so.4"})
