"""Monte Carlo results for the apps: bundled runs, folders, parquet files or dataset repos, one metric at a time.

Tables and charts come from :mod:`leuk.experiments` (``summarize``, ``metric_frame``, ``pvalue_frame``, the
matplotlib figures); this module only finds the results, caches them and picks one metric out of them.

Bundled runs live in sub-folders of ``assets/results/``: ``real-cnmc`` (the real C-NMC pool, subject-grouped,
frozen random-init features) and ``synthetic`` (synthetic look-alikes). Runs on real data come first, so the
apps open on the real one; every run is labelled with what it is (:func:`source_label`). A bundled run is
treated as synthetic unless its recorded configuration says ``"synthetic": false``.
"""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leuk.errors import LeukError

if TYPE_CHECKING:
    import pandas as pd

RESULTS_ENV = "LEUK_RESULTS_DIR"
BUNDLED_PREFIX = "bundled:"
RESULTS_FILE = "results.parquet"
SUMMARY_FILE = "summary.json"
RUN_FILE = "run.json"
_CACHE_SIZE = 8
#: Columns of the leakage-gap table: the mean gap, the 95% t interval of the mean, the 2.5-97.5 percentiles of
#: the per-iteration gaps, the Holm-adjusted paired tests.
LEAKAGE_COLUMNS = ("model", "mean gap", "95% CI low", "95% CI high", "2.5%", "97.5%", "t p (Holm)",
                   "Wilcoxon p (Holm)", "iterations")


#: Readable headers of the paired-test table (:attr:`MonteCarloReport.pvalues` keeps the raw column names, which
#: API clients and downloads use); columns not named here keep their name.
PVALUE_TITLES = {
    "mean_difference": "mean Δ",
    "difference_p2_5": "Δ 2.5%",
    "difference_p97_5": "Δ 97.5%",
    "cohens_d": "Cohen's d",
    "t_pvalue": "t-test p",
    "t_pvalue_holm": "t-test p (Holm)",
    "wilcoxon_pvalue": "Wilcoxon p",
    "wilcoxon_pvalue_holm": "Wilcoxon p (Holm)",
}


def results_dir() -> Path:
    """``$LEUK_RESULTS_DIR`` or ``<repo>/assets/results``."""
    override = os.environ.get(RESULTS_ENV)
    return Path(override).expanduser() if override else Path(__file__).resolve().parents[2] / "assets" / "results"


def _run_config(folder: Path) -> dict[str, Any]:
    """A run folder's configuration: ``run.json``, else the ``config`` of ``summary.json``, else ``{}``."""
    for name, key in ((RUN_FILE, None), (SUMMARY_FILE, "config")):
        try:
            payload = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        payload = payload.get(key) if key and isinstance(payload, dict) else payload
        if isinstance(payload, dict) and payload:
            return payload
    return {}


def _is_real(config: dict[str, Any]) -> bool:
    return config.get("synthetic") is False


def bundled_runs() -> dict[str, Path]:
    """``{"bundled:<name>": folder}`` for every folder under :func:`results_dir` holding ``results.parquet``;
    runs on real data first (the default), then by name."""
    root = results_dir()
    if not root.is_dir():
        return {}
    folders = sorted({path.parent for path in root.rglob(RESULTS_FILE)},
                     key=lambda folder: (not _is_real(_run_config(folder)), folder.as_posix()))
    return {f"{BUNDLED_PREFIX}{folder.relative_to(root).as_posix() if folder != root else 'default'}": folder
            for folder in folders}


def montecarlo_sources() -> list[str]:
    """Names of the bundled runs, for a source picker (a user may also type a repo id or a path)."""
    return list(bundled_runs())


def _label(config: dict[str, Any], n_iterations: Any) -> str:
    """What a run is, in a few words: the data, the splits, the number of iterations, the weights."""
    from leuk.experiments.summary import FROZEN_RANDOM_NOTE

    iterations = f"{n_iterations} iterations" if n_iterations else "iterations unknown"
    if _is_real(config):
        kind = {"cnmc": "C-NMC", "aria": "Aria"}.get(str(config.get("dataset_kind")), "")
        grouping = "subject-grouped" if (config.get("split") or {}).get("grouped_by") else "grouped"
        text = f"real {kind} pool, {grouping}, {iterations}".replace("real  pool", "real pool")
    else:
        text = f"synthetic data, {iterations}"
    if config.get("mode") == "features" and config.get("pretrained") is False:
        text += f" ({FROZEN_RANDOM_NOTE.split(':')[0]})"
    return text


def source_label(source: str) -> str:
    """A picker label for a source: what a bundled run is (e.g. "real C-NMC pool, subject-grouped, 100
    iterations (frozen random-init features)") followed by its name; other sources as given."""
    folder = bundled_runs().get(source)
    if folder is None:
        return source
    config = _run_config(folder)
    return f"{_label(config, config.get('n_iter'))} — {source}"


