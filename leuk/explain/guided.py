"""Guided backpropagation on any activation module: the gradient leaving an activation towards its input is
clipped at zero (see :mod:`leuk.explain.attribution` for why leuk rewrites more than ``nn.ReLU``)."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from leuk.explain._util import ExplainError

__all__ = ["guided_activations"]


class _PositiveGradient(torch.autograd.Function):
    """Identity forward; backward passes only the positive part of the gradient."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor) -> Tensor:
        # a copy, so that an in-place activation that follows does not modify the function's input
        return tensor.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad.clamp_min(0)


def _rectifier_types(which: str) -> tuple[type, ...]:
    if which == "relu":
        return (nn.ReLU,)
    if which != "all":
        raise ExplainError(f"guided={which!r}: use 'all' (every rectifier-like activation) or 'relu' (Captum's rule)")
    kinds: list[type] = [nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.CELU, nn.SELU, nn.GELU, nn.SiLU,
                         nn.Mish, nn.Hardswish, nn.Softplus]
    try:
        from timm.layers import activations as timm_act

        kinds += [getattr(timm_act, name) for name in ("Swish", "Mish", "HardSwish", "GELU", "GELUTanh", "QuickGELU")
                  if hasattr(timm_act, name)]
    except ImportError:  # timm is optional here
        pass
    return tuple(kinds)


@contextlib.contextmanager
def guided_activations(model: nn.Module, which: str = "all") -> Iterator[int]:
    """Apply the guided-backpropagation rule to ``model``'s activation modules for the block.

    Yields the number of modules rewritten. ``which="relu"`` rewrites only ``nn.ReLU`` (Captum's
    :class:`~captum.attr.GuidedBackprop`); ``"all"`` every rectifier-like activation (see module docs).
    Activations written as functions (``F.silu``) cannot be reached and keep their plain gradient.
    """
    kinds = _rectifier_types(which)

    def clip_input_gradient(module: nn.Module, args: tuple) -> tuple:
        if args and isinstance(args[0], Tensor) and args[0].requires_grad:
            return (_PositiveGradient.apply(args[0]),) + tuple(args[1:])
        return args

    handles = [m.register_forward_pre_hook(clip_input_gradient) for m in model.modules() if isinstance(m, kinds)]
    try:
        yield len(handles)
    finally:
        for handle in handles:
            handle.remove()
