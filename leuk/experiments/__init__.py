"""Monte Carlo experiments: repeated patient-grouped splits, paired statistics, plots.

- :func:`run_monte_carlo` (:mod:`leuk.experiments.montecarlo`): the resumable, distributable runner;
- :mod:`leuk.experiments.summary`: the results format and :func:`summarize` (its Markdown too);
- :mod:`leuk.experiments.light_head`: the light head of ``features`` mode;
- :mod:`leuk.experiments.ablation`: the HybridCN-NAS ablation study (``leuk ablate``);
- :mod:`leuk.experiments.stats`: paired tests, Holm correction, summaries (numpy/scipy only);
- :mod:`leuk.experiments.features`: backbone features extracted once per model and cached on disk;
- :mod:`leuk.experiments.plots`: chart data as long-format tables (no matplotlib needed) and PNG figures.

Heavy modules load on first use, so ``import leuk.experiments`` stays cheap for the apps.
"""

from __future__ import annotations

from typing import Any

from leuk.io import atomic_output

__all__ = ["atomic_output", "merge_results", "run_monte_carlo", "summarize"]


def __getattr__(name: str) -> Any:
    if name in ("run_monte_carlo", "merge_results", "summarize"):
        from leuk.experiments import montecarlo

        return getattr(montecarlo, name)
    raise AttributeError(f"module 'leuk.experiments' has no attribute {name!r}")