def montecarlo_choices() -> list[tuple[str, str]]:
    """``(label, source)`` of every bundled run, the default first (for a labelled picker)."""
    return [(source_label(source), source) for source in montecarlo_sources()]


@dataclass
class MonteCarloData:
    """A results table (one row per iteration, protocol and model) and its summary."""

    source: str
    results: "pd.DataFrame"
    summary: dict[str, Any]


_CACHE: "OrderedDict[str, MonteCarloData]" = OrderedDict()
_LOCK = threading.Lock()


def _read_summary(folder: Path | None) -> dict[str, Any] | None:
    if folder is None or not (folder / SUMMARY_FILE).is_file():
        return None
    try:
        summary = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) and "protocols" in summary else None


def load_montecarlo(source: str | None = None, *, allow_local: bool = True) -> MonteCarloData:
    """Results and summary from a bundled run (default: the first), a folder, a parquet/CSV file or a dataset
    repo id (``org/name[@revision]``). The summary is read from ``summary.json`` next to the results when
    present, else computed with :func:`leuk.experiments.montecarlo.summarize` (reference: the first model).
    ``allow_local=False`` refuses paths outside the bundled runs (a public app must not read its own disk)."""
    from leuk.experiments.montecarlo import summarize
    from leuk.hub import load_results

    bundled = bundled_runs()
    text = (source or "").strip()
    if not text:
        if not bundled:
            raise LeukError(f"no bundled Monte Carlo results in {results_dir()}: give a dataset repo id or a folder")
        text = next(iter(bundled))
    with _LOCK:
        if text in _CACHE:
            _CACHE.move_to_end(text)
            return _CACHE[text]
    if text.startswith(BUNDLED_PREFIX):
        if text not in bundled:
            raise LeukError(f"unknown bundled run {text!r}; bundled: {', '.join(bundled) or 'none'}")
        location: str | Path = bundled[text]
    else:
        location = text
        if not allow_local and Path(text).expanduser().exists():
            raise LeukError("this app does not read local files: pick a bundled run or give a dataset repo id")
    folder = Path(location) if Path(location).is_dir() else None
    results = load_results(folder / RESULTS_FILE if folder is not None and (folder / RESULTS_FILE).is_file()
                           else location)
    missing = {"iteration", "model", "protocol"} - set(results.columns)
    if missing or results.empty:
        raise LeukError(f"{text}: not a leuk Monte Carlo results table (missing columns: "
                        f"{', '.join(sorted(missing)) or 'none'}; rows: {len(results)})")
    summary = _read_summary(folder) or summarize(results, reference=str(results["model"].iloc[0]))
    data = MonteCarloData(source=text, results=results, summary=summary)
    with _LOCK:
        _CACHE[text] = data
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return data


@dataclass
class MonteCarloReport:
    """One metric of a Monte Carlo run: chart data (long format), figures, tests and the leakage gap."""

    source: str
    metric: str
    metrics: list[str]
    models: list[str]
    reference: str
    protocols: list[str]
    n_iterations: int
    values: "pd.DataFrame"
    differences: "pd.DataFrame"
    gaps: "pd.DataFrame"
    pvalues: "pd.DataFrame"
    leakage: "pd.DataFrame"
    distribution_chart: Any
    difference_chart: Any
    synthetic: bool
    #: What the run is, in a few words (the picker's label), and its data/splits/weights line (may be empty).
    label: str = ""
    description: str = ""

    def pvalue_table(self) -> "pd.DataFrame":
        """:attr:`pvalues` of this one metric with readable headers (:func:`pvalue_display`, no ``metric``
        column)."""
        return pvalue_display(self.pvalues, drop=("metric",))

    @property
    def summary_markdown(self) -> str:
        """What was run, in one paragraph, and the reference model's leakage gap with its interval."""
        text = (f"**{self.label or self.source}** (`{self.source}`): {self.n_iterations} iterations; models "
                f"{', '.join(self.models)}; reference **{self.reference}**; protocols {', '.join(self.protocols)}.")
        if self.description:
            text += f" {self.description[0].upper()}{self.description[1:]}."
        text += (" Differences are model − reference, paired by iteration; p-values are two-sided and Holm-adjusted "
                 "across the models compared.")
        if "image" in self.protocols:
            text += (" The image-level protocol puts cells of one patient on both sides of the split; it is shown "
                     "only to measure how much that leaks (the leakage gap).")
        gap = self.leakage[self.leakage["model"] == self.reference] if not self.leakage.empty else self.leakage
        shown = ["mean gap", "95% CI low", "95% CI high", "2.5%", "97.5%"]
        if len(gap) and gap[shown].notna().all().all():
            row = gap.iloc[0]
            text += (f"\n\n**Leakage gap** ({self.metric}, {self.reference}, image − subject-level split): "
                     f"**{row['mean gap']:+.4f}**, 95% CI of the mean [{row['95% CI low']:+.4f}, "
                     f"{row['95% CI high']:+.4f}]; per iteration, 2.5–97.5%: [{row['2.5%']:+.4f}, "
                     f"{row['97.5%']:+.4f}].")
        if self.synthetic:
            text += "\n\n**These results come from synthetic data**: they show the software, not the models' skill."
        return text


