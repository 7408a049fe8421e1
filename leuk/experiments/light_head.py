"""The light head of Monte Carlo ``features`` mode: a logistic or small MLP head on standardised pooled
features, trained full-batch per iteration with early stopping on validation loss and a temperature."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from leuk.experiments.summary import MonteCarloError

__all__ = ["HeadConfig", "fit_head"]


@dataclass(frozen=True)
class HeadConfig:
    """The light head of ``features`` mode, trained full-batch per iteration.

    ``kind`` "logistic" (one linear layer) or "mlp" (``hidden`` units, ReLU, ``dropout``). Early stopping
    keeps the epoch with the lowest validation loss and stops after ``patience`` epochs without a better
    one. ``calibrate`` fits a temperature on the validation logits (it changes only calibration figures).
    """

    kind: Literal["logistic", "mlp"] = "logistic"
    hidden: int = 128
    dropout: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 1e-4
    max_epochs: int = 200
    patience: int = 10
    calibrate: bool = True


def fit_head(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
             test_x: np.ndarray, n_classes: int, config: HeadConfig, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Train the light head on one split and return test-set probabilities and a few facts about the fit.

    Features are standardised with training statistics only; the loss is class-weighted by inverse training
    frequency; the best-validation-loss weights are kept (a real copy); the temperature, if any, is fitted
    on validation logits. The fit runs on one CPU thread (tiny matrices gain nothing from more, and the
    result then does not depend on the machine's thread count); the global torch RNG and thread count are
    left as they were.
    """
    import torch

    from leuk.metrics import fit_temperature

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        val_logits, test_logits, best_epoch = _fit_head(train_x, train_y, val_x, val_y, test_x, n_classes,
                                                        config, seed)
    finally:
        torch.set_num_threads(threads)
    temperature = fit_temperature(val_logits, val_y) if config.calibrate else 1.0
    scaled = test_logits / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    probs = np.exp(scaled)
    probs /= probs.sum(axis=1, keepdims=True)
    return probs, {"best_epoch": best_epoch, "temperature": temperature}


def _fit_head(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
              test_x: np.ndarray, n_classes: int, config: HeadConfig,
              seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Validation logits, test logits and best epoch of one early-stopped head fit."""
    import torch
    from torch import nn

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean = train_x.mean(axis=0, keepdims=True)
        scale = train_x.std(axis=0, keepdims=True) + 1e-6

        def tensor(x: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(((x - mean) / scale).astype(np.float32))

        tx, vx, sx = tensor(train_x), tensor(val_x), tensor(test_x)
        ty, vy = torch.from_numpy(train_y.astype(np.int64)), torch.from_numpy(val_y.astype(np.int64))
        dim = tx.shape[1]
        if config.kind == "logistic":
            head: nn.Module = nn.Linear(dim, n_classes)
        elif config.kind == "mlp":
            head = nn.Sequential(nn.Linear(dim, config.hidden), nn.ReLU(), nn.Dropout(config.dropout),
                                 nn.Linear(config.hidden, n_classes))
        else:
            raise MonteCarloError(f"unknown head kind {config.kind!r}: use logistic or mlp")
        counts = np.bincount(train_y, minlength=n_classes).astype(np.float64)
        weights = np.where(counts > 0, len(train_y) / (n_classes * np.maximum(counts, 1)), 0.0)
        loss_fn = nn.CrossEntropyLoss(weight=torch.tensor(weights, dtype=torch.float32))
        optimizer = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        best_loss, best_epoch, best_state = math.inf, -1, None
        for epoch in range(config.max_epochs):
            head.train()
            optimizer.zero_grad(set_to_none=True)
            loss_fn(head(tx), ty).backward()
            optimizer.step()
            head.eval()
            with torch.no_grad():
                val_loss = float(loss_fn(head(vx), vy))
            if val_loss < best_loss - 1e-7:
                best_loss, best_epoch = val_loss, epoch
                best_state = {k: v.detach().clone() for k, v in head.state_dict().items()}
            elif epoch - best_epoch >= config.patience:
                break
        if best_state is not None:
            head.load_state_dict(best_state)
        head.eval()
        with torch.no_grad():
            return head(vx).double().numpy(), head(sx).double().numpy(), best_epoch
