"""Stage 8 of a HybridCN-NAS run: z-score + mRMR, the token-attention classifier and its temperature."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

from leuk.errors import LeukError
from leuk.training.hybridcn_nas.optim import class_weights, make_optimizer
from leuk.training.hybridcn_nas.options import HybridTrainOptions

__all__ = ["HeadFit", "fit_head"]


@dataclass
class HeadFit:
    """Stage 8: everything fitted on top of the cached features."""

    selection: Any  # leuk.selection.FeatureSelection
    classifier_state: dict
    config: Any
    temperature: float
    best_epoch: int
    history: list[dict]

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Temperature-scaled logits of raw feature rows."""
        import torch

        from leuk.models.hybridcn_nas.modeling_hybridcn_nas import TokenAttentionClassifier

        classifier = TokenAttentionClassifier(self.config)
        classifier.load_state_dict(self.classifier_state)
        classifier.eval()
        with torch.no_grad():
            logits, _ = classifier(torch.from_numpy(self.selection.transform(features)))
        return logits.numpy().astype(np.float64) / self.temperature


def _classifier_logits(classifier, inputs, batch_size: int = 256):
    import torch

    with torch.no_grad():
        return torch.cat([classifier(inputs[i:i + batch_size])[0] for i in range(0, len(inputs), batch_size)])


def fit_head(
    features: np.ndarray,
    labels: np.ndarray,
    split: Any,
    config: Any,
    options: HybridTrainOptions,
) -> HeadFit:
    """Standardisation + mRMR on the training rows, the token-attention classifier trained on them (best
    epoch by validation loss) and the temperature on the validation logits. Test rows are never read."""
    import torch
    import torch.nn.functional as F

    from leuk.metrics import fit_temperature
    from leuk.models.hybridcn_nas.modeling_hybridcn_nas import TokenAttentionClassifier
    from leuk.selection import fit_selection

    options = options.resolved()
    config = copy.deepcopy(config)
    selection = fit_selection(features, labels, split.train, config.num_selected)
    usable = len(selection.indices) - len(selection.indices) % config.token_size
    if usable < config.token_size:
        raise LeukError(f"only {len(selection.indices)} informative features: fewer than one token "
                        f"of {config.token_size}")
    if usable != config.num_selected:
        selection.indices = selection.indices[:usable]
        config.num_selected = usable
    inputs = {part: torch.from_numpy(selection.transform(features[getattr(split, part)])) for part in ("train", "val")}
    targets = {part: torch.from_numpy(labels[getattr(split, part)]) for part in ("train", "val")}

    torch.manual_seed(options.seed + 2)
    generator = torch.Generator().manual_seed(options.seed + 2)
    classifier = TokenAttentionClassifier(config)
    optimizer = make_optimizer(options.optimizer, classifier.parameters(), options.classifier_lr, options.weight_decay)
    weights = class_weights(labels[split.train], config.num_labels)
    n_train, batch_size = len(split.train), options.classifier_batch_size
    best_state, best_loss, best_epoch, since_best, history = None, float("inf"), -1, 0, []
    for epoch in range(options.classifier_epochs):
        classifier.train()
        order = torch.randperm(n_train, generator=generator)
        total = 0.0
        for start in range(0, n_train, batch_size):
            rows = order[start:start + batch_size]
            logits, _ = classifier(inputs["train"][rows])
            loss = F.cross_entropy(logits, targets["train"][rows], weight=weights)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(rows)
        record = {"epoch": epoch, "loss": total / n_train}
        if len(split.val):
            classifier.eval()
            record["val_loss"] = float(F.cross_entropy(_classifier_logits(classifier, inputs["val"]), targets["val"]))
            if record["val_loss"] < best_loss:
                best_loss, best_epoch, since_best = record["val_loss"], epoch, 0
                best_state = copy.deepcopy(classifier.state_dict())
            else:
                since_best += 1
        history.append(record)
        if len(split.val) and since_best >= options.patience:
            break
    if best_state is not None:
        classifier.load_state_dict(best_state)
    else:
        best_epoch = len(history) - 1
    classifier.eval()
    temperature = 1.0
    if len(split.val):
        temperature = fit_temperature(_classifier_logits(classifier, inputs["val"]).numpy(), targets["val"].numpy())
    return HeadFit(selection, copy.deepcopy(classifier.state_dict()), config, float(temperature), best_epoch, history)
