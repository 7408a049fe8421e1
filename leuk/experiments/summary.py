"""The format of a Monte Carlo run's results and its summary: the results table's identifying columns,
the split sizes of runs that do not record them, :func:`summarize` (per-model descriptions, paired tests with Holm correction,
the leakage gap) and its Markdown rendering. numpy/pandas/scipy only."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from leuk.data.splits import PROTOCOLS
from leuk.defaults import TEST_SIZE, VAL_SIZE  # re-exported: the defaults of a new run
from leuk.errors import LeukError
from leuk.experiments.stats import describe, holm, paired_tests

__all__ = [
    "FROZEN_RANDOM_NOTE",
    "HEADLINE_METRICS",
    "HOLM_FAMILY",
    "ID_COLUMNS",
    "SUMMARY_FORMAT",
    "TEST_SIZE",
    "UNRECORDED_SPLIT",
    "VAL_SIZE",
    "MonteCarloError",
    "describe_run",
    "json_ready",
    "metric_columns",
    "paired_values",
    "summarize",
    "summary_markdown",
]

ID_COLUMNS = ["iteration", "seed", "model", "protocol", "train_hash", "val_hash", "test_hash",
              "n_train", "n_val", "n_test"]
SUMMARY_FORMAT = "leuk-montecarlo-summary/1"
#: Metrics shown first (and plotted) when present.
HEADLINE_METRICS = ("f1_weighted", "accuracy", "roc_auc", "mcc", "sensitivity", "specificity")
#: Split fractions of a run that does not record them (runs before ``run.json`` had ``split``): test 0.2,
#: validation 0.12 of each label's subjects. New runs take :mod:`leuk.defaults` and record what they used.
UNRECORDED_SPLIT = {"test_size": 0.2, "val_size": 0.12}
HOLM_FAMILY = "per protocol, metric and test: all models compared with the reference"


class MonteCarloError(LeukError, ValueError):
    """A Monte Carlo run that cannot start or merge (bad options, a folder holding another run)."""


def json_ready(value: Any) -> Any:
    """NaN/inf -> None, numpy scalars -> Python, recursively (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def metric_columns(results: pd.DataFrame) -> list[str]:
    """The metric columns of a results table, headline metrics first."""
    metrics = [c for c in results.columns if c not in ID_COLUMNS and c != "confusion_matrix"]
    return [m for m in HEADLINE_METRICS if m in metrics] + [m for m in metrics if m not in HEADLINE_METRICS]


def paired_values(results: pd.DataFrame, protocol: str, model: str, metric: str) -> pd.Series:
    """One model's metric per iteration (index: iteration, sorted) under one protocol."""
    rows = results[(results["protocol"] == protocol) & (results["model"] == model)]
    return rows.set_index("iteration")[metric].sort_index()


def _aligned(a: pd.Series, b: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    common = a.index.intersection(b.index)
    return a.loc[common].to_numpy(np.float64), b.loc[common].to_numpy(np.float64)


def _with_holm(tests: dict[str, dict[str, Any]]) -> None:
    names = list(tests)
    for key in ("t_pvalue", "wilcoxon_pvalue"):
        for name, adjusted in zip(names, holm([tests[n][key] for n in names])):
            tests[name][f"{key}_holm"] = adjusted


def summarize(results: pd.DataFrame, reference: str, *, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Per protocol, model and metric: :func:`~leuk.experiments.stats.describe`; per protocol and metric,
    each model against ``reference``: :func:`~leuk.experiments.stats.paired_tests` (``other - reference``,
    paired by iteration) with Holm-adjusted p-values across the models; with both protocols, the leakage
    gap (image − patient) of each model and metric with its tests."""
    metrics = metric_columns(results)
    models = list(dict.fromkeys(config["models"] if config else results["model"]))
    protocols = [p for p in PROTOCOLS if p in set(results["protocol"])]
    others = [m for m in models if m != reference]
    split_sizes = (config or {}).get("split") or {}
    test_size = split_sizes.get("test_size", UNRECORDED_SPLIT["test_size"])
    val_size = split_sizes.get("val_size", UNRECORDED_SPLIT["val_size"])
    summary: dict[str, Any] = {
        "format": SUMMARY_FORMAT,
        "reference": reference,
        "models": models,
        "synthetic": (config or {}).get("synthetic"),
        "protocols_run": protocols,
        "metrics": metrics,
        "n_iterations": int(results["iteration"].nunique()),
        "differences": "other - reference (positive: the model scores higher than the reference)",
        "intervals": "p2_5/p97_5: 2.5 and 97.5 percentiles over iterations; mean_ci_*: 95% t interval of the mean",
        "holm_family": HOLM_FAMILY,
        "splits": ("regenerate iteration i's split with leuk.data.splits.train_val_test_split(labels, groups, "
                   f"test_size={test_size}, val_size={val_size}, seed=<row seed>, protocol=<row protocol>); its "
                   "leuk.experiments.montecarlo.split_hashes equal the row's hashes"),
        "config": config or {},
        "protocols": {},
    }
    for protocol in protocols:
        block: dict[str, Any] = {"models": {}, "comparisons": {}}
        for model in models:
            block["models"][model] = {m: describe(paired_values(results, protocol, model, m)) for m in metrics}
        for metric in metrics:
            ref_values = paired_values(results, protocol, reference, metric)
            tests = {}
            for model in others:
                ref, other = _aligned(ref_values, paired_values(results, protocol, model, metric))
                tests[model] = paired_tests(ref, other)
            _with_holm(tests)
            block["comparisons"][metric] = tests
        summary["protocols"][protocol] = block
    if set(PROTOCOLS) <= set(protocols):
        gap: dict[str, Any] = {"definition": "image-protocol score - patient-protocol score, paired by iteration",
                               "metrics": {}}
        for metric in metrics:
            tests = {}
            for model in models:
                patient, image = _aligned(paired_values(results, "patient", model, metric),
                                          paired_values(results, "image", model, metric))
                tests[model] = paired_tests(patient, image)
            _with_holm(tests)
            gap["metrics"][metric] = tests
        summary["leakage_gap"] = gap
    return json_ready(summary)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if value != 0 and abs(value) < 10 ** -digits:
            return f"{value:.1e}"
        return f"{value:.{digits}f}"
    return str(value)


def _interval(low: Any, high: Any) -> str:
    return f"[{_fmt(low)}, {_fmt(high)}]"


#: What a features-mode run on randomly initialised presets measures (shown wherever such a run appears).
FROZEN_RANDOM_NOTE = ("frozen random-init features: no ImageNet weights; measures the protocol, not the paper's "
                      "model")


def describe_run(config: dict[str, Any]) -> str:
    """One line saying what a run's figures are: which data, which splits, which weights (from ``run.json``)."""
    if config.get("synthetic"):
        data = "SYNTHETIC data (leuk synth), not patients"
    elif config.get("synthetic") is False:
        kind = {"cnmc": "C-NMC", "aria": "Aria"}.get(str(config.get("dataset_kind")), "")
        data = f"real {kind} images".replace("  ", " ")
    else:
        data = "data"
    text = f"{data}: {config.get('n_images')} images of {config.get('n_patients')} subjects"
    split = config.get("split") or {}
    if split.get("test_size") is not None:
        text += (f"; subject-grouped splits (test {split['test_size']:g}, validation {split.get('val_size', 0):g} "
                 "of each class's subjects)")
    if config.get("mode") == "features":
        if config.get("pretrained"):
            text += "; frozen ImageNet features, a light head trained per iteration"
        else:
            text += f"; {FROZEN_RANDOM_NOTE} (a light head is trained per iteration)"
    elif config.get("mode") == "finetune":
        weights = "ImageNet-initialised" if config.get("pretrained") else "randomly initialised"
        text += f"; whole model trained per iteration, {weights}"
    return text


def summary_markdown(summary: dict[str, Any], metrics: Sequence[str] | None = None) -> str:
    """A human-readable rendering of :func:`summarize` (Markdown tables)."""
    metrics = list(metrics or summary["metrics"])
    config = summary.get("config") or {}
    lines = [
        "# Monte Carlo validation",
        "",
        f"{summary['n_iterations']} iterations; models: {', '.join(summary['models'])}; "
        f"reference: **{summary['reference']}**; protocols: {', '.join(summary['protocols_run'])}"
        + (f"; mode: {config['mode']}; seed {config['seed']}" if config else "") + ".",
    ]
    if config:
        lines += ["", describe_run(config) + "."]
    lines += [
        "",
        "Intervals are the 2.5–97.5 percentiles over iterations. Differences are model − reference, paired by "
        f"iteration; p-values are two-sided, Holm-adjusted {summary['holm_family']}.",
    ]
    for protocol, block in summary["protocols"].items():
        lines += ["", f"## {protocol}-level protocol", "",
                  "| model | metric | mean | sd | median | [2.5%, 97.5%] |", "|---|---|---|---|---|---|"]
        for model, per_metric in block["models"].items():
            for metric in metrics:
                d = per_metric[metric]
                lines.append(f"| {model} | {metric} | {_fmt(d['mean'])} | {_fmt(d['sd'])} | {_fmt(d['median'])} | "
                             f"{_interval(d['p2_5'], d['p97_5'])} |")
        if any(block["comparisons"].get(m) for m in metrics):
            lines += ["", f"### Against {summary['reference']} ({protocol} protocol)", "",
                      "| metric | model | mean diff | [2.5%, 97.5%] of diff | Cohen's d | t p | t p (Holm) | "
                      "Wilcoxon p | Wilcoxon p (Holm) |", "|---|---|---|---|---|---|---|---|---|"]
            for metric in metrics:
                for model, t in block["comparisons"][metric].items():
                    lines.append(
                        f"| {metric} | {model} | {_fmt(t['mean_difference'])} | "
                        f"{_interval(t['difference_p2_5'], t['difference_p97_5'])} | {_fmt(t['cohens_d'], 2)} | "
                        f"{_fmt(t['t_pvalue'])} | "
                        f"{_fmt(t['t_pvalue_holm'])} | {_fmt(t['wilcoxon_pvalue'])} | "
                        f"{_fmt(t['wilcoxon_pvalue_holm'])} |")
    gap = summary.get("leakage_gap")
    if gap:
        lines += ["", "## Leakage gap (image − patient protocol)", "",
                  "An image-level split puts cells of the same subject in training and test sets; the gap is "
                  "how much that flatters each score.", "",
                  "| model | metric | mean gap | [2.5%, 97.5%] | 95% CI of mean | t p (Holm) | Wilcoxon p (Holm) |",
                  "|---|---|---|---|---|---|---|"]
        for metric in metrics:
            for model, t in gap["metrics"][metric].items():
                lines.append(
                    f"| {model} | {metric} | {_fmt(t['mean_difference'])} | "
                    f"{_interval(t['difference_p2_5'], t['difference_p97_5'])} | "
                    f"{_interval(t['mean_ci_low'], t['mean_ci_high'])} | "
                    f"{_fmt(t['t_pvalue_holm'])} | {_fmt(t['wilcoxon_pvalue_holm'])} |")
    lines += ["", "## Reproducing a split", "", summary["splits"] + ".", ""]
    return "\n".join(lines)
