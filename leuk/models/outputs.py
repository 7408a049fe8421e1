"""What every caller of a classifier needs from its output: the logits tensor.

Hugging Face models return output objects, timm models tensors, some wrappers tuples or mappings;
:func:`logits_of` accepts them all, and :class:`LogitsOnly` turns any classifier into a module whose
``forward(pixel_values)`` returns that tensor (what Captum and ``torch.onnx.export`` need).
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from leuk.errors import LeukError

__all__ = ["LogitsOnly", "ModelOutputError", "logits_of"]


class ModelOutputError(LeukError, TypeError):
    """A model output with no logits tensor in it (reported on one line, like every leuk error)."""


def logits_of(output: Any) -> Tensor:
    """The logits tensor of a model output: a tensor, an object with ``.logits``, a mapping or a tuple."""
    if isinstance(output, Tensor):
        return output
    logits = getattr(output, "logits", None)
    if isinstance(logits, Tensor):
        return logits
    if isinstance(output, Mapping) and isinstance(output.get("logits"), Tensor):
        return output["logits"]
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], Tensor):
        return output[0]
    raise ModelOutputError(f"cannot find logits in a model output of type {type(output).__name__}")


class LogitsOnly(nn.Module):
    """Captum-facing view of a classifier: ``forward(pixel_values)`` returns the logits tensor (N x classes).

    Captum needs a forward that returns a tensor; Hugging Face models return output objects (which also
    break :class:`captum.attr.GuidedGradCam`). The wrapped model's modules are shared, not copied, so
    layer hooks on ``model`` see this module's forward passes.
    """

    def __init__(self, model: nn.Module, *, channels_last: bool = False) -> None:
        super().__init__()
        self.model = model
        self.channels_last = channels_last

    def forward(self, pixel_values: Tensor) -> Tensor:
        if self.channels_last and pixel_values.dim() == 4:
            pixel_values = pixel_values.contiguous(memory_format=torch.channels_last)
        return logits_of(self.model(pixel_values))
