"""The benchmarks run in their --tiny mode and print their ratios (speed targets live in bench/, not here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def test_benchmarks_run_tiny_and_print_ratios():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(REPO / "bench" / "run_all.py"), "--tiny"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "batch1_latency_ratio" in out and "throughput_ratio" in out
    assert "training_ratio_files" in out and "training_ratio_cached" in out
    assert "hybrid_ratio" in out
    assert "Gradio" in out and "Streamlit" in out and "target <= 2.0" in out  # the smear-cell explanation, both apps
    for script in ("bench_inference.py", "bench_training.py", "bench_hybrid.py", "bench_explain.py", "bench_mrmr.py",
                   "bench_montecarlo.py", "bench_app_explain.py"):
        assert f"== {script}: exit 0" in out, out[-3000:]
