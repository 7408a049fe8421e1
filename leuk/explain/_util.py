"""Small pieces shared by the modules of :mod:`leuk.explain`."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator

from leuk.errors import LeukError

if TYPE_CHECKING:
    import torch


class ExplainError(LeukError, ValueError):
    """A bad request to the explanation tools (unknown method or option, wrong input shape or target)."""


@contextlib.contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Run a block with torch's global generator seeded, leaving the caller's random state untouched."""
    import torch

    devices = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
