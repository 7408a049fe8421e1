"""Monte Carlo charts: chart data as long-format tables, and PNG figures drawn from them.

The ``*_frame`` functions and :func:`plot_data` need only pandas (the apps import them to draw interactive
charts); matplotlib is imported inside the drawing functions, which build ``Figure`` objects without pyplot.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from leuk.io import atomic_output

#: Metrics drawn by default (those present in the results).
PLOTTED_METRICS = ("f1_weighted", "accuracy", "roc_auc", "mcc")
_ID = ["iteration", "protocol", "model"]


def _metrics(results: pd.DataFrame, metrics: Sequence[str] | None) -> list[str]:
    from_results = [c for c in results.columns if c not in
                    {"iteration", "seed", "model", "protocol", "train_hash", "val_hash", "test_hash",
                     "n_train", "n_val", "n_test", "confusion_matrix"}]
    wanted = list(metrics) if metrics else [m for m in PLOTTED_METRICS if m in from_results]
    return [m for m in wanted if m in from_results]


def metric_frame(results: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Columns ``iteration, protocol, model, metric, value``: one row per result and metric."""
    metrics = _metrics(results, metrics)
    frame = results.melt(id_vars=_ID, value_vars=metrics, var_name="metric", value_name="value")
    order = {"metric": {m: i for i, m in enumerate(metrics)}, "protocol": {"patient": 0, "image": 1},
             "model": {m: i for i, m in enumerate(dict.fromkeys(results["model"]))}}
    frame = frame.sort_values(["metric", "protocol", "model", "iteration"], kind="stable",
                              key=lambda column: column.map(order[column.name]) if column.name in order else column)
    return frame.reset_index(drop=True)


def difference_frame(results: pd.DataFrame, reference: str, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Columns ``iteration, protocol, model, metric, difference`` (model − reference, paired by iteration)."""
    long = metric_frame(results, metrics)
    ref = long[long["model"] == reference].drop(columns="model").rename(columns={"value": "reference_value"})
    merged = long[long["model"] != reference].merge(ref, on=["iteration", "protocol", "metric"], how="inner")
    merged["difference"] = merged["value"] - merged["reference_value"]
    return merged[["iteration", "protocol", "model", "metric", "difference"]].reset_index(drop=True)


def leakage_frame(results: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Columns ``iteration, model, metric, gap`` (image − patient protocol, paired by iteration); empty
    unless both protocols ran."""
    long = metric_frame(results, metrics)
    patient = long[long["protocol"] == "patient"].drop(columns="protocol")
    image = long[long["protocol"] == "image"].drop(columns="protocol")
    merged = image.merge(patient, on=["iteration", "model", "metric"], suffixes=("_image", "_patient"))
    merged["gap"] = merged["value_image"] - merged["value_patient"]
    return merged[["iteration", "model", "metric", "gap"]].reset_index(drop=True)


def pvalue_frame(summary: dict[str, Any], metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """The tests of a summary as a table: ``comparison, protocol, metric, model, mean_difference, cohens_d``,
    raw and Holm-adjusted t-test and Wilcoxon p-values. ``comparison`` is ``vs <reference>`` or ``leakage gap``."""
    rows = []
    wanted = set(metrics) if metrics else None
    blocks = [(f"vs {summary['reference']}", protocol, block["comparisons"])
              for protocol, block in summary.get("protocols", {}).items()]
    if summary.get("leakage_gap"):
        blocks.append(("leakage gap", "image - patient", summary["leakage_gap"]["metrics"]))
    for comparison, protocol, per_metric in blocks:
        for metric, per_model in per_metric.items():
            if wanted is not None and metric not in wanted:
                continue
            for model, test in per_model.items():
                rows.append({"comparison": comparison, "protocol": protocol, "metric": metric, "model": model,
                             **{key: test.get(key) for key in (
                                 "mean_difference", "difference_p2_5", "difference_p97_5", "cohens_d", "t_pvalue",
                                 "t_pvalue_holm", "wilcoxon_pvalue", "wilcoxon_pvalue_holm", "n")}})
    return pd.DataFrame(rows)


def _records(frame: pd.DataFrame) -> dict[str, Any]:
    clean = frame.astype(object).where(frame.notna(), None)
    return {"columns": list(frame.columns), "data": clean.to_numpy().tolist()}


def plot_data(results: pd.DataFrame, summary: dict[str, Any], metrics: Sequence[str] | None = None) -> dict[str, Any]:
    """Everything the interactive charts need, JSON-ready (each table as ``{"columns", "data"}``)."""
    metrics = _metrics(results, metrics)
    return {
        "reference": summary["reference"],
        "models": summary["models"],
        "protocols": summary["protocols_run"],
        "metrics": metrics,
        "values": _records(metric_frame(results, metrics)),
        "differences": _records(difference_frame(results, summary["reference"], metrics)),
        "leakage_gap": _records(leakage_frame(results, metrics)),
        "pvalues": _records(pvalue_frame(summary, metrics)),
    }


# ------------------------------------------------------------------------------------------- figures

def _grid(n_panels: int, panel_size: tuple[float, float]):
    from matplotlib.figure import Figure

    columns = min(n_panels, 2)
    rows = int(np.ceil(n_panels / columns))
    figure = Figure(figsize=(panel_size[0] * columns, panel_size[1] * rows), dpi=90)
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False).ravel())
    for extra in axes[n_panels:]:
        extra.set_visible(False)
    return figure, axes


