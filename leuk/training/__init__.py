"""Training engines.

- :mod:`leuk.training.efficientnet_se`: EfficientNet-SE and its baselines with the transformers ``Trainer``
  (``train_efficientnet_se``; ``finetune_for_monte_carlo`` is the same engine for one Monte Carlo iteration);
- :mod:`leuk.training.hybridcn_nas`: the staged HybridCN-NAS engine (``train_hybridcn_nas``, imported on
  first use).

Heavy imports (torch, transformers) happen when a function is called, not on import.
"""

from __future__ import annotations

from typing import Any

from leuk.training.efficientnet_se import (
    EVAL_RESULTS_FILE,
    SPLIT_FILE,
    FitResult,
    TrainOptions,
    TrainResult,
    finetune_for_monte_carlo,
    fit_classifier,
    train_efficientnet_se,
)

_HYBRID_NAMES = ("HybridTrainOptions", "HybridTrainResult", "train_hybridcn_nas")

__all__ = [
    "EVAL_RESULTS_FILE",
    "SPLIT_FILE",
    "FitResult",
    "TrainOptions",
    "TrainResult",
    "finetune_for_monte_carlo",
    "fit_classifier",
    "train_efficientnet_se",
    *_HYBRID_NAMES,
]


def __getattr__(name: str) -> Any:
    if name in _HYBRID_NAMES:
        from leuk.training import hybridcn_nas

        return getattr(hybridcn_nas, name)
    raise AttributeError(f"module 'leuk.training' has no attribute {name!r}")
