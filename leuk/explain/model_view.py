"""What the explanation tools need to know about a model, whatever its class.

:func:`unwrap_model` (the ``nn.Module`` behind a holder), its dtype and device, its input normalisation and
labels, the target class asked for, the layer Grad-CAM explains (:func:`find_gradcam_layer`) and, for a
multi-branch model, each branch's layer (:func:`branch_layers`). Used by :mod:`leuk.explain.attribution`
and :mod:`leuk.explain.branches` alike, so neither imports the other.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Mapping, Optional, Union

import torch
from torch import Tensor, nn

from leuk.explain._util import ExplainError
from leuk.models.outputs import LogitsOnly

__all__ = [
    "branch_layers",
    "class_labels",
    "eval_mode",
    "find_gradcam_layer",
    "input_normalization",
    "model_dtype_device",
    "resolve_target",
    "unwrap_model",
]


def unwrap_model(model: Any) -> nn.Module:
    """The ``nn.Module`` behind a model or a :class:`leuk.hub.LoadedModel`-like holder (``.model``)."""
    if isinstance(model, LogitsOnly):
        return model.model
    if isinstance(model, nn.Module):
        return model
    inner = getattr(model, "model", None)
    if isinstance(inner, nn.Module):
        return inner
    raise ExplainError(f"expected a torch model, got {type(model).__name__}")


def find_gradcam_layer(model: nn.Module) -> nn.Module:
    """The layer Grad-CAM explains: ``model.get_gradcam_layer()`` (EfficientNet-SE: the final feature map, or
    the deepest map that is not too coarse, see ``gradcam_min_side``); for a multi-branch model the first
    branch's final map (:func:`branch_layers`); else the last Conv2d."""
    getter = getattr(model, "get_gradcam_layer", None)
    if callable(getter):
        layer = getter()
        if isinstance(layer, nn.Module):
            return layer
    branches = branch_layers(model)
    if branches:
        return next(iter(branches.values()))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ExplainError(
            f"{type(model).__name__} has no get_gradcam_layer() and no Conv2d layer: pass layer= for Grad-CAM"
        )
    return convs[-1]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode for the block and restore each module's training flag afterwards."""
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in flags:
            module.training = training


def model_dtype_device(model: nn.Module) -> tuple[torch.dtype, torch.device]:
    """The dtype and device of the model's first floating-point parameter or buffer (float32 on the CPU without one)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype, tensor.device
    return torch.float32, torch.device("cpu")


def input_normalization(model: nn.Module) -> Optional[tuple[list[float], list[float]]]:
    """``(image_mean, image_std)`` from the model's config when it records them (leuk's models do)."""
    config = getattr(model, "config", None)
    mean, std = getattr(config, "image_mean", None), getattr(config, "image_std", None)
    if mean is None or std is None:
        return None
    return [float(v) for v in mean], [float(v) for v in std]


def class_labels(model: nn.Module) -> dict[int, str]:
    """``{index: label}`` from the model's ``config.id2label`` (``{}`` without one)."""
    id2label = getattr(getattr(model, "config", None), "id2label", None) or {}
    return {int(k): str(v) for k, v in id2label.items()}


def resolve_target(target: Union[int, str, None], logits: Tensor, labels: Mapping[int, str]) -> int:
    """Class index from an index, a label name (case-insensitive) or ``None`` (the predicted class)."""
    n_classes = int(logits.shape[-1])
    if target is None:
        return int(logits.reshape(-1, n_classes)[0].argmax())
    if isinstance(target, str):
        text = target.strip()
        by_name = {name.lower(): idx for idx, name in labels.items()}
        if text.lower() in by_name:
            return by_name[text.lower()]
        if not text.lstrip("-").isdigit():
            known = ", ".join(labels[i] for i in sorted(labels)) or "none"
            raise ExplainError(f"unknown target label {target!r}: the model's labels are {known}")
        target = int(text)
    index = int(target)
    if not 0 <= index < n_classes:
        raise ExplainError(f"target class {index} is out of range for a model with {n_classes} classes")
    return index


def branch_layers(model: Any) -> dict[str, nn.Module]:
    """The layers whose outputs are each branch's final feature map, by branch name; ``{}`` for one-branch models.

    ``model.get_gradcam_layers()`` (a mapping) where the model defines it, else what the model's family says
    (:meth:`leuk.models.family.ModelFamily.branch_layers`; HybridCN-NAS: its two SAGAN self-attention
    blocks, named by backbone); ``{}`` for a model of no leuk family.
    """
    from leuk.models import FamilyError, family_of

    net = unwrap_model(model)
    getter = getattr(net, "get_gradcam_layers", None)
    if callable(getter):
        return dict(getter())
    try:
        return dict(family_of(net).branch_layers(net))
    except FamilyError:
        return {}