def _violin_box(axes, groups: list[np.ndarray], labels: list[str], colors: list[str]) -> None:
    positions = np.arange(1, len(groups) + 1)
    filled = [g[~np.isnan(g)] for g in groups]
    drawable = [i for i, g in enumerate(filled) if g.size > 1 and np.ptp(g) > 0]
    if drawable:
        violins = axes.violinplot([filled[i] for i in drawable], positions=positions[drawable],
                                  showextrema=False, widths=0.8)
        for body, i in zip(violins["bodies"], drawable):
            body.set_facecolor(colors[i])
            body.set_alpha(0.35)
    present = [i for i, g in enumerate(filled) if g.size]
    axes.boxplot([filled[i] for i in present], positions=positions[present], widths=0.25, showfliers=True,
                 flierprops={"markersize": 2})
    axes.set_xticks(positions, labels=labels, rotation=30 if len(groups) > 4 else 20, ha="right",
                    rotation_mode="anchor", fontsize="small")


def _panel_size(n_groups: int) -> tuple[float, float]:
    """A panel wide enough for ``n_groups`` labelled distributions (about 0.7 in each beyond six)."""
    return (max(5.2, 0.7 * n_groups + 1.0), 3.6 if n_groups > 4 else 3.4)


def _palette(n: int) -> list[str]:
    base = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray"]
    return [base[i % len(base)] for i in range(n)]


def plot_distributions(results: pd.DataFrame, metrics: Sequence[str] | None = None):
    """Violin + box plot per metric: one distribution per (model, protocol) over iterations."""
    metrics = _metrics(results, metrics)
    long = metric_frame(results, metrics)
    keys = list(dict.fromkeys(zip(results["model"], results["protocol"])))
    colors = _palette(len(keys))
    figure, axes = _grid(len(metrics), _panel_size(len(keys)))
    for ax, metric in zip(axes, metrics):
        rows = long[long["metric"] == metric]
        groups = [rows[(rows["model"] == m) & (rows["protocol"] == p)]["value"].to_numpy(np.float64)
                  for m, p in keys]
        _violin_box(ax, groups, [f"{m}\n({p})" for m, p in keys], colors)
        ax.set_title(metric)
        ax.grid(axis="y", alpha=0.3)
    figure.suptitle(f"Monte Carlo distributions over {results['iteration'].nunique()} iterations")
    figure.tight_layout()
    return figure


