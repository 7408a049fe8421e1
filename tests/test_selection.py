"""mRMR and standardisation (leuk.selection) against mrmr_selection and scikit-learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.preprocessing import StandardScaler

from leuk import selection
from leuk.selection import FeatureSelection, fit_selection, mrmr_select


def correlated_features(n: int = 300, p: int = 500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Low-rank, class-dependent features with noise, a constant column and a duplicated column."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    latent = rng.normal(size=(n, 24)) + rng.normal(size=(4, 24))[labels] * 0.6
    features = latent @ rng.normal(size=(24, p)) + rng.normal(size=(n, p)) * 2.0
    features[:, 7] = 3.0
    features[:, 11] = features[:, 3]
    return features, labels


@pytest.mark.filterwarnings("ignore:Features .* are constant")
def test_mrmr_matches_mrmr_selection() -> None:
    from mrmr import mrmr_classif

    features, labels = correlated_features()
    k = 25
    expected = mrmr_classif(pd.DataFrame(features), pd.Series(labels), K=k, n_jobs=1, show_progress=False)
    chosen = mrmr_select(features, labels, k)
    assert chosen.tolist() == [int(i) for i in expected]
    assert 7 not in chosen  # a constant column is never chosen


def test_gram_and_streaming_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    features, labels = correlated_features(200, 120, seed=1)
    with_gram = mrmr_select(features, labels, 40)
    monkeypatch.setattr(selection, "GRAM_MEMORY_LIMIT", 0)
    assert mrmr_select(features, labels, 40).tolist() == with_gram.tolist()


def test_fewer_informative_columns_than_k() -> None:
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1], 20)
    features = np.zeros((40, 5))
    features[:, 1] = labels + rng.normal(0, 0.1, 40)
    features[:, 3] = rng.normal(size=40)
    chosen = mrmr_select(features, labels, 5)
    assert set(chosen.tolist()) <= {1, 3} and chosen[0] == 1
    with pytest.raises(ValueError):
        mrmr_select(features, labels, 0)


def test_fit_selection_uses_training_rows_only() -> None:
    features, labels = correlated_features(160, 80, seed=3)
    train = np.arange(0, 100)
    test = np.arange(100, 160)
    fitted = fit_selection(features, labels, train, 20)
    scaler = StandardScaler().fit(features[train])
    np.testing.assert_allclose(fitted.mean, scaler.mean_)
    np.testing.assert_allclose(fitted.scale, scaler.scale_)

    altered, altered_labels = features.copy(), labels.copy()
    altered[test] = np.random.default_rng(4).normal(50, 9, altered[test].shape)
    altered_labels[test] = (altered_labels[test] + 1) % 4
    refit = fit_selection(altered, altered_labels, train, 20)
    np.testing.assert_array_equal(refit.mean, fitted.mean)
    np.testing.assert_array_equal(refit.scale, fitted.scale)
    np.testing.assert_array_equal(refit.indices, fitted.indices)


def test_transform_and_round_trip(tmp_path) -> None:
    features, labels = correlated_features(120, 40, seed=5)
    fitted = fit_selection(features, labels, np.arange(120), 10)
    transformed = fitted.transform(features)
    expected = StandardScaler().fit_transform(features)[:, fitted.indices]
    np.testing.assert_allclose(transformed, expected, rtol=1e-5, atol=1e-5)
    fitted.save(tmp_path / "selection.npz")
    loaded = FeatureSelection.load(tmp_path / "selection.npz")
    np.testing.assert_array_equal(loaded.indices, fitted.indices)
    np.testing.assert_array_equal(loaded.transform(features), transformed)
