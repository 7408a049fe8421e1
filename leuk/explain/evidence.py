"""Do attribution maps land on the class evidence? Checked on synthetic cells whose evidence is known.

:func:`leuk.data.synthetic.render_cell` with ``class_evidence="nucleus"`` draws cells whose class shows only
inside the nucleus, and returns the nucleus mask. :func:`synthetic_evidence_ratios` explains such cells with
a trained model and with the same architecture at random weights, and reports
:func:`~leuk.explain.faithfulness.mask_attribution_ratio` (positive attribution per pixel inside the nucleus
over outside) for each. The random-weights control (Adebayo et al., 2018) tells what a map owes to the input
alone: IG from a black baseline, on cells segmented onto black, scores high at random weights too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from leuk.explain.attribution import explain
from leuk.explain.faithfulness import mask_attribution_ratio

__all__ = ["EVIDENCE_CHECKS", "EvidenceCheck", "EvidenceRatio", "synthetic_evidence_ratios"]


@dataclass(frozen=True)
class EvidenceCheck:
    """One attribution method with its options; ``beats_random``: the trained map must score above random
    weights' (False where the control is known to score as high, so only the absolute bar applies)."""

    method: str
    options: dict[str, Any] = field(default_factory=dict)
    beats_random: bool = True

    @property
    def label(self) -> str:
        baseline = self.options.get("baseline")
        return f"{self.method} ({baseline} baseline)" if baseline else self.method


@dataclass(frozen=True)
class EvidenceRatio:
    """Nucleus/outside attribution per pixel of a trained model and of random weights, for one check."""

    check: EvidenceCheck
    trained: float
    random: float


EVIDENCE_CHECKS: tuple[EvidenceCheck, ...] = (
    EvidenceCheck("gradcam"),
    EvidenceCheck("integrated_gradients", {"n_steps": 8, "baseline": "blur"}),
    EvidenceCheck("integrated_gradients", {"n_steps": 8, "baseline": "black"}, beats_random=False),
)


def synthetic_evidence_ratios(
    model: nn.Module,
    processor: Callable[..., Any],
    *,
    n_cells: int = 20,
    seed: int = 11,
    class_evidence: str = "nucleus",
    checks: Sequence[EvidenceCheck] = EVIDENCE_CHECKS,
    random_seed: int = 0,
) -> list[EvidenceRatio]:
    """Explain ``n_cells`` synthetic C-NMC cells (half ALL, half HEM, rendered at the model's input size and
    passed through ``processor``), each as its own class, and return one :class:`EvidenceRatio` per check.

    ``model`` must be a binary ALL/HEM classifier whose config has ``image_size`` and ``label2id``; its
    random-weights twin is ``type(model)(model.config)`` built under ``torch.manual_seed(random_seed)``.
    """
    from leuk.data.synthetic import render_cell

    if n_cells < 2:
        raise ValueError(f"n_cells must be at least 2 (one per class), got {n_cells}")
    config = model.config
    size = int(config.image_size)
    label2id = {str(name).lower(): int(index) for name, index in config.label2id.items()}
    if set(label2id) != {"all", "hem"}:
        raise ValueError(f"the model's labels {sorted(label2id)} are not C-NMC's all/hem")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_seed)
        random_weights = type(model)(config).eval()
    rng = np.random.default_rng(seed)
    labels = [("all", "hem")[i % 2] for i in range(n_cells)]
    cells = [render_cell(rng, label, size, class_evidence=class_evidence) for label in labels]
    pixels = [processor(images=cell.image, return_tensors="pt")["pixel_values"] for cell in cells]
    masks = [cell.nucleus_mask for cell in cells]
    results = []
    for check in checks:
        ratios = {}
        for name, net in (("trained", model), ("random", random_weights)):
            maps = [
                explain(net, x, check.method, target=label2id[label], faithfulness=False, **check.options).attribution
                for x, label in zip(pixels, labels)
            ]
            ratios[name] = mask_attribution_ratio(maps, masks)
        results.append(EvidenceRatio(check, ratios["trained"], ratios["random"]))
    return results
