"""Every evaluation metric leuk reports, binary and multi-class, plus calibration and evaluation plots.

Scores come from scikit-learn wherever it has them; leuk adds only what it lacks (specificity, expected
calibration error, temperature scaling). Results are plain JSON-ready Python values.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    matthews_corrcoef,
    multilabel_confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

#: Number of equal-width confidence bins of the expected calibration error (Guo et al., 2017).
ECE_BINS = 15
#: Temperatures :func:`fit_temperature` may return; the NLL is convex in 1/T, so the search is exact.
TEMPERATURE_BOUNDS = (0.05, 20.0)

__all__ = [
    "ECE_BINS",
    "TEMPERATURE_BOUNDS",
    "DETECTION_IOU",
    "box_iou",
    "calibration_bins",
    "classification_metrics",
    "expected_calibration_error",
    "fit_temperature",
    "format_metrics",
    "match_boxes", "match_pairs",
    "negative_log_likelihood",
    "plot_confusion_matrix",
    "plot_roc",
    "reliability_diagram",
    "softmax",
]


def _as_numpy(values: Any, dtype=None) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor (bf16 included), without importing torch here
        values = values.detach().cpu()
        values = (values.double() if values.is_floating_point() else values).numpy()
    return np.asarray(values, dtype=dtype)


def _check_inputs(y_true: Any, probs: Any) -> tuple[np.ndarray, np.ndarray]:
    labels = _as_numpy(y_true, np.int64).reshape(-1)
    probabilities = _as_numpy(probs, np.float64)
    if probabilities.ndim != 2:
        raise ValueError(f"probs must be an (n_samples, n_classes) array, got shape {probabilities.shape}")
    if len(labels) != len(probabilities):
        raise ValueError(f"{len(labels)} labels but {len(probabilities)} probability rows")
    if len(labels) == 0:
        raise ValueError("no samples to evaluate")
    n_classes = probabilities.shape[1]
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"labels must lie in 0..{n_classes - 1}, got {labels.min()}..{labels.max()}")
    return labels, probabilities


def _positive_index(label_names: Sequence[str], positive_label: str | int | None) -> int:
    if positive_label is None:
        return 1
    if isinstance(positive_label, (int, np.integer)):
        if not 0 <= positive_label < len(label_names):
            raise ValueError(f"positive_label {positive_label} is not a class index of {list(label_names)}")
        return int(positive_label)
    names = [str(name).lower() for name in label_names]
    if str(positive_label).lower() not in names:
        raise ValueError(f"positive_label {positive_label!r} is not one of {list(label_names)}")
    return names.index(str(positive_label).lower())


def calibration_bins(y_true: Any, probs: Any, n_bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Equal-width bins on the top probability: per bin ``count``, ``accuracy``, ``confidence`` and ``edges``.

    Bin ``b`` holds confidences in ``(edges[b], edges[b+1]]``; the first bin also holds exactly 0.
    Empty bins have count 0 and NaN accuracy/confidence.
    """
    labels, probabilities = _check_inputs(y_true, probs)
    confidence = probabilities.max(axis=1)
    correct = (probabilities.argmax(axis=1) == labels).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bin_of = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(bin_of, minlength=n_bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(bin_of, weights=correct, minlength=n_bins) / count
        mean_confidence = np.bincount(bin_of, weights=confidence, minlength=n_bins) / count
    return {"edges": edges, "count": count, "accuracy": accuracy, "confidence": mean_confidence}


def expected_calibration_error(y_true: Any, probs: Any, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error: ``sum_b |B_b|/n * |accuracy(B_b) - confidence(B_b)|`` over equal-width bins."""
    bins = calibration_bins(y_true, probs, n_bins)
    filled = bins["count"] > 0
    gaps = np.abs(bins["accuracy"][filled] - bins["confidence"][filled])
    return float(np.sum(bins["count"][filled] * gaps) / bins["count"].sum())


def classification_metrics(
    y_true: Any,
    probs: Any,
    label_names: Sequence[str],
    *,
    positive_label: str | int | None = None,
) -> dict[str, Any]:
    """All evaluation figures of one set of predictions (the predicted class is the arg-max of ``probs``).

    ``y_true`` holds class indices, ``probs`` an ``(n, k)`` array of class probabilities and ``label_names``
    the ``k`` class names. Binary tasks report ROC AUC, sensitivity and specificity of ``positive_label``
    (a name or index; default index 1, i.e. "all" for C-NMC). Multi-class tasks report one-vs-rest macro
    AUC and the macro mean of per-class one-vs-rest sensitivity/specificity. ``per_class`` holds each
    class's sensitivity, specificity, precision, F1 and support. Undefined figures (an AUC with one class
    present) are ``None``.
    """
    labels, probabilities = _check_inputs(y_true, probs)
    n_classes = probabilities.shape[1]
    if len(label_names) != n_classes:
        raise ValueError(f"{len(label_names)} label names for {n_classes} probability columns")
    class_ids = list(range(n_classes))
    predicted = probabilities.argmax(axis=1)

    result: dict[str, Any] = {"accuracy": float(accuracy_score(labels, predicted))}
    for average in ("weighted", "macro"):
        precision, recall, f1, _ = precision_recall_fscore_support(
            labels, predicted, labels=class_ids, average=average, zero_division=0
        )
        result[f"precision_{average}"] = float(precision)
        result[f"recall_{average}"] = float(recall)
        result[f"f1_{average}"] = float(f1)

    present = np.unique(labels)
    if n_classes == 2:
        positive = _positive_index(label_names, positive_label)
        result["roc_auc"] = (
            float(roc_auc_score(labels == positive, probabilities[:, positive])) if len(present) == 2 else None
        )
    else:
        positive = None
        normalised = probabilities / probabilities.sum(axis=1, keepdims=True)
        result["roc_auc"] = (
            float(roc_auc_score(labels, normalised, multi_class="ovr", average="macro", labels=class_ids))
            if len(present) == n_classes
            else None
        )
    result["mcc"] = float(matthews_corrcoef(labels, predicted))

    # one-vs-rest counts per class: [[TN, FP], [FN, TP]]
    per_class_counts = multilabel_confusion_matrix(labels, predicted, labels=class_ids)
    precision_c, _, f1_c, support_c = precision_recall_fscore_support(
        labels, predicted, labels=class_ids, average=None, zero_division=0
    )
    per_class: dict[str, dict[str, float | int | None]] = {}
    for index, name in enumerate(label_names):
        (tn, fp), (fn, tp) = per_class_counts[index]
        per_class[str(name)] = {
            "sensitivity": float(tp / (tp + fn)) if tp + fn else None,
            "specificity": float(tn / (tn + fp)) if tn + fp else None,
            "precision": float(precision_c[index]),
            "f1": float(f1_c[index]),
            "support": int(support_c[index]),
        }
    if positive is not None:
        result["sensitivity"] = per_class[str(label_names[positive])]["sensitivity"]
        result["specificity"] = per_class[str(label_names[positive])]["specificity"]
        result["positive_label"] = str(label_names[positive])
    else:
        for key in ("sensitivity", "specificity"):
            values = [entry[key] for entry in per_class.values() if entry[key] is not None]
            result[key] = float(np.mean(values)) if values else None
    result["per_class"] = per_class
    result["ece"] = expected_calibration_error(labels, probabilities)
    result["confusion_matrix"] = confusion_matrix(labels, predicted, labels=class_ids).tolist()
    result["label_names"] = [str(name) for name in label_names]
    result["n"] = int(len(labels))
    return result


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of an ``(N, classes)`` array, numerically stable."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def negative_log_likelihood(logits: Any, labels: Any, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``."""
    scores = _as_numpy(logits, np.float64)
    targets = _as_numpy(labels, np.int64).reshape(-1)
    log_probs = log_softmax(scores / temperature, axis=1)
    return float(-log_probs[np.arange(len(targets)), targets].mean())


def fit_temperature(logits: Any, labels: Any) -> float:
    """Temperature ``T > 0`` minimising the NLL of ``softmax(logits / T)`` (Guo et al., 2017).

    Fit it on VALIDATION logits computed with temperature 1, never on test data. The NLL is convex in
    ``1/T``, so a bounded scalar search finds the optimum within :data:`TEMPERATURE_BOUNDS`.
    """
    scores = _as_numpy(logits, np.float64)
    targets = _as_numpy(labels, np.int64).reshape(-1)
    if scores.ndim != 2 or len(scores) != len(targets) or len(targets) == 0:
        raise ValueError(f"need (n, k) logits and n labels, got {scores.shape} and {targets.shape}")
    low, high = TEMPERATURE_BOUNDS
    search = minimize_scalar(
        lambda inverse_t: negative_log_likelihood(scores, targets, 1.0 / inverse_t),
        bounds=(1.0 / high, 1.0 / low),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(1.0 / search.x)


def format_metrics(metrics: dict[str, Any], keys: Sequence[str] | None = None) -> str:
    """A short two-column text table of the scalar figures of :func:`classification_metrics`."""
    keys = keys or (
        "n", "accuracy", "f1_weighted", "f1_macro", "precision_weighted", "recall_weighted",
        "roc_auc", "mcc", "sensitivity", "specificity", "ece",
    )
    width = max(len(key) for key in keys)
    lines = []
    for key in keys:
        value = metrics.get(key)
        text = "n/a" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))
        lines.append(f"{key:<{width}}  {text}")
    return "\n".join(lines)


