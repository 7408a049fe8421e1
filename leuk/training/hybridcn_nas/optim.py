"""Small training helpers shared by the HybridCN-NAS stages: progress bars, class weights, the paired
flip/rotate augmentation, the classifier's optimisers."""

from __future__ import annotations

from typing import Optional

import numpy as np

from leuk.errors import LeukError
from leuk.training.hybridcn_nas.options import OPTIMIZER_CLASSES, OPTIMIZERS

__all__ = ["class_weights", "make_optimizer", "progress_bar"]


def progress_bar(iterable, desc: str, enabled: bool, total: Optional[int] = None):
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, disable=not enabled, total=total, leave=False)


def class_weights(labels: np.ndarray, n_classes: int):
    import torch

    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, counts.sum() / np.maximum(counts, 1) / max((counts > 0).sum(), 1), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def make_optimizer(name: str, parameters, lr: float, weight_decay: float):
    """One of :data:`OPTIMIZERS`, as :data:`OPTIMIZER_CLASSES` builds it (SGD with Nesterov momentum 0.9)."""
    import torch

    if name not in OPTIMIZER_CLASSES:
        raise LeukError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    class_name, arguments = OPTIMIZER_CLASSES[name]
    return getattr(torch.optim, class_name)(parameters, lr=lr, weight_decay=weight_decay, **arguments)
