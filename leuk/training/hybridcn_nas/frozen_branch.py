"""A frozen (ImageNet) branch computed once per image and flip/turn, not once per epoch.

While the extractor trains, a frozen branch's backbone gives the same output for the same input; the only
inputs it ever sees are the training images under the 16 outcomes of
:func:`leuk.data.augment.dihedral_draw` (the batch-level flips and turns of the extractor stage) and the
validation images as they are. So its ``forward_features`` is computed for every image under every draw once
(:func:`branch_maps`), and :class:`CachedBranch` stands in for the backbone while the extractor trains: the
trainable layers above it (self-attention, projection, fusion) see exactly what the live backbone would give,
and an epoch costs what the trainable branch costs. ``tests/test_frozen_branch.py`` checks the stand-in
against the live backbone.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from torch import nn

__all__ = ["CachedBranch", "branch_maps", "draw_index"]


def draw_index(draw: tuple[bool, bool, int]) -> int:
    """The position of ``draw`` in :data:`leuk.data.augment.DIHEDRAL_DRAWS`."""
    from leuk.data.augment import DIHEDRAL_DRAWS

    return DIHEDRAL_DRAWS.index((bool(draw[0]), bool(draw[1]), int(draw[2])))


def branch_maps(extractor: Any, side: str, pixels: Any, masks: Any, *, batch_size: int = 64,
                progress: bool = False) -> Any:
    """``(16, N, C, h, w)`` float32: branch ``side``'s backbone output (``forward_features`` of
    ``extractor.branch_input``) for every image of ``pixels`` (indexable by row arrays) with its mask, under
    every draw of :data:`leuk.data.augment.DIHEDRAL_DRAWS`; the backbone in eval mode, without gradients."""
    import torch

    from leuk.data.augment import DIHEDRAL_DRAWS, apply_dihedral
    from leuk.training.hybridcn_nas.optim import progress_bar

    backbone = getattr(extractor, f"branch_{side}")
    was_training = backbone.training
    backbone.eval()
    rows = np.arange(len(masks))
    chunks = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
    variants = []
    with torch.no_grad():
        for draw in progress_bar(DIHEDRAL_DRAWS, f"frozen branch {side.upper()}", progress):
            maps = []
            for chunk in chunks:
                x, m = apply_dihedral((pixels[chunk], masks[chunk]), draw)
                maps.append(backbone.forward_features(extractor.branch_input(x, side, m)).float())
            variants.append(torch.cat(maps))
    backbone.train(was_training)
    return torch.stack(variants)


class CachedBranch(nn.Module):
    """Stands in for a frozen backbone: ``forward_features`` returns the rows and draw last :meth:`select`-ed
    from the maps of :func:`branch_maps`. It has nothing to learn or save (the maps are no buffer): set it as
    the extractor's branch while the extractor trains, put the backbone back afterwards."""

    def __init__(self, maps: Any):
        super().__init__()
        self.maps = maps
        self._rows: Sequence[int] | None = None
        self._draw = 0

    def select(self, rows: Sequence[int], draw: tuple[bool, bool, int] = (False, False, 0)) -> None:
        """The images (rows of the maps) and the flip/turn of the next forward pass."""
        self._rows = np.asarray(rows)
        self._draw = draw_index(draw)

    def forward_features(self, x: Any) -> Any:
        if self._rows is None or len(self._rows) != len(x):
            raise RuntimeError("CachedBranch.select(rows, draw) must name the batch before each forward pass")
        return self.maps[self._draw][self._rows]
