"""The memory allocator: every entry point runs with tcmalloc when it is installed (about 1.3x faster CPU training).

With glibc's malloc, each training step of the demo's model maps and unmaps its large activations (above glibc's
32 MiB mmap threshold), so the kernel zeroes fresh pages at every step: about 200,000 minor page faults per step
and 11-15 % of the CPU time in the kernel. tcmalloc keeps those pages (2,000 faults per step). Measured by
``python -m benchmarks allocator`` (part of ``make bench``).

An entry point calls :func:`use_fast_allocator` before its heavy imports. When tcmalloc is installed and not
preloaded yet, the process re-executes itself once with ``LD_PRELOAD`` set (the command line is unchanged, so
``python -m ...`` and plain scripts both work); its children (DataLoader workers, DDP ranks, the web app's job
processes) inherit the environment. ``SPOT_ALLOCATOR=system`` switches it off; ``SPOT_ALLOCATOR=tcmalloc`` is
the default. When tcmalloc is missing the process goes on with glibc and says once (per machine) how to install
it (``make system-deps`` does: Debian's ``libtcmalloc-minimal4``).

``python -m util.allocator`` says which allocator a process gets here.
"""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path

ENV_CHOICE = "SPOT_ALLOCATOR"
CHOICES = ("tcmalloc", "system")
# Set in the re-executed process: never re-execute twice, even when the loader ignored LD_PRELOAD.
ENV_REEXECED = "SPOT_ALLOCATOR_REEXECED"
# tcmalloc reports every allocation above 1 GiB on stderr by default; a long video's score arrays are legitimate.
LARGE_ALLOC_REPORT = ("TCMALLOC_LARGE_ALLOC_REPORT_THRESHOLD", str(1 << 40))
LIBRARY_GLOBS = (
    "/usr/lib/*-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/*-linux-gnu/libtcmalloc.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",
    "/usr/lib64/libtcmalloc.so.4",
    "/usr/lib/libtcmalloc_minimal.so.4",
    "/usr/lib/libtcmalloc.so.4",
    "/usr/local/lib/libtcmalloc_minimal.so.4",
    "/usr/local/lib/libtcmalloc.so.4",
)
HINT_STAMP = Path.home() / ".cache" / "spot-soccernet-ball" / "tcmalloc-hint-shown"
INSTALL_HINT = (
    "note: tcmalloc is not installed, so this runs with glibc's allocator (CPU training is about 1.3x slower).\n"
    "      Install it with `make system-deps` or `apt-get install libtcmalloc-minimal4`; the scripts then use it\n"
    f"      by themselves. {ENV_CHOICE}=system hides this note (it is shown once per machine)."
)


def choice() -> str:
    """The allocator asked for: ``tcmalloc`` (default) or ``system``; an unknown value is an error."""
    value = os.environ.get(ENV_CHOICE, "tcmalloc").strip().lower() or "tcmalloc"
    if value not in CHOICES:
        raise SystemExit(f"error: {ENV_CHOICE}={value!r}: use one of {', '.join(CHOICES)}")
    return value


def find_tcmalloc() -> str | None:
    """The path of an installed tcmalloc shared library (the minimal one first), or None."""
    if not sys.platform.startswith("linux"):
        return None
    for pattern in LIBRARY_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    import ctypes.util  # here: every entry point imports this module first, and ctypes.util takes 0.02 s

    for name in ("tcmalloc_minimal", "tcmalloc"):
        found = ctypes.util.find_library(name)
        if found and os.path.isabs(found):
            return found
    return None


def is_preloaded(env: dict | os._Environ | None = None) -> bool:
    env = os.environ if env is None else env
    return "tcmalloc" in env.get("LD_PRELOAD", "")


def fast_allocator_env(env: dict | None = None) -> dict:
    """``env`` (default: this process's) with tcmalloc preloaded when it is installed and asked for."""
    env = dict(os.environ if env is None else env)
    if env.get(ENV_CHOICE, "tcmalloc").strip().lower() == "system" or is_preloaded(env):
        return env
    library = find_tcmalloc()
    if library:
        env["LD_PRELOAD"] = " ".join(p for p in (library, env.get("LD_PRELOAD", "")) if p)
        env.setdefault(*LARGE_ALLOC_REPORT)
    return env


def system_allocator_env(env: dict | None = None) -> dict:
    """``env`` with tcmalloc removed from ``LD_PRELOAD`` and switched off for child entry points."""
    env = dict(os.environ if env is None else env)
    kept = [p for p in env.get("LD_PRELOAD", "").split() if "tcmalloc" not in p]
    if kept:
        env["LD_PRELOAD"] = " ".join(kept)
    else:
        env.pop("LD_PRELOAD", None)
    env[ENV_CHOICE] = "system"
    return env


def in_use() -> str:
    """The allocator this process runs with, from its own memory maps (Linux), else ``system``."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "system"
    return "tcmalloc" if "libtcmalloc" in maps else "system"


def _show_hint_once() -> None:
    try:
        if HINT_STAMP.exists():
            return
        HINT_STAMP.parent.mkdir(parents=True, exist_ok=True)
        HINT_STAMP.touch()
    except OSError:
        pass  # a read-only home: show it every time rather than never
    print(INSTALL_HINT, file=sys.stderr, flush=True)


def use_fast_allocator() -> None:
    """Re-execute this process with tcmalloc preloaded when it is installed, asked for and not in use yet.

    Call it first thing in an entry point's ``__main__`` (before importing torch): it either returns at once or
    replaces the process (same executable, same command line, same working directory).
    """
    if os.environ.pop(ENV_REEXECED, None):  # this is the re-executed process (its children may re-execute)
        return
    if choice() == "system" or is_preloaded():
        return
    library = find_tcmalloc()
    if library is None:
        _show_hint_once()
        return
    env = fast_allocator_env()
    env[ENV_REEXECED] = "1"
    argv = list(getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv])
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, argv, env)
    except OSError as e:  # cannot re-execute (odd launcher): go on with glibc rather than fail
        print(
            f"note: could not re-execute with tcmalloc ({e}); running with glibc's allocator", file=sys.stderr
        )


def main() -> int:
    use_fast_allocator()
    library = find_tcmalloc()
    print(f"allocator in use: {in_use()}")
    print(f"{ENV_CHOICE}={os.environ.get(ENV_CHOICE, '(unset: tcmalloc)')}")
    print(f"tcmalloc library: {library or 'not installed (apt-get install libtcmalloc-minimal4)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
