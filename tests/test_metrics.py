"""leuk.metrics against scikit-learn/scipy oracles, ECE by hand, temperature scaling, plots."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar
from scipy.special import softmax
from sklearn import metrics as skm

from leuk.metrics import (
    calibration_bins,
    classification_metrics,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    plot_confusion_matrix,
    plot_roc,
    reliability_diagram,
)


def _random_case(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.arange(k), rng.integers(0, k, n - k)])  # every class present
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    return y, softmax(logits, axis=1)


def test_binary_metrics_match_sklearn():
    y, probs = _random_case(120, 2, seed=1)
    pred = probs.argmax(1)
    m = classification_metrics(y, probs, ["hem", "all"])
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    for avg in ("weighted", "macro"):
        assert m[f"f1_{avg}"] == pytest.approx(skm.f1_score(y, pred, average=avg))
        assert m[f"precision_{avg}"] == pytest.approx(skm.precision_score(y, pred, average=avg))
        assert m[f"recall_{avg}"] == pytest.approx(skm.recall_score(y, pred, average=avg))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, probs[:, 1]))
    assert m["mcc"] == pytest.approx(skm.matthews_corrcoef(y, pred))
    # sensitivity of "all" = its recall; specificity of "all" = recall of "hem"
    assert m["sensitivity"] == pytest.approx(skm.recall_score(y, pred, pos_label=1))
    assert m["specificity"] == pytest.approx(skm.recall_score(y, pred, pos_label=0))
    assert m["positive_label"] == "all"
    assert m["confusion_matrix"] == skm.confusion_matrix(y, pred).tolist()
    assert m["n"] == 120
    json.dumps(m)  # JSON-ready


def test_positive_label_swaps_sensitivity_and_specificity():
    y, probs = _random_case(80, 2, seed=2)
    as_all = classification_metrics(y, probs, ["hem", "all"])
    as_hem = classification_metrics(y, probs, ["hem", "all"], positive_label="hem")
    assert as_hem["sensitivity"] == pytest.approx(as_all["specificity"])
    assert as_hem["specificity"] == pytest.approx(as_all["sensitivity"])
    assert as_hem["roc_auc"] == pytest.approx(skm.roc_auc_score(y == 0, probs[:, 0]))
    with pytest.raises(ValueError, match="positive_label"):
        classification_metrics(y, probs, ["hem", "all"], positive_label="blast")


def test_multiclass_metrics_match_sklearn_and_hand_counts():
    y, probs = _random_case(200, 4, seed=3)
    pred = probs.argmax(1)
    names = ["Benign", "Early", "Pre", "Pro"]
    m = classification_metrics(y, probs, names)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    assert m["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["mcc"] == pytest.approx(skm.matthews_corrcoef(y, pred))
    cm = np.asarray(m["confusion_matrix"])
    sens, spec = [], []
    for c, name in enumerate(names):
        tp = cm[c, c]
        fn = cm[c].sum() - tp
        fp = cm[:, c].sum() - tp
        tn = cm.sum() - tp - fn - fp
        sens.append(tp / (tp + fn))
        spec.append(tn / (tn + fp))
        assert m["per_class"][name]["sensitivity"] == pytest.approx(sens[-1])
        assert m["per_class"][name]["specificity"] == pytest.approx(spec[-1])
        assert m["per_class"][name]["support"] == int((y == c).sum())
    assert m["sensitivity"] == pytest.approx(np.mean(sens))
    assert m["specificity"] == pytest.approx(np.mean(spec))


def test_auc_is_none_when_one_class_is_absent():
    probs = np.array([[0.2, 0.8], [0.4, 0.6], [0.7, 0.3]])
    m = classification_metrics([1, 1, 1], probs, ["hem", "all"])
    assert m["roc_auc"] is None
    assert m["per_class"]["hem"]["sensitivity"] is None  # no hem cells: undefined, not 0
    assert m["accuracy"] == pytest.approx(2 / 3)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="labels must lie"):
        classification_metrics([0, 2], np.full((2, 2), 0.5), ["a", "b"])
    with pytest.raises(ValueError, match="label names"):
        classification_metrics([0, 1], np.full((2, 2), 0.5), ["a", "b", "c"])


def test_ece_by_hand():
    # top confidences 0.95 (right), 0.95 (wrong), 0.62 (right), 0.55 (right); 15 bins of width 1/15:
    # 0.95 -> bin 14 (acc 0.5), 0.62 -> bin 9 (acc 1), 0.55 -> bin 8 (acc 1)
    probs = np.array([[0.05, 0.95], [0.95, 0.05], [0.38, 0.62], [0.55, 0.45]])
    y = np.array([1, 1, 1, 0])
    expected = 2 / 4 * abs(0.5 - 0.95) + 1 / 4 * abs(1 - 0.62) + 1 / 4 * abs(1 - 0.55)
    assert expected_calibration_error(y, probs) == pytest.approx(0.4325)
    assert expected_calibration_error(y, probs) == pytest.approx(expected)
    bins = calibration_bins(y, probs)
    assert bins["count"].tolist() == [0] * 8 + [1, 1] + [0] * 4 + [2]
    assert classification_metrics(y, probs, ["hem", "all"])["ece"] == pytest.approx(expected)


def _ece_loop(y: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    conf, pred = probs.max(1), probs.argmax(1)
    total = 0.0
    for b in range(n_bins):
        low, high = b / n_bins, (b + 1) / n_bins
        inside = (conf > low) & (conf <= high) if b else (conf >= 0) & (conf <= high)
        if inside.any():
            total += inside.sum() / len(y) * abs((pred[inside] == y[inside]).mean() - conf[inside].mean())
    return total


@given(st.integers(min_value=3, max_value=60), st.integers(min_value=2, max_value=5), st.integers(0, 10_000))
def test_ece_matches_a_plain_loop(n, k, seed):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(k), size=n)
    y = rng.integers(0, k, n)
    assert expected_calibration_error(y, probs) == pytest.approx(_ece_loop(y, probs), abs=1e-12)


def test_fit_temperature_recovers_overconfidence_and_lowers_nll():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(scale=2.0, size=(3000, 3))
    y = np.array([rng.choice(3, p=p) for p in softmax(true_logits, axis=1)])
    overconfident = 2.5 * true_logits
    t = fit_temperature(overconfident, y)
    assert t == pytest.approx(2.5, rel=0.1)
    assert negative_log_likelihood(overconfident, y, t) < negative_log_likelihood(overconfident, y, 1.0)
    # scipy oracle: direct bounded minimisation of the NLL over T
    oracle = minimize_scalar(lambda temp: negative_log_likelihood(overconfident, y, temp), bounds=(0.05, 20),
                             method="bounded", options={"xatol": 1e-8}).x
    assert t == pytest.approx(oracle, rel=1e-3)


def test_fit_temperature_accepts_torch_and_stays_positive():
    torch = pytest.importorskip("torch")
    logits = torch.tensor([[4.0, -4.0], [3.0, -3.0], [-2.0, 2.0], [5.0, -5.0]])
    labels = torch.tensor([0, 1, 1, 0])  # one confident mistake: the fit must soften
    t = fit_temperature(logits, labels)
    assert t > 1.0
    assert negative_log_likelihood(logits, labels, t) < negative_log_likelihood(logits, labels, 1.0)


def test_nll_matches_sklearn_log_loss():
    y, probs = _random_case(50, 3, seed=4)
    logits = np.log(probs)
    assert negative_log_likelihood(logits, y) == pytest.approx(skm.log_loss(y, probs, labels=[0, 1, 2]))


def test_plots_render(tmp_path):
    y, probs = _random_case(60, 2, seed=5)
    m = classification_metrics(y, probs, ["hem", "all"])
    figures = {
        "cm.png": plot_confusion_matrix(m["confusion_matrix"], ["hem", "all"]),
        "roc.png": plot_roc(y, probs, ["hem", "all"]),
        "rel.png": reliability_diagram(y, probs),
    }
    for name, figure in figures.items():
        figure.savefig(tmp_path / name)
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cells = [t.get_text() for t in figures["cm.png"].axes[0].texts]
    assert sorted(map(int, cells)) == sorted(np.asarray(m["confusion_matrix"]).ravel().tolist())
    roc_axes = figures["roc.png"].axes[0]
    assert f"AUC {m['roc_auc']:.3f}" in roc_axes.get_legend_handles_labels()[1][0]
    y4, probs4 = _random_case(80, 4, seed=6)
    assert len(plot_roc(y4, probs4, list("abcd")).axes[0].get_legend_handles_labels()[1]) == 4
