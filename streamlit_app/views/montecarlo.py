"""Monte Carlo: per-metric distributions, paired differences, the leakage gap and the statistics of a run."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from leuk import serving
from leuk.experiments.plots import PLOTTED_METRICS
from streamlit_app import charts, ui

OTHER = "Other: a dataset repo id, a results folder or a parquet file"
CHARTS_PER_ROW = 2
PVALUE_FORMAT = "%.3g"


def chart_grid(metrics: list[str], draw) -> None:
    """``draw(metric)`` for each metric, :data:`CHARTS_PER_ROW` charts per row."""
    for start in range(0, len(metrics), CHARTS_PER_ROW):
        for column, metric in zip(st.columns(CHARTS_PER_ROW), metrics[start:start + CHARTS_PER_ROW]):
            column.altair_chart(draw(metric), width="stretch")


def number_formats(frame: pd.DataFrame) -> dict[str, object]:
    """Scores and differences with four decimals, p-values with three significant digits, and readable headers
    (:data:`leuk.serving.PVALUE_TITLES`; the data keep their column names, as the download does)."""
    config: dict[str, object] = {}
    for column in frame.columns:
        title = serving.PVALUE_TITLES.get(column, column)
        if not pd.api.types.is_float_dtype(frame[column]):
            if title != column:
                config[column] = st.column_config.Column(title)
            continue
        is_pvalue = "pvalue" in column or column.endswith(" p (Holm)")
        config[column] = st.column_config.NumberColumn(title, format=PVALUE_FORMAT if is_pvalue else "%.4f")
    return config


def table(frame: pd.DataFrame) -> None:
    """A read-only table with :func:`number_formats`."""
    st.dataframe(frame, hide_index=True, column_config=number_formats(frame), width="stretch")


st.title("Monte Carlo")
st.markdown("Repeated patient-grouped splits: every model sees the same split in each iteration, so differences "
            "are paired. The image-level protocol (cells of one patient on both sides of the split) runs only to "
            "measure how much that leaks. The bundled runs: the real C-NMC pool (the default) and a synthetic set.")

choices = ui.attempt("list the bundled results", ui.montecarlo_choices) or []
sources = [source for _, source in choices]
names = {source: label for label, source in choices}
choice = st.selectbox("Results", [*sources, OTHER], key="mc_choice", format_func=lambda s: names.get(s, s))
if choice == OTHER:
    source = st.text_input("Dataset repo id (`org/name[@revision]`), results folder or parquet file",
                           key="mc_other").strip()
    if not source:
        st.info("Type where the results are; bundled runs live in `assets/results/`.", icon=":material/info:")
        st.stop()
else:
    source = choice

first = ui.attempt("load Monte Carlo results", ui.montecarlo_report, source, None)
if first is None:
    st.stop()
st.markdown(first.summary_markdown)

headline = [m for m in PLOTTED_METRICS if m in first.metrics] or first.metrics[:2]
# one filter per row: a narrow column cuts its chips off (a fourth model read "resnet5…")
metrics = st.multiselect("Metrics", first.metrics, default=headline, key=f"mc_metrics:{source}")
models = st.multiselect("Models", first.models, default=first.models, key=f"mc_models:{source}")
protocols = st.multiselect("Protocols", first.protocols, default=first.protocols, key=f"mc_protocols:{source}")
if not (metrics and models and protocols):
    st.info("Choose at least one metric, one model and one protocol.", icon=":material/filter_alt:")
    st.stop()

reports = [ui.montecarlo_report(source, metric) for metric in metrics]
values = pd.concat([r.values for r in reports], ignore_index=True)
values = values[values["model"].isin(models) & values["protocol"].isin(protocols)]
differences = pd.concat([r.differences for r in reports], ignore_index=True)
differences = differences[differences["model"].isin(models) & differences["protocol"].isin(protocols)]
both_protocols = {"patient", "image"} <= set(protocols)  # the leakage gap compares the two
gaps = pd.concat([r.gaps for r in reports], ignore_index=True)
gaps = gaps[gaps["model"].isin(models) & both_protocols]
pvalues = pd.concat([r.pvalues for r in reports if not r.pvalues.empty] or [pd.DataFrame()], ignore_index=True)
if not pvalues.empty:
    is_gap = pvalues["comparison"] == "leakage gap"
    keep_protocol = (pvalues["protocol"].isin(protocols) & ~is_gap) | (is_gap & both_protocols)
    pvalues = pvalues[pvalues["model"].isin(models) & keep_protocol]
leakage = pd.concat([r.leakage.assign(metric=r.metric) for r in reports], ignore_index=True)
leakage = leakage[leakage["model"].isin(models)][["metric", *[c for c in leakage.columns if c != "metric"]]]

distributions_tab, differences_tab, leakage_tab, statistics_tab, download_tab = st.tabs(
    ["Distributions", "Paired differences", "Leakage gap", "Statistics", "Download"])

with distributions_tab:
    chart_grid(metrics, lambda metric: charts.distribution_chart(values, metric, models))
    st.caption("One point per iteration; click a legend entry to highlight a protocol.")

with differences_tab:
    if differences.empty:
        st.info(f"Nothing to compare: choose at least one model besides the reference, **{first.reference}**.")
    else:
        chart_grid(metrics, lambda metric: charts.difference_chart(differences, metric, first.reference, models))
        st.caption("Each point: one model's score minus the reference's on the same split. Above zero: the model "
                   "scores higher.")

with leakage_tab:
    if gaps.empty:
        st.info("The leakage gap needs both protocols (patient and image) in the run and in the filter.")
    else:
        chart_grid(metrics, lambda metric: charts.leakage_chart(gaps, metric, models))
        st.markdown("**Leakage gap**: image-level minus patient-level score, paired by iteration: the mean gap "
                    "with the 95% t interval of the mean, the 2.5–97.5 percentiles of the per-iteration gaps and "
                    "Holm-adjusted p-values.")
        table(leakage)

with statistics_tab:
    st.markdown(f"**Paired tests** (model − **{first.reference}**, two-sided, Holm-adjusted across the models "
                "compared; the leakage gap rows test image − patient).")
    if pvalues.empty:
        st.info("No test in this run: it holds a single model and a single protocol.")
    else:
        table(pvalues)
    st.markdown("**Scores** over the iterations (mean, sd, median and the 2.5–97.5 percentile interval).")
    table(ui.score_table(ui.montecarlo_summary(source), metrics, models, protocols))

with download_tab:
    parquet = ui.attempt("prepare the download", ui.montecarlo_parquet, source)
    if parquet is not None:
        st.download_button("Download all results (parquet)", parquet, file_name="montecarlo_results.parquet",
                           mime="application/vnd.apache.parquet", on_click="ignore", icon=":material/download:",
                           key="mc_download")
    st.caption("One row per iteration, protocol and model: split seed and patient-set hashes, every metric.")
