"""Inference-only rewrites of a model that compute the same function with less work.

:func:`fold_batchnorm` folds every BatchNorm that directly follows a Conv2d into that convolution's
weights (:func:`torch.nn.utils.fusion.fuse_conv_bn_eval`), on a copy of an eval-mode model. timm's
``BatchNormAct2d`` keeps its activation (and dropout) as a module of its own, so activation hooks such as
Guided Backprop still find every activation. In eval mode a BatchNorm is an affine map per channel, so the
folded copy computes the same logits and the same input gradients (up to float rounding); the copy is
checked against the original on a probe input before it is returned.

On a CPU this saves a pass over every feature map forward and backward (about 10% of an EfficientNetV2's
forward+backward time, see ``bench/bench_explain.py``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Optional

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from leuk.models.outputs import logits_of


class ActivationOfBatchNorm(nn.Module):
    """What remains of a (timm ``BatchNormAct2d``) BatchNorm once its affine map lives in the convolution:
    its dropout and activation, or nothing for a plain ``nn.BatchNorm2d``."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.drop = getattr(norm, "drop", None) or nn.Identity()
        self.act = getattr(norm, "act", None) or nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.drop(x))


@dataclass
class FoldReport:
    """How :func:`fold_batchnorm` went: pairs folded and the largest logit difference on the probe."""

    folded: int
    max_abs_difference: float
    reason: str = ""
    #: (convolution, BatchNorm) module names folded together
    pairs: list[tuple[str, str]] = field(default_factory=list)

    def changes_output_of(self, name: str) -> bool:
        """Whether the module called ``name`` computes something else in the folded copy (a folded conv)."""
        return self.ok and any(conv == name for conv, _ in self.pairs)

    @property
    def ok(self) -> bool:
        return self.folded > 0 and not self.reason


def conv_batchnorm_pairs(model: nn.Module, probe: Tensor) -> list[tuple[str, str]]:
    """Names of (Conv2d, BatchNorm2d) pairs where the BatchNorm's input IS the convolution's output, found
    by running ``probe`` through the model with forward hooks (module order alone can lie)."""
    last_conv: list[tuple[str, Tensor]] = []  # the newest conv output, held so that `is` cannot be fooled
    pairs: list[tuple[str, str]] = []
    handles = []

    def on_conv(name: str):
        def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
            last_conv[:] = [(name, output)]

        return hook

    def on_norm(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            if args and last_conv and args[0] is last_conv[0][1]:
                pairs.append((last_conv[0][0], name))

        return hook

    for name, module in model.named_modules():
        if type(module) is nn.Conv2d:  # subclasses (e.g. same-padding convs) may pad in forward: left alone
            handles.append(module.register_forward_hook(on_conv(name)))
        elif isinstance(module, nn.BatchNorm2d):
            handles.append(module.register_forward_pre_hook(on_norm(name)))
    try:
        with torch.no_grad():
            model(probe)
    finally:
        last_conv.clear()
        for handle in handles:
            handle.remove()
    seen_conv: set[str] = set()
    unique = []
    for conv, norm in pairs:  # a module called twice is folded once, and only if it pairs the same way
        if conv not in seen_conv:
            seen_conv.add(conv)
            unique.append((conv, norm))
    return unique


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, module)


def fold_batchnorm(
    model: nn.Module, probe: Tensor, *, rtol: float = 1e-3, atol: float = 1e-4
) -> tuple[nn.Module, FoldReport]:
    """An eval-mode copy of ``model`` with each Conv2d -> BatchNorm2d pair folded into one convolution.

    ``probe``: an input batch the model accepts (an image of its input size); it finds the pairs and checks
    the copy. Returns ``(model, report)``: the ORIGINAL model, untouched, when there is nothing to fold or
    the copy's logits differ from the original's by more than ``atol + rtol * max|logit|`` (the report says
    why). Folding is exact only in eval mode: the copy is for inference and attribution, not for training.
    """
    was_training = model.training
    model.eval()
    try:
        pairs = conv_batchnorm_pairs(model, probe)
        if not pairs:
            return model, FoldReport(0, 0.0, "no Conv2d directly followed by a BatchNorm2d")
        folded = copy.deepcopy(model)
        for conv_name, norm_name in pairs:
            conv = folded.get_submodule(conv_name)
            norm = folded.get_submodule(norm_name)
            if norm.running_mean is None or norm.running_var is None:
                continue  # batch statistics even in eval mode: not an affine map
            _set_submodule(folded, conv_name, fuse_conv_bn_eval(conv, norm))
            _set_submodule(folded, norm_name, ActivationOfBatchNorm(norm))
        folded.eval()
        with torch.no_grad():
            expected = logits_of(model(probe)).float()
            actual = logits_of(folded(probe)).float()
        difference = float((expected - actual).abs().max())
        tolerance = atol + rtol * float(expected.abs().max())
        if not difference <= tolerance:
            return model, FoldReport(len(pairs), difference,
                                     f"folded copy differs by {difference:.3g} (> {tolerance:.3g}): not used")
        return folded, FoldReport(len(pairs), difference, pairs=pairs)
    finally:
        model.train(was_training)


def module_name(root: nn.Module, module: nn.Module) -> Optional[str]:
    """The path of ``module`` inside ``root`` ("" for root itself), or None when it is not part of it."""
    return next((name for name, candidate in root.named_modules() if candidate is module), None)
