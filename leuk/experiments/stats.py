"""Statistics for matched Monte Carlo iterations (pure numpy/scipy).

Every model sees the same split in the same iteration, so two models' scores form *paired* samples:
the tests here work on the per-iteration differences ``other - reference`` (positive = ``other``
scores higher). Every p-value comes from scipy, called with its options spelled out, so anyone can
recompute it from a results table.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from scipy import stats as scipy_stats

#: Percentiles that bound the reported intervals (the central 95% of the values).
INTERVAL_PERCENTILES = (2.5, 97.5)
#: Options passed to :func:`scipy.stats.wilcoxon` (recorded in every result so it can be recomputed).
WILCOXON_OPTIONS: dict[str, Any] = {
    "zero_method": "wilcox",
    "correction": False,
    "alternative": "two-sided",
    "method": "auto",
}


def _as_vector(values: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def _float(value: Any) -> float | None:
    """A JSON-safe float: NaN and infinities become ``None``."""
    value = float(value)
    return value if math.isfinite(value) else None


def describe(values: Sequence[float] | np.ndarray) -> dict[str, float | int | None]:
    """Summary of one metric over iterations.

    Returns ``n``, ``mean``, ``sd`` (ddof=1), ``median``, ``p2_5`` and ``p97_5`` (numpy's linear
    percentiles). NaN values (e.g. an AUC undefined on a one-class test set) are left out and counted
    in ``n_missing``. Statistics that cannot be computed are ``None``.
    """
    array = _as_vector(values, "values")
    finite = array[~np.isnan(array)]
    n = int(finite.size)
    low, high = (np.percentile(finite, INTERVAL_PERCENTILES) if n else (math.nan, math.nan))
    return {
        "n": n,
        "n_missing": int(array.size - n),
        "mean": _float(finite.mean()) if n else None,
        "sd": _float(finite.std(ddof=1)) if n > 1 else None,
        "median": _float(np.median(finite)) if n else None,
        "p2_5": _float(low),
        "p97_5": _float(high),
    }


def paired_tests(reference: Sequence[float] | np.ndarray, other: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """Compare ``other`` with ``reference`` over matched iterations.

    Both arrays hold one metric, one value per iteration, in the same iteration order. Pairs where
    either value is NaN are dropped (``n`` says how many remain). Returns:

    - ``mean_difference`` (of ``other - reference``), ``sd_difference`` (ddof=1),
      ``difference_p2_5``/``difference_p97_5`` (percentile interval of the per-iteration differences),
      ``mean_ci_low``/``mean_ci_high`` (95% t confidence interval of the mean difference);
    - ``t_statistic``, ``t_pvalue`` from :func:`scipy.stats.ttest_rel` ``(other, reference)``;
    - ``wilcoxon_statistic``, ``wilcoxon_pvalue`` from :func:`scipy.stats.wilcoxon` on the differences
      with :data:`WILCOXON_OPTIONS`;
    - ``cohens_d`` for paired samples: ``mean(diff) / sd(diff, ddof=1)``;
    - ``notes``: degenerate cases, e.g. all differences zero (both p-values are then 1, d is 0).

    Values that are undefined are ``None`` (JSON-safe).
    """
    reference_array = _as_vector(reference, "reference")
    other_array = _as_vector(other, "other")
    if reference_array.shape != other_array.shape:
        raise ValueError(
            f"paired samples need equal lengths, got {reference_array.size} and {other_array.size}"
        )
    keep = ~(np.isnan(reference_array) | np.isnan(other_array))
    reference_array, other_array = reference_array[keep], other_array[keep]
    diff = other_array - reference_array
    n = int(diff.size)
    notes: list[str] = []
    if int((~keep).sum()):
        notes.append(f"{int((~keep).sum())} pair(s) with a missing value left out")

    result: dict[str, Any] = {
        "n": n,
        "mean_difference": None,
        "sd_difference": None,
        "difference_p2_5": None,
        "difference_p97_5": None,
        "mean_ci_low": None,
        "mean_ci_high": None,
        "t_statistic": None,
        "t_pvalue": None,
        "wilcoxon_statistic": None,
        "wilcoxon_pvalue": None,
        "wilcoxon_options": dict(WILCOXON_OPTIONS),
        "cohens_d": None,
        "notes": notes,
    }
    if n == 0:
        notes.append("no complete pairs")
        return result
    result["mean_difference"] = _float(diff.mean())
    low, high = np.percentile(diff, INTERVAL_PERCENTILES)
    result["difference_p2_5"], result["difference_p97_5"] = _float(low), _float(high)
    if n < 2:
        notes.append("fewer than 2 pairs: no test")
        return result

    sd = float(diff.std(ddof=1))
    result["sd_difference"] = _float(sd)
    if np.all(diff == 0):
        notes.append("all differences are zero: p-values set to 1, Cohen's d to 0")
        result.update(
            t_statistic=0.0, t_pvalue=1.0, wilcoxon_statistic=0.0, wilcoxon_pvalue=1.0, cohens_d=0.0,
            mean_ci_low=0.0, mean_ci_high=0.0,
        )
        return result

    t_test = scipy_stats.ttest_rel(other_array, reference_array)
    interval = t_test.confidence_interval(confidence_level=0.95)
    result.update(
        t_statistic=_float(t_test.statistic),
        t_pvalue=_float(t_test.pvalue),
        mean_ci_low=_float(interval.low),
        mean_ci_high=_float(interval.high),
    )
    if sd == 0:
        notes.append("constant non-zero difference: Cohen's d is infinite (reported as null)")
    else:
        result["cohens_d"] = _float(diff.mean() / sd)
    wilcoxon = scipy_stats.wilcoxon(diff, **WILCOXON_OPTIONS)
    result.update(
        wilcoxon_statistic=_float(wilcoxon.statistic),
        wilcoxon_pvalue=_float(wilcoxon.pvalue),
    )
    return result


def holm(pvalues: Sequence[float | None] | np.ndarray) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values, in the input order.

    ``adjusted[(i)] = max_{j <= i} min(1, (m - j + 1) * p[(j)])`` over the ascending p-values
    (1-based ``j``), as statsmodels' ``multipletests(method="holm")``. Missing values (``None`` or NaN)
    stay missing and do not count in ``m``.
    """
    raw = np.array([math.nan if p is None else float(p) for p in pvalues], dtype=np.float64)
    if np.any((raw < 0) | (raw > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    present = np.flatnonzero(~np.isnan(raw))
    adjusted = np.full(raw.shape, math.nan)
    m = present.size
    if m:
        order = present[np.argsort(raw[present], kind="stable")]
        scaled = np.minimum(1.0, (m - np.arange(m)) * raw[order])
        adjusted[order] = np.maximum.accumulate(scaled)
    return [None if math.isnan(p) else float(p) for p in adjusted]
