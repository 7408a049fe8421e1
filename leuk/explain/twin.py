"""The copies of a model the attributions run on: BatchNorm folded (:func:`attribution_twin`) or compiled
(:func:`compiled_forward`), one per model, cached until its weights change."""

from __future__ import annotations

import copy
import itertools
import weakref

import torch
from torch import Tensor, nn

from leuk.explain.model_view import model_dtype_device
from leuk.models import fusion
from leuk.models.outputs import LogitsOnly

__all__ = ["FOLD_MAX_PARAMETERS", "attribution_twin", "compiled_forward"]

#: models up to this size get a BatchNorm-folded twin for attribution (the twin doubles the weights' memory)
FOLD_MAX_PARAMETERS = 200_000_000

_TWINS: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple, nn.Module, fusion.FoldReport]]" = weakref.WeakKeyDictionary()


def _weights_signature(model: nn.Module) -> tuple:
    """Changes whenever a parameter or buffer is replaced (``.to()``, loading) or modified in place."""
    return tuple((t.data_ptr(), t._version, t.dtype) for t in itertools.chain(model.parameters(), model.buffers()))


def attribution_twin(model: nn.Module, probe: Tensor) -> tuple[nn.Module, fusion.FoldReport]:
    """The model the attributions run on: a BatchNorm-folded, channels_last copy of ``model``
    (:func:`leuk.models.fusion.fold_batchnorm`, checked against ``model`` on ``probe``), cached until the
    model's weights change; ``model`` itself when nothing folds, the check fails or the model is too large
    to copy (:data:`FOLD_MAX_PARAMETERS`). Same logits and input gradients, less work per pass."""
    signature = _weights_signature(model)
    cached = _TWINS.get(model)
    if cached is not None and cached[0] == signature:
        return cached[1], cached[2]
    if sum(p.numel() for p in model.parameters()) > FOLD_MAX_PARAMETERS:
        return model, fusion.FoldReport(0, 0.0, "model too large to keep a folded copy")
    # attributions are computed in float32 whatever the weights are stored in (half weights on a CPU are slow
    # and their gradients coarse)
    full = model if model_dtype_device(model)[0] == torch.float32 else copy.deepcopy(model).float()
    twin, report = fusion.fold_batchnorm(full, probe.float())
    if twin is not full:
        twin = twin.to(memory_format=torch.channels_last)
    if twin is not model:
        for parameter in twin.parameters():
            parameter.requires_grad_(False)  # attributions need input gradients only
    _TWINS[model] = (signature, twin, report)
    return twin, report


_COMPILED: "weakref.WeakKeyDictionary[nn.Module, dict[bool, nn.Module]]" = weakref.WeakKeyDictionary()


def compiled_forward(model: nn.Module, channels_last: bool = False) -> nn.Module:
    """``torch.compile`` of :class:`LogitsOnly` over ``model``, one per model (fixed shapes: each new batch
    shape compiles once more). The first call compiles: 2-4 minutes for EfficientNet-SE at 300 px on 2 CPU
    threads, after which Integrated Gradients ran about a quarter faster there (``bench/bench_explain.py``)."""
    per_model = _COMPILED.setdefault(model, {})
    if channels_last not in per_model:
        per_model[channels_last] = torch.compile(LogitsOnly(model, channels_last=channels_last), dynamic=False)
    return per_model[channels_last]
