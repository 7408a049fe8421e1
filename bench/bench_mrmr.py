"""Benchmark: leuk's vectorised mRMR against ``mrmr_selection.mrmr_classif`` (the published code's choice).

Full size is the paper's problem: 2000 of 5,568 features (ConvNeXt-Large 1536 + NASNet-Large 4032) over
3,256 images. The oracle needs roughly a second per selection step at that size, so by default it runs
only its relevance pass plus the first ``--oracle-steps`` steps, and the rest is extrapolated: each step
costs time proportional to the number of features not yet selected, so the measured per-step cost is scaled
by the remaining-feature counts of all ``k`` steps. ``--oracle-steps 0`` runs the oracle to the end.
Both selections are compared on the steps both made.

    python bench/bench_mrmr.py            # full size (a few minutes: the oracle runs 20 steps)
    python bench/bench_mrmr.py --tiny     # 300 x 400, k=40, oracle run fully (seconds)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

#: leuk's mRMR must be at least this many times faster than mrmr_selection at full size
SPEEDUP_TARGET = 20


def synthetic_features(n_samples: int, n_features: int, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Correlated, class-dependent features shaped like pooled CNN activations (low rank + noise, >= 0)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n_samples)
    latent = rng.normal(size=(n_samples, 64)) + rng.normal(size=(n_classes, 64))[labels]
    features = latent @ rng.normal(size=(64, n_features)) / 8 + rng.normal(size=(n_samples, n_features))
    return np.maximum(features, 0).astype(np.float32), labels


def _time_leuk(features: np.ndarray, labels: np.ndarray, k: int, dtype) -> tuple[float, np.ndarray]:
    from leuk.selection import mrmr_select

    start = time.perf_counter()
    chosen = mrmr_select(features, labels, k, dtype=dtype)
    return time.perf_counter() - start, chosen


def _time_oracle(features: np.ndarray, labels: np.ndarray, k: int, steps: int) -> dict:
    """Run mrmr_classif with K=1 (relevance + setup) and K=steps; extrapolate to k steps when steps < k."""
    import pandas as pd
    from mrmr import mrmr_classif

    frame, target = pd.DataFrame(features), pd.Series(labels)
    steps = k if steps <= 0 else min(steps, k)
    start = time.perf_counter()
    mrmr_classif(frame, target, K=1, n_jobs=1, show_progress=False)
    setup = time.perf_counter() - start
    start = time.perf_counter()
    chosen = mrmr_classif(frame, target, K=steps, n_jobs=1, show_progress=False)
    measured = time.perf_counter() - start
    n_features = features.shape[1]
    if steps == k:
        return {"seconds": measured, "extrapolated": False, "steps_run": steps, "chosen": np.asarray(chosen)}
    # step i (i >= 1) correlates the remaining n_features - i features with the last one chosen
    work_measured = sum(n_features - i for i in range(1, steps))
    work_total = sum(n_features - i for i in range(1, k))
    seconds_per_unit = max(measured - setup, 0.0) / work_measured
    return {
        "seconds": setup + seconds_per_unit * work_total,
        "extrapolated": True,
        "steps_run": steps,
        "setup_seconds": setup,
        "measured_seconds": measured,
        "chosen": np.asarray(chosen),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="small problem, oracle run fully")
    parser.add_argument("--samples", type=int, default=3256)
    parser.add_argument("--features", type=int, default=5568)
    parser.add_argument("--k", type=int, default=2000)
    parser.add_argument("--oracle-steps", type=int, default=20, help="oracle steps to time (0 = all k)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.tiny:
        args.samples, args.features, args.k, args.oracle_steps = 300, 400, 40, 0

    features, labels = synthetic_features(args.samples, args.features, 4, args.seed)
    leuk_seconds, leuk_chosen = _time_leuk(features, labels, args.k, np.float64)
    leuk32_seconds, _ = _time_leuk(features, labels, args.k, np.float32)
    oracle = _time_oracle(features, labels, args.k, args.oracle_steps)
    compared = len(oracle["chosen"])
    agree = bool(np.array_equal(leuk_chosen[:compared], oracle["chosen"]))
    result = {
        "samples": args.samples,
        "features": args.features,
        "k": args.k,
        "threads": os.environ.get("OMP_NUM_THREADS", "unset"),
        "leuk_seconds_float64": round(leuk_seconds, 3),
        "leuk_seconds_float32": round(leuk32_seconds, 3),
        "mrmr_selection_seconds": round(oracle["seconds"], 2),
        "mrmr_selection_extrapolated": oracle["extrapolated"],
        "mrmr_selection_steps_run": oracle["steps_run"],
        "speedup_float64": round(oracle["seconds"] / leuk_seconds, 1),
        "speedup_target": SPEEDUP_TARGET,
        "meets_target": bool(oracle["seconds"] / leuk_seconds >= SPEEDUP_TARGET),
        "same_selection_on_compared_steps": agree,
    }
    if oracle["extrapolated"]:
        result["mrmr_selection_setup_seconds"] = round(oracle["setup_seconds"], 2)
        result["mrmr_selection_measured_seconds"] = round(oracle["measured_seconds"], 2)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
