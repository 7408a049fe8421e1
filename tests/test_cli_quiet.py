"""The CLI loads models quietly: transformers' "Loading weights" bar only with --verbose."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "assets" / "samples" / "cnmc" / "all_1.png"


def _predict(*extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(Path(sys.executable).with_name("leuk")), *extra, "predict", "--model", "demo:efficientnet-se",
                           str(SAMPLE)], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


def test_predict_hides_the_loading_bar_unless_verbose():
    quiet = _predict()
    assert quiet.returncode == 0, quiet.stderr
    assert "Loading weights" not in quiet.stderr + quiet.stdout
    assert SAMPLE.name in quiet.stdout
    verbose = _predict("--verbose")
    assert verbose.returncode == 0, verbose.stderr
    assert "Loading weights" in verbose.stderr
