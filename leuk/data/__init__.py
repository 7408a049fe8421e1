"""Data: synthetic look-alikes (:mod:`leuk.data.synthetic`), loaders of the real layouts, patient-grouped
splits (:mod:`leuk.data.splits`) and GPU augmentation (:mod:`leuk.data.augment`).

The loaders are re-exported here and imported on first use, so that ``import leuk.data.splits`` does not pay
for importing :mod:`datasets`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from leuk.data.loaders import ARIA_LABELS, CNMC_LABELS, dataset_summary, load_aria, load_cnmc

__all__ = ["ARIA_LABELS", "CNMC_LABELS", "dataset_summary", "load_aria", "load_cnmc"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from leuk.data import loaders

        return getattr(loaders, name)
    raise AttributeError(f"module 'leuk.data' has no attribute {name!r}")
