"""Explanations that can be trusted: Captum attributions, their faithfulness, and pictures of them.

``explain(model, pixel_values, method)`` -> :class:`Explanation` (H x W map, target, timings,
deletion/insertion faithfulness); ``explain_many`` for several methods sharing work; ``render_overlay`` /
``render_panel`` to draw them; :mod:`leuk.explain.branches` for multi-branch and attention models.
"""

from leuk.explain._util import ExplainError
from leuk.explain.attribution import (
    METHOD_OPTIONS,
    METHODS,
    Explanation,
    LogitsOnly,
    canonical_method,
    explain,
    explain_many,
    find_gradcam_layer,
    guided_activations,
    logits_of,
    resolve_methods,
    resolve_target,
)
from leuk.explain.branches import (
    FeatureAttribution,
    HybridExplanation,
    LayerCams,
    branch_layers,
    capture_attention,
    explain_hybrid,
    feature_attributions,
    gradcam_per_layer,
)
from leuk.explain.faithfulness import (
    BASELINES,
    Faithfulness,
    deletion_insertion,
    infidelity_score,
    make_baseline,
    mask_attribution_ratio,
)
from leuk.explain.evidence import EVIDENCE_CHECKS, EvidenceCheck, EvidenceRatio, synthetic_evidence_ratios
from leuk.explain.render import (
    SIGNS,
    display_image,
    normalize_attribution,
    render_overlay,
    render_panel,
    restore_aspect,
)

__all__ = [
    "BASELINES",
    "EVIDENCE_CHECKS",
    "METHODS",
    "METHOD_OPTIONS",
    "SIGNS",
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