def plot_differences(results: pd.DataFrame, reference: str, metrics: Sequence[str] | None = None):
    """Paired differences per metric: each model − reference (per protocol) and the leakage gap
    (image − patient, per model). Returns ``None`` when there is nothing to compare."""
    metrics = _metrics(results, metrics)
    differences = difference_frame(results, reference, metrics)
    gaps = leakage_frame(results, metrics)
    if differences.empty and gaps.empty:
        return None
    n_groups = len(differences[["model", "protocol"]].drop_duplicates()) + gaps["model"].nunique()
    figure, axes = _grid(len(metrics), _panel_size(n_groups))
    for ax, metric in zip(axes, metrics):
        groups, labels = [], []
        rows = differences[differences["metric"] == metric]
        for (model, protocol), group in rows.groupby(["model", "protocol"], sort=False):
            groups.append(group["difference"].to_numpy(np.float64))
            labels.append(f"{model} − {reference}\n({protocol})")
        rows = gaps[gaps["metric"] == metric]
        for model, group in rows.groupby("model", sort=False):
            groups.append(group["gap"].to_numpy(np.float64))
            labels.append(f"{model}\nimage − patient")
        _violin_box(ax, groups, labels, _palette(len(groups)))
        ax.axhline(0.0, color="black", linewidth=0.8, linestyle="--")
        ax.set_title(f"{metric}: paired differences")
        ax.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    return figure


def plot_pvalue_table(summary: dict[str, Any], metrics: Sequence[str] | None = None):
    """The p-value table (raw and Holm-adjusted) as a figure; ``None`` when no test was run."""
    from matplotlib.figure import Figure

    wanted = metrics or [m for m in PLOTTED_METRICS if m in summary["metrics"]]
    table = pvalue_frame(summary, wanted)
    if table.empty:
        return None

    def text(value: Any, digits: int = 4) -> str:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return "n/a"
        return f"{value:.1e}" if 0 < abs(value) < 1e-4 else f"{value:.{digits}f}"

    header = ["comparison", "protocol", "metric", "model", "mean diff", "d", "t p", "t p Holm", "W p", "W p Holm"]
    cells = [[r.comparison, r.protocol, r.metric, r.model, text(r.mean_difference), text(r.cohens_d, 2),
              text(r.t_pvalue), text(r.t_pvalue_holm), text(r.wilcoxon_pvalue), text(r.wilcoxon_pvalue_holm)]
             for r in table.itertuples()]
    figure = Figure(figsize=(12, 0.6 + 0.28 * (len(cells) + 1)), dpi=90)
    axes = figure.subplots()
    axes.axis("off")
    drawn = axes.table(cellText=cells, colLabels=header, loc="center", cellLoc="center")
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(8)
    drawn.auto_set_column_width(list(range(len(header))))
    figure.tight_layout()
    return figure


def write_plots(out: str | Path, results: pd.DataFrame, summary: dict[str, Any],
                metrics: Sequence[str] | None = None) -> list[Path]:
    """Write ``distributions.png``, ``differences.png``, ``pvalues.png`` (when there is something to show)
    and ``plot_data.json`` into ``out``; returns the paths written."""
    out = Path(out)
    written = []
    figures = {
        "distributions.png": plot_distributions(results, metrics),
        "differences.png": plot_differences(results, summary["reference"], metrics),
        "pvalues.png": plot_pvalue_table(summary, metrics),
    }
    for name, figure in figures.items():
        if figure is None:
            continue
        with atomic_output(out / name) as temporary:
            figure.savefig(temporary, format="png", bbox_inches="tight")
        written.append(out / name)
    with atomic_output(out / "plot_data.json") as temporary:
        temporary.write_text(json.dumps(plot_data(results, summary, metrics), allow_nan=False), encoding="utf-8")
    written.append(out / "plot_data.json")
    return written