def pvalue_display(pvalues: "pd.DataFrame", *, drop: tuple[str, ...] = ()) -> "pd.DataFrame":
    """The paired-test table as a person reads it: :data:`PVALUE_TITLES` headers, the ``drop`` columns left out
    (e.g. ``metric`` when the view shows one metric); the numbers are already rounded for display."""
    return pvalues.drop(columns=[c for c in drop if c in pvalues.columns]).rename(columns=PVALUE_TITLES)


def _significant(value: Any, figures: int = 3) -> Any:
    if value is None or not isinstance(value, (int, float)) or value != value or value == 0:
        return value
    return float(f"{value:.{figures - 1}e}")


def _rounded(frame: "pd.DataFrame", digits: int = 4) -> "pd.DataFrame":
    """For display: scores and differences to ``digits`` decimals, p-values to 3 significant figures
    (they can be tiny, so decimals would turn them into 0)."""
    import pandas as pd

    out = frame.copy()
    for column in out.columns:
        if "pvalue" in column or " p " in f" {column} ":
            out[column] = [_significant(value) for value in out[column]]
        elif pd.api.types.is_numeric_dtype(out[column]):
            out[column] = out[column].round(digits)
    return out


def _leakage_table(summary: dict[str, Any], metric: str) -> "pd.DataFrame":
    import pandas as pd

    per_model = ((summary.get("leakage_gap") or {}).get("metrics") or {}).get(metric) or {}
    rows = [{"model": model, "mean gap": t.get("mean_difference"), "95% CI low": t.get("mean_ci_low"),
             "95% CI high": t.get("mean_ci_high"), "2.5%": t.get("difference_p2_5"),
             "97.5%": t.get("difference_p97_5"), "t p (Holm)": t.get("t_pvalue_holm"),
             "Wilcoxon p (Holm)": t.get("wilcoxon_pvalue_holm"), "iterations": t.get("n")}
            for model, t in per_model.items()]
    columns = list(LEAKAGE_COLUMNS)
    return pd.DataFrame(rows, columns=columns)


def montecarlo_report(source: str | None = None, metric: str | None = None, *, figures: bool = True,
                      allow_local: bool = True) -> MonteCarloReport:
    """The views of one metric (default: the first headline metric) of a run (see :func:`load_montecarlo`).

    ``figures=False`` skips the matplotlib figures (a dashboard drawing its own charts from the tables).
    """
    from leuk.experiments import plots
    from leuk.experiments.summary import describe_run, metric_columns
    from leuk.hub import mentions_synthetic_data

    data = load_montecarlo(source, allow_local=allow_local)
    results, summary = data.results, data.summary
    metrics = [m for m in metric_columns(results) if results[m].notna().any()]
    if not metrics:
        raise LeukError(f"{data.source}: the results hold no metric column")
    chosen = (metric or "").strip() or metrics[0]
    if chosen not in metrics:
        raise LeukError(f"unknown metric {chosen!r}; this run has: {', '.join(metrics)}")
    reference = str(summary.get("reference") or results["model"].iloc[0])
    pvalues = plots.pvalue_frame(summary, [chosen])
    config = summary.get("config") or {}
    bundled = data.source.startswith(BUNDLED_PREFIX)
    n_iterations = int(results["iteration"].nunique())
    return MonteCarloReport(
        source=data.source,
        metric=chosen,
        metrics=metrics,
        models=[str(m) for m in dict.fromkeys(results["model"])],
        reference=reference,
        protocols=[str(p) for p in dict.fromkeys(results["protocol"])],
        n_iterations=n_iterations,
        values=plots.metric_frame(results, [chosen]),
        differences=plots.difference_frame(results, reference, [chosen]),
        gaps=plots.leakage_frame(results, [chosen]),
        pvalues=_rounded(pvalues) if not pvalues.empty else pvalues,
        leakage=_rounded(_leakage_table(summary, chosen)),
        distribution_chart=plots.plot_distributions(results, [chosen]) if figures else None,
        difference_chart=plots.plot_differences(results, reference, [chosen]) if figures else None,
        synthetic=mentions_synthetic_data(config) or (bundled and not _is_real(config)),
        label=_label(config, n_iterations) if bundled else "",
        description=describe_run(config) if config else "",
    )
