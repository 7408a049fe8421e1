"""Monte Carlo experiments: repeated patient-grouped splits, paired statistics, plots.

- :func:`run_monte_carlo` (:mod:`leuk.experiments.montecarlo`): the resumable, distributable runner;
- :mod:`leuk.experiments.stats`: paired tests, Holm correction, summaries (numpy/scipy only);
- :mod:`leuk.experiments.features`: backbone features extracted once per model and cached on disk;
- :mod:`leuk.experiments.plots`: chart data as long-format tables (no matplotlib needed) and PNG figures.

Heavy modules load on first use, so ``import leuk.experiments`` stays cheap for the apps.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

__all__ = ["atomic_output", "merge_results", "run_monte_carlo", "summarize"]


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` in one atomic step.

    A process killed while writing leaves only a hidden ``.*.tmp`` file, never a half-written ``path``.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    try:
        yield Path(temporary)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def __getattr__(name: str) -> Any:
    if name in ("run_monte_carlo", "merge_results", "summarize"):
        from leuk.experiments import montecarlo

        return getattr(montecarlo, name)
    raise AttributeError(f"module 'leuk.experiments' has no attribute {name!r}")