def reliability_diagram(y_true: Any, probs: Any, *, n_bins: int = ECE_BINS, title: str | None = None) -> Figure:
    """Accuracy against confidence per bin, with the diagonal of perfect calibration and the ECE."""
    bins = calibration_bins(y_true, probs, n_bins)
    ece = expected_calibration_error(y_true, probs, n_bins)
    edges, width = bins["edges"][:-1], 1.0 / n_bins
    filled = bins["count"] > 0
    figure = Figure(figsize=(4.5, 4.5), dpi=100)
    axes = figure.subplots()
    axes.bar(edges[filled], bins["accuracy"][filled], width=width, align="edge",
             edgecolor="black", color="tab:blue", label="accuracy")
    gap_bottom = np.minimum(bins["accuracy"][filled], bins["confidence"][filled])
    gap_height = np.abs(bins["accuracy"][filled] - bins["confidence"][filled])
    axes.bar(edges[filled], gap_height, bottom=gap_bottom, width=width, align="edge",
             color="tab:red", alpha=0.35, hatch="//", label="gap")
    axes.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top probability)", ylabel="accuracy",
             title=title or f"Reliability diagram (ECE {ece:.3f})")
    axes.legend(loc="upper left", fontsize="small")
    figure.tight_layout()
    return figure


def plot_confusion_matrix(
    matrix: Any, label_names: Sequence[str], *, normalize: bool = False, title: str = "Confusion matrix"
) -> Figure:
    """Heat map of a confusion matrix (rows: true class, columns: predicted), counts written in the cells."""
    counts = np.asarray(matrix, dtype=np.float64)
    shown = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if normalize else counts
    size = 1.2 + 0.9 * len(label_names)
    figure = Figure(figsize=(size + 1, size), dpi=100)
    axes = figure.subplots()
    image = axes.imshow(shown, cmap="Blues", vmin=0)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    ticks = np.arange(len(label_names))
    axes.set_xticks(ticks, labels=label_names, rotation=45, ha="right")
    axes.set_yticks(ticks, labels=label_names)
    axes.set(xlabel="predicted", ylabel="true", title=title)
    threshold = shown.max() / 2 if shown.size else 0
    for row in range(shown.shape[0]):
        for column in range(shown.shape[1]):
            text = f"{shown[row, column]:.2f}" if normalize else f"{int(counts[row, column])}"
            axes.text(column, row, text, ha="center", va="center",
                      color="white" if shown[row, column] > threshold else "black")
    figure.tight_layout()
    return figure


