"""Feature standardisation and mRMR feature selection (phase 4 of HybridCN-NAS).

:func:`mrmr_select` is a vectorised re-implementation of the FCQ scheme that ``mrmr_selection.mrmr_classif``
uses by default: relevance is the ANOVA F-statistic of a feature against the class, redundancy the mean
absolute Pearson correlation with the features already selected (floored at 0.001), and each step picks
the feature maximising relevance / redundancy. It returns the same features in the same order, but computes
all correlations with a few matrix products instead of one pandas ``corrwith`` per step.

Both the scaler and the selection are fitted on training rows only (:func:`fit_selection`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.feature_selection import f_classif
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

#: Smallest redundancy value, as in ``mrmr_selection`` (keeps the ratio finite for uncorrelated features).
REDUNDANCY_FLOOR = 1e-3
#: Above this many bytes the full feature-feature correlation matrix is not precomputed.
GRAM_MEMORY_LIMIT = 1 << 30


def f_relevance(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """ANOVA F-statistic of every column against the class labels; constant columns get 0."""
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)  # "Features [...] are constant": they score 0 below
        statistic, _ = f_classif(features, labels)
    return np.nan_to_num(statistic, nan=0.0, posinf=0.0, neginf=0.0)


def _unit_columns(features: np.ndarray, dtype) -> np.ndarray:
    """Columns centred and scaled to unit Euclidean norm, so that ``Z.T @ Z`` is the Pearson matrix."""
    centred = features.astype(dtype, copy=True)
    centred -= centred.mean(axis=0, keepdims=True)
    norms = np.linalg.norm(centred, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        centred /= np.where(norms > 0, norms, np.nan)
    return centred


def mrmr_select(
    features: np.ndarray,
    labels: np.ndarray,
    k: int,
    *,
    dtype=np.float64,
    show_progress: bool = False,
) -> np.ndarray:
    """Indices of up to ``k`` columns of ``features`` chosen by mRMR (F-statistic / mean |Pearson r|).

    Columns whose F-statistic is not positive (constant or uninformative) are never chosen, so fewer than
    ``k`` indices come back when fewer columns qualify. The order is the selection order.
    ``dtype=np.float32`` halves time and memory and may reorder near-ties.
    """
    features = np.asarray(features)
    labels = np.asarray(labels)
    if features.ndim != 2 or features.shape[0] != labels.shape[0]:
        raise ValueError(f"features {features.shape} and labels {labels.shape} do not match")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    relevance = f_relevance(features, labels)
    candidates = np.flatnonzero(relevance > 0)
    k = min(k, candidates.size)
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    relevance = relevance[candidates]
    unit = _unit_columns(features[:, candidates], dtype)
    n_candidates = candidates.size
    gram = None
    if n_candidates * n_candidates * unit.itemsize <= GRAM_MEMORY_LIMIT:
        gram = unit.T @ unit

    redundancy_sum = np.zeros(n_candidates, dtype=np.float64)
    available = np.ones(n_candidates, dtype=bool)
    chosen = np.empty(k, dtype=np.int64)
    for step in tqdm(range(k), desc="mRMR", disable=not show_progress, leave=False):
        if step == 0:
            score = relevance.copy()
        else:
            mean_redundancy = redundancy_sum / step
            with np.errstate(divide="ignore"):
                score = np.where(mean_redundancy == 1.0, 0.0, relevance / mean_redundancy)
        score[~available] = -np.inf
        best = int(np.argmax(score))
        chosen[step] = best
        available[best] = False
        if step + 1 < k:
            correlation = gram[best] if gram is not None else unit.T @ unit[:, best]
            correlation = np.nan_to_num(np.abs(correlation), nan=REDUNDANCY_FLOOR)
            redundancy_sum += np.maximum(correlation, REDUNDANCY_FLOOR)
    return candidates[chosen]


def fit_scaler(features: np.ndarray) -> StandardScaler:
    """z-score scaler (scikit-learn) fitted on the given rows; constant columns get scale 1."""
    return StandardScaler().fit(np.asarray(features, dtype=np.float64))


@dataclass
class FeatureSelection:
    """A fitted scaler and mRMR selection: what the Hub model stores as buffers."""

    mean: np.ndarray
    scale: np.ndarray
    indices: np.ndarray

    def transform(self, features: np.ndarray) -> np.ndarray:
        """Standardise with the fitted statistics, then keep the selected columns (in selection order)."""
        standardized = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        return standardized[:, self.indices].astype(np.float32)

    def save(self, path) -> None:
        """Write the three arrays to an ``.npz`` file."""
        np.savez(path, mean=self.mean, scale=self.scale, indices=self.indices)

    @classmethod
    def load(cls, path) -> "FeatureSelection":
        with np.load(path) as arrays:
            return cls(arrays["mean"], arrays["scale"], arrays["indices"])


def fit_selection(
    features: np.ndarray, labels: np.ndarray, train_rows: np.ndarray, k: int, *, show_progress: bool = False
) -> FeatureSelection:
    """Fit the scaler and mRMR on ``train_rows`` only (no other row can influence the result)."""
    train_rows = np.asarray(train_rows)
    train_features = np.asarray(features)[train_rows]
    scaler = fit_scaler(train_features)
    indices = mrmr_select(train_features, np.asarray(labels)[train_rows], k, show_progress=show_progress)
    return FeatureSelection(
        mean=scaler.mean_.astype(np.float64), scale=scaler.scale_.astype(np.float64), indices=indices
    )
