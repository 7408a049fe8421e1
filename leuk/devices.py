"""Which device leuk runs a model on when the caller does not say: the one rule, used by the loader, the
prediction engine and the apps. torch is imported when a function is called, not on import."""

from __future__ import annotations

from typing import Any

__all__ = ["choose_device", "resolve_device"]


def choose_device() -> str:
    """``"cuda"`` when a CUDA device is visible, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: Any = None) -> str:
    """``device`` spelled as torch spells it (``"cuda:0"``, ``"cpu"``), or :func:`choose_device` for ``None``."""
    if device is None:
        return choose_device()
    import torch

    return str(torch.device(device))