def plot_roc(
    y_true: Any, probs: Any, label_names: Sequence[str], *, positive_label: str | int | None = None
) -> Figure:
    """ROC curve of the positive class (binary) or one one-vs-rest curve per class (multi-class)."""
    labels, probabilities = _check_inputs(y_true, probs)
    n_classes = probabilities.shape[1]
    classes = [_positive_index(label_names, positive_label)] if n_classes == 2 else list(range(n_classes))
    figure = Figure(figsize=(4.5, 4.5), dpi=100)
    axes = figure.subplots()
    for index in classes:
        is_class = labels == index
        if is_class.all() or not is_class.any():
            continue  # a curve needs both classes
        fpr, tpr, _ = roc_curve(is_class, probabilities[:, index])
        auc = roc_auc_score(is_class, probabilities[:, index])
        axes.plot(fpr, tpr, label=f"{label_names[index]} (AUC {auc:.3f})")
    axes.plot([0, 1], [0, 1], linestyle="--", color="gray")
    axes.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate",
             title="ROC curve" if n_classes == 2 else "ROC curves (one-vs-rest)")
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    return figure


#: Overlap (intersection over union) at which a detected box finds a true one.
DETECTION_IOU = 0.5


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes (x0, y0, x1, y1), x1/y1 exclusive (``torchvision.ops.box_iou`` is the
    oracle in the tests)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return float(ix * iy / union) if union > 0 else 0.0


def match_boxes(truth: Sequence[Sequence[float]], found: Sequence[Sequence[float]],
                ignore: Sequence[Sequence[float]] = (), iou: float = DETECTION_IOU) -> tuple[int, int]:
    """(matches, detections counted) of a detector on one picture: greedy one-to-one matches with IoU >= ``iou``,
    largest IoU first; a detection left unmatched that covers an ``ignore`` box (a smudge) with IoU >= ``iou`` is
    neither right nor wrong and not counted. Precision is matches / counted, recall matches / len(truth)."""
    pairs = match_pairs(truth, found, iou)
    used_found = {j for _, j in pairs}
    ignored = sum(1 for j, f in enumerate(found)
                  if j not in used_found and any(box_iou(s, f) >= iou for s in ignore))
    return len(pairs), len(found) - ignored


def match_pairs(first: Sequence[Sequence[float]], second: Sequence[Sequence[float]],
                iou: float = DETECTION_IOU) -> list[tuple[int, int]]:
    """Greedy one-to-one pairs ``(i, j)`` of ``first[i]`` and ``second[j]`` with IoU >= ``iou``, largest IoU first."""
    ranked = sorted(((box_iou(a, b), i, j) for i, a in enumerate(first) for j, b in enumerate(second)), reverse=True)
    used_first: set[int] = set()
    used_second: set[int] = set()
    pairs = []
    for overlap, i, j in ranked:
        if overlap < iou:
            break
        if i not in used_first and j not in used_second:
            used_first.add(i)
            used_second.add(j)
            pairs.append((i, j))
    return pairs
