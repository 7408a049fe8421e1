"""The names of :mod:`leuk.explain`'s attribution methods, once: canonical names, aliases, titles, option
defaults, which methods start from a baseline image and which are Grad-CAMs, and the baselines.

Needs no torch, so :mod:`leuk.serving` and the apps read these without loading the attribution code.
"""

from __future__ import annotations

from typing import Any, Sequence, Union

from leuk.explain._util import ExplainError

__all__ = ["ALIASES", "BASELINES", "BASELINE_METHODS", "GRADCAM_METHODS", "METHODS", "METHOD_OPTIONS",
           "METHOD_TITLES", "canonical_method", "resolve_methods"]

#: The canonical method names (what ``all`` stands for, in this order).
METHODS: tuple[str, ...] = ("gradcam", "guided_gradcam", "integrated_gradients", "smoothgrad", "occlusion")

#: Other spellings :func:`canonical_method` accepts (after lower-casing).
ALIASES: dict[str, str] = {
    "grad-cam": "gradcam",
    "grad_cam": "gradcam",
    "guided-gradcam": "guided_gradcam",
    "guided-grad-cam": "guided_gradcam",
    "guided_grad_cam": "guided_gradcam",
    "ig": "integrated_gradients",
    "integrated-gradients": "integrated_gradients",
    "integratedgradients": "integrated_gradients",
    "smooth-grad": "smoothgrad",
    "smooth_grad": "smoothgrad",
}

#: What each method is called where a person reads it.
METHOD_TITLES: dict[str, str] = {
    "gradcam": "Grad-CAM",
    "integrated_gradients": "Integrated Gradients",
    "guided_gradcam": "Guided Grad-CAM",
    "smoothgrad": "SmoothGrad",
    "occlusion": "Occlusion",
}

#: Options each method understands (besides ``internal_batch_size``), with their defaults.
METHOD_OPTIONS: dict[str, dict[str, Any]] = {
    "gradcam": {},
    "guided_gradcam": {"guided": "all"},
    "integrated_gradients": {"n_steps": 50, "baseline": "black", "ig_method": "gausslegendre"},
    "smoothgrad": {"nt_samples": 16, "noise": 0.15, "smoothgrad_base": "saliency", "n_steps": 16, "seed": 0},
    "occlusion": {"window": None, "stride": None, "baseline": "black"},
}

#: The methods that start from a reference image (those with a ``baseline`` option).
BASELINE_METHODS: tuple[str, ...] = tuple(name for name in METHODS if "baseline" in METHOD_OPTIONS[name])
#: The methods whose map is a Grad-CAM (non-negative, coarse: it can be empty, and it spills onto the background).
GRADCAM_METHODS: tuple[str, ...] = ("gradcam", "guided_gradcam")
#: The named reference images of :func:`leuk.explain.make_baseline`.
BASELINES: tuple[str, ...] = ("blur", "black", "mean", "zero")


def canonical_method(name: str) -> str:
    """The canonical name of a method (``"IG"`` -> ``"integrated_gradients"``); raises :class:`ExplainError`."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    if key not in METHODS:
        raise ExplainError(f"unknown explanation method {name!r}: use one of {', '.join(METHODS)} (or 'all')")
    return key


def resolve_methods(methods: Union[str, Sequence[str]]) -> list[str]:
    """``"all"``, a comma-separated string or a list -> canonical method names, in the order given, no repeats."""
    if isinstance(methods, str):
        if methods.strip().lower() == "all":
            return list(METHODS)
        methods = [m for m in methods.split(",") if m.strip()]
    names = [canonical_method(m) for m in methods]
    if not names:
        raise ExplainError(f"no explanation method given: use one of {', '.join(METHODS)} (or 'all')")
    return list(dict.fromkeys(names))
