"""Training engines: they fit a model and save its folder; the finishing step (the out-of-distribution
detector, the one test evaluation through the saved folder) and the whole run as ``leuk train`` starts it live a
floor up, in :mod:`leuk.experiments.runs` (``train_efficientnet_se``, ``train_hybridcn_nas``).

- :mod:`leuk.training.efficientnet_se`: EfficientNet-SE and its baselines with the transformers ``Trainer``
  (``train_and_save``; ``fit_for_monte_carlo`` is the same engine for one Monte Carlo iteration);
- :mod:`leuk.training.hybridcn_nas`: the staged HybridCN-NAS engine (``train_and_save``, imported on first use
  as ``leuk.training.hybridcn_nas``).

Heavy imports (torch, transformers) happen when a function is called, not on import.
"""

from __future__ import annotations

from typing import Any

from leuk.training.efficientnet_se import (
    EVAL_RESULTS_FILE,
    SPLIT_FILE,
    FitResult,
    SavedRun,
    TrainOptions,
    TrainResult,
    fit_classifier,
    fit_for_monte_carlo,
    train_and_save,
)

_HYBRID_NAMES = ("HybridTrainOptions", "HybridTrainResult")

__all__ = [
    "EVAL_RESULTS_FILE",
    "SPLIT_FILE",
    "FitResult",
    "SavedRun",
    "TrainOptions",
    "TrainResult",
    "fit_classifier",
    "fit_for_monte_carlo",
    "train_and_save",
    *_HYBRID_NAMES,
]


def __getattr__(name: str) -> Any:
    if name in _HYBRID_NAMES:
        from leuk.training import hybridcn_nas

        return getattr(hybridcn_nas, name)
    raise AttributeError(f"module 'leuk.training' has no attribute {name!r}")
