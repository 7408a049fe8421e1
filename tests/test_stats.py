"""leuk.experiments.stats against scipy (and statsmodels where installed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as scipy_stats

from leuk.experiments.stats import WILCOXON_OPTIONS, describe, holm, paired_tests


@pytest.fixture
def paired_scores() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    reference = rng.normal(0.9, 0.02, size=40)
    other = reference - 0.01 + rng.normal(0, 0.015, size=40)
    return reference, other


def test_paired_tests_match_scipy(paired_scores):
    reference, other = paired_scores
    result = paired_tests(reference, other)
    t_test = scipy_stats.ttest_rel(other, reference)
    wilcoxon = scipy_stats.wilcoxon(other - reference, **WILCOXON_OPTIONS)
    diff = other - reference
    assert result["n"] == 40
    assert result["t_pvalue"] == pytest.approx(t_test.pvalue, abs=1e-12)
    assert result["t_statistic"] == pytest.approx(t_test.statistic, abs=1e-12)
    assert result["wilcoxon_pvalue"] == pytest.approx(wilcoxon.pvalue, abs=1e-12)
    assert result["wilcoxon_statistic"] == pytest.approx(wilcoxon.statistic, abs=1e-12)
    # Paired Cohen's d is t / sqrt(n): an identity that checks d against scipy's t.
    assert result["cohens_d"] == pytest.approx(t_test.statistic / math.sqrt(40), rel=1e-12)
    assert result["mean_difference"] == pytest.approx(diff.mean(), abs=1e-15)
    assert result["sd_difference"] == pytest.approx(np.std(diff, ddof=1), abs=1e-15)
    assert result["difference_p2_5"] == pytest.approx(np.percentile(diff, 2.5), abs=1e-15)
    assert result["difference_p97_5"] == pytest.approx(np.percentile(diff, 97.5), abs=1e-15)
    ci = t_test.confidence_interval(0.95)
    assert (result["mean_ci_low"], result["mean_ci_high"]) == pytest.approx((ci.low, ci.high), abs=1e-12)
    assert result["mean_ci_low"] < result["mean_difference"] < result["mean_ci_high"]


def test_paired_tests_direction_is_other_minus_reference(paired_scores):
    reference, other = paired_scores
    forward, backward = paired_tests(reference, other), paired_tests(other, reference)
    assert forward["mean_difference"] < 0
    assert backward["mean_difference"] == pytest.approx(-forward["mean_difference"])
    assert backward["cohens_d"] == pytest.approx(-forward["cohens_d"])
    assert backward["t_pvalue"] == pytest.approx(forward["t_pvalue"], rel=1e-12)


def test_all_zero_differences_give_p_one_with_a_note():
    values = np.array([0.8, 0.85, 0.9, 0.95])
    result = paired_tests(values, values.copy())
    assert result["t_pvalue"] == 1.0 and result["wilcoxon_pvalue"] == 1.0
    assert result["cohens_d"] == 0.0
    assert any("zero" in note for note in result["notes"])


def test_missing_pairs_are_dropped_and_noted():
    reference = np.array([0.8, np.nan, 0.9, 0.7, 0.75, 0.82])
    other = np.array([0.82, 0.9, np.nan, 0.71, 0.8, 0.8])
    result = paired_tests(reference, other)
    keep = ~(np.isnan(reference) | np.isnan(other))
    assert result["n"] == 4
    assert result["t_pvalue"] == pytest.approx(scipy_stats.ttest_rel(other[keep], reference[keep]).pvalue)
    assert any("missing" in note for note in result["notes"])


def test_unequal_lengths_are_refused():
    with pytest.raises(ValueError, match="equal lengths"):
        paired_tests([0.1, 0.2], [0.1])


def test_describe_matches_numpy():
    values = np.random.default_rng(3).uniform(0.7, 1.0, size=101)
    summary = describe(np.append(values, np.nan))
    assert summary["n"] == 101 and summary["n_missing"] == 1
    assert summary["mean"] == pytest.approx(values.mean())
    assert summary["sd"] == pytest.approx(values.std(ddof=1))
    assert summary["median"] == pytest.approx(np.median(values))
    assert summary["p2_5"] == pytest.approx(scipy_stats.scoreatpercentile(values, 2.5))
    assert summary["p97_5"] == pytest.approx(scipy_stats.scoreatpercentile(values, 97.5))


def test_holm_hand_example():
    # m = 4; ascending 0.005, 0.01, 0.03, 0.04 -> 4*0.005, 3*0.01, 2*0.03, max(1*0.04, 0.06)
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([0.02, None, float("nan")])[1:] == [None, None]
    assert holm([0.02, None])[0] == pytest.approx(0.02)  # a missing value does not count in m


def _holm_by_definition(pvalues: list[float]) -> list[float]:
    """Smallest family-wise level at which Holm's step-down procedure rejects each hypothesis."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[index]))
        adjusted[index] = running
    return adjusted


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=1, max_size=12))
def test_holm_properties(pvalues):
    adjusted = holm(pvalues)
    assert adjusted == pytest.approx(_holm_by_definition(pvalues), abs=1e-15)
    assert all(a >= p - 1e-15 and a <= 1.0 for a, p in zip(adjusted, pvalues))


def test_holm_matches_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    pvalues = np.random.default_rng(11).uniform(0, 0.2, size=15)
    expected = multitest.multipletests(pvalues, method="holm")[1]
    assert holm(pvalues) == pytest.approx(list(expected), abs=1e-15)


def test_holm_rejects_invalid_pvalues():
    with pytest.raises(ValueError):
        holm([0.2, 1.5])
