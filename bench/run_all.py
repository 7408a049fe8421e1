"""Run every benchmark in one process (``make bench`` runs the ``--tiny`` versions).

    python bench/run_all.py --tiny      # seconds each, on the CPU (the test suite runs this)
    python bench/run_all.py             # full size: minutes; GPU figures belong in docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SCRIPTS = ("bench_inference.py", "bench_training.py", "bench_hybrid.py", "bench_explain.py", "bench_mrmr.py",
           "bench_montecarlo.py", "bench_app_explain.py")


def _load(script: str):
    spec = importlib.util.spec_from_file_location(script[:-3], BENCH / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="small sizes, CPU, seconds each")
    args = parser.parse_args(argv)
    failed = []
    for script in SCRIPTS:
        if not (BENCH / script).exists():
            continue
        start = time.perf_counter()
        print(f"== {script}", flush=True)
        code = _load(script).main(["--tiny"] if args.tiny else [])
        print(f"== {script}: exit {code} in {time.perf_counter() - start:.1f} s", flush=True)
        if code:
            failed.append(script)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
