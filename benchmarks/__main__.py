"""Run every benchmark: ``python -m benchmarks [--quick] [NAME ...]`` (NAME = the part after ``bench_``).

``--quick`` runs each one small (seconds, not minutes): ``make test`` does, so that a benchmark that breaks fails CI.
Its figures are not the ones to quote.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import benchmarks


def benchmark_names() -> list[str]:
    return sorted(
        m.name[len("bench_") :]
        for m in pkgutil.iter_modules(benchmarks.__path__)
        if m.name.startswith("bench_")
    )


def main(argv: list[str]) -> int:
    names = benchmark_names()
    quick = "--quick" in argv
    wanted = [a for a in argv if a != "--quick"] or names
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {names}", file=sys.stderr)
        return 2
    for name in wanted:
        print(f"\n=== benchmark: {name} ===", flush=True)
        start = time.perf_counter()
        module = importlib.import_module(f"benchmarks.bench_{name}")
        module.main(["--quick"] if quick else [])
        print(f"=== {name} done in {time.perf_counter() - start:.1f} s ===", flush=True)
    return 0


if __name__ == "__main__":
    from util.allocator import use_fast_allocator

    use_fast_allocator()
    sys.exit(main(sys.argv[1:]))
