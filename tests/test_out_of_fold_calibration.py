"""The shipped model's verdict: a threshold fitted on out-of-fold predictions, checked against brute force."""

from __future__ import annotations

import numpy as np
import pytest

from leuk.experiments.shipping import calibrate_out_of_fold
from leuk.verdict import selective_summary, selective_threshold


def _brute_force(top, correct, target, floor=0.5):
    """Oracle: try every observed value as the threshold, keep the lowest that reaches the target."""
    best = None
    for t in sorted(set(top.tolist())):
        kept = top >= t
        if t >= floor and kept.any() and correct[kept].mean() >= target:
            best = t if best is None else min(best, t)
    return best


@pytest.mark.parametrize("seed", range(25))
def test_selective_threshold_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    top = np.round(rng.uniform(0.5, 1.0, n), int(rng.integers(1, 4)))  # rounding makes ties
    correct = rng.uniform(size=n) < top  # higher probability, more often right
    for target in (0.8, 0.9, 0.95):
        assert selective_threshold(top, correct, target=target) == _brute_force(top, correct, target)


def test_selective_threshold_edge_cases():
    assert selective_threshold([0.9, 0.8], [False, False]) is None
    assert selective_threshold([0.99, 0.6], [True, False], target=0.95) == 0.99
    assert selective_threshold([0.6, 0.7], [True, True], target=0.95, floor=0.65) == 0.7
    summary = selective_summary(np.array([0.99, 0.9, 0.6]), np.array([True, False, True]), 0.9)
    assert summary == {"n": 3, "n_confident": 2, "confident_share": 2 / 3, "confident_accuracy": 0.5,
                       "uncertain_accuracy": 1.0}
    with pytest.raises(ValueError):
        selective_threshold([0.9], [True, False])


def _rows(n_per_fold=200, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for fold in range(3):
        for i in range(n_per_fold):
            label = int(rng.uniform() < 0.7)
            margin = rng.normal(2.0 if label else -2.0, 2.0)
            rows.append({"image": f"f{fold}/{i}.png", "subject": f"S{fold}{i % 4}", "label": ["hem", "all"][label],
                         "fold": fold, "logits": [0.0, float(margin) * 3.0]})
    return rows


def test_calibration_reaches_the_target_and_reports_leave_one_fold_out():
    from leuk.metrics import fit_temperature

    rows = _rows()
    record = calibrate_out_of_fold(rows, ["hem", "all"], target_accuracy=0.95)
    logits = np.asarray([r["logits"] for r in rows])
    labels = np.asarray([["hem", "all"].index(r["label"]) for r in rows])
    assert record["temperature"] == pytest.approx(fit_temperature(logits, labels))
    assert record["temperature"] > 1.5  # the logits were inflated 3x: the fit undoes most of it
    assert record["target_reached"] and record["out_of_fold"]["confident_accuracy"] >= 0.95
    assert 0 < record["out_of_fold"]["confident_share"] < 1
    crossed = record["leave_one_fold_out"]
    assert crossed["n"] == len(rows) and set(crossed["per_fold"]) == {"0", "1", "2"}
    assert sum(s["n"] for s in record["per_subject"].values()) == len(rows)


def test_unreachable_target_falls_back_to_the_default_threshold():
    from leuk.verdict import UNCERTAIN_BELOW

    rows = [{"image": str(i), "subject": "A", "label": "all", "fold": 0, "logits": [1.0, 0.0]} for i in range(10)]
    record = calibrate_out_of_fold(rows, ["hem", "all"])
    assert not record["target_reached"] and record["uncertain_below"] == UNCERTAIN_BELOW
