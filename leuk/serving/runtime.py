"""Where models run: device choice and the ZeroGPU decorator (bf16 autocast on CUDA is :mod:`leuk.inference`'s).

``spaces`` is imported here, before anything imports torch, as ZeroGPU requires; off a ZeroGPU Space its
``GPU`` decorator returns the function unchanged, and without the package :func:`gpu` is the identity.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from leuk.devices import choose_device  # noqa: F401  (re-exported; imports no torch)

try:  # ZeroGPU support is optional: the decorator is a no-op unless SPACES_ZERO_GPU is set
    import spaces as _spaces
except Exception:  # noqa: BLE001  (missing package, or a spaces build that refuses this environment)
    _spaces = None

F = TypeVar("F", bound=Callable[..., Any])

#: Seconds of ZeroGPU time requested per call (classification of a batch, one explanation, one pipeline).
GPU_SECONDS = 60


def gpu(duration: int = GPU_SECONDS) -> Callable[[F], F]:
    """Decorate a function that touches the GPU: ``spaces.GPU(duration=...)`` when available, else identity."""

    def wrap(fn: F) -> F:
        if _spaces is None:
            return fn
        return _spaces.GPU(duration=duration)(fn)

    return wrap
