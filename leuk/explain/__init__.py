"""Explanations that can be trusted: Captum attributions, their faithfulness, and pictures of them.

``explain(model, pixel_values, method)`` -> :class:`Explanation` (H x W map, target, timings,
deletion/insertion faithfulness); ``explain_many`` for several methods sharing work; ``render_overlay`` /
``render_panel`` to draw them; :mod:`leuk.explain.branches` for multi-branch and attention models.

Importing this package is cheap (no torch): the method vocabulary (:mod:`leuk.explain.methods`) is imported at
once, everything else on first use (a module ``__getattr__``), so :mod:`leuk.serving` and the apps can read
the method names without loading Captum.
"""

from __future__ import annotations

import importlib
from typing import Any

from leuk.explain._util import ExplainError
from leuk.explain.methods import (
    BASELINE_METHODS,
    BASELINES,
    GRADCAM_METHODS,
    METHOD_OPTIONS,
    METHOD_TITLES,
    METHODS,
    canonical_method,
    resolve_methods,
)

#: The names this package hands out from its submodules, loaded on first use.
_LAZY: dict[str, str] = {
    **dict.fromkeys(("Explanation", "LogitsOnly", "explain", "explain_many", "find_gradcam_layer",
                     "guided_activations", "logits_of", "resolve_target"), "leuk.explain.attribution"),
    **dict.fromkeys(("FeatureAttribution", "HybridExplanation", "LayerCams", "branch_layers", "capture_attention",
                     "explain_hybrid", "feature_attributions", "gradcam_per_layer"), "leuk.explain.branches"),
    **dict.fromkeys(("Faithfulness", "deletion_insertion", "infidelity_score", "make_baseline",
                     "mask_attribution_ratio"), "leuk.explain.faithfulness"),
    **dict.fromkeys(("EVIDENCE_CHECKS", "EvidenceCheck", "EvidenceRatio", "synthetic_evidence_ratios"),
                    "leuk.explain.evidence"),
    **dict.fromkeys(("SIGNS", "display_image", "normalize_attribution", "render_overlay", "render_panel",
                     "restore_aspect"), "leuk.explain.render"),
}


def __getattr__(name: str) -> Any:
    """A name of :data:`_LAZY` (its submodule imported on first use), or a submodule (``leuk.explain.twin``)."""
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value
        return value
    if not name.startswith("__"):
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":
                raise
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BASELINES",
    "BASELINE_METHODS",
    "EVIDENCE_CHECKS",
    "METHODS",
    "METHOD_OPTIONS",
    "METHOD_TITLES",
    "SIGNS",
    "GRADCAM_METHODS",
    "EvidenceCheck",
    "EvidenceRatio",
    "ExplainError",
    "Explanation",
    "Faithfulness",
    "FeatureAttribution",
    "HybridExplanation",
    "LayerCams",
    "LogitsOnly",
    "branch_layers",
    "canonical_method",
    "capture_attention",
    "deletion_insertion",
    "display_image",
    "explain",
    "explain_hybrid",
    "explain_many",
    "feature_attributions",
    "find_gradcam_layer",
    "gradcam_per_layer",
    "guided_activations",
    "infidelity_score",
    "logits_of",
    "make_baseline",
    "mask_attribution_ratio",
    "normalize_attribution",
    "render_overlay",
    "render_panel",
    "restore_aspect",
    "resolve_methods",
    "resolve_target",
    "synthetic_evidence_ratios",
]
