"""One image's attribution map, drawn on the image the model saw, with its faithfulness numbers."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from leuk.io import ImageSource, read_image
from leuk.serving.assessment import verdict_headline
from leuk.verdict import UNCERTAIN_BELOW
from leuk.serving.classify import MAX_APP_PIXELS, classify_images
from leuk.serving.registry import ModelRegistry, get_registry
from leuk.serving.runtime import gpu

#: The methods the apps offer (the names of :data:`leuk.explain.METHODS`), cheapest useful first.
EXPLAIN_METHODS: tuple[str, ...] = ("gradcam", "integrated_gradients", "guided_gradcam", "smoothgrad", "occlusion")
METHOD_TITLES = {
    "gradcam": "Grad-CAM",
    "integrated_gradients": "Integrated Gradients",
    "guided_gradcam": "Guided Grad-CAM",
    "smoothgrad": "SmoothGrad",
    "occlusion": "Occlusion",
}
#: Lighter settings used on CPU so that one explanation takes seconds, not minutes.
CPU_OPTIONS: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"n_steps": 16},
    "smoothgrad": {"nt_samples": 8},
}
FAITHFULNESS_STEPS = 10
#: Reference images Integrated Gradients and Occlusion can start from (``black`` first: the default), and the
#: methods that use one.
EXPLAIN_BASELINES: tuple[str, ...] = ("black", "blur", "mean", "zero")
BASELINE_METHODS: tuple[str, ...] = ("integrated_gradients", "occlusion")
BASELINE_TITLES = {
    "black": "black (no cell: credits the cell as a whole)",
    "blur": "blurred image (which fine structure, e.g. chromatin, drove the call)",
    "mean": "mean colour",
    "zero": "zero input (the dataset mean colour)",
}
#: Shorter side, in pixels, of the overlay shown to the user (maps are upsampled bilinearly to it).
DISPLAY_SIZE = 320


def explain_method_choices() -> list[tuple[str, str]]:
    """``(title, method)`` pairs for a dropdown."""
    return [(METHOD_TITLES[name], name) for name in EXPLAIN_METHODS]


def explain_baseline_choices() -> list[tuple[str, str]]:
    """``(title, baseline)`` pairs for a dropdown (the reference image of IG and Occlusion)."""
    return [(BASELINE_TITLES[name], name) for name in EXPLAIN_BASELINES]


@dataclass
class ExplainResult:
    """An attribution overlay and the numbers that say how far to trust it."""

    model_name: str
    method: str
    overlay: Image.Image
    model_input: Image.Image
    target_label: str
    probability: float
    deletion_auc: float | None
    insertion_auc: float | None
    seconds: float
    notes: list[str]
    #: the image's uncertainty verdict (:mod:`leuk.verdict`), as the Classify tab gives it
    verdict: Any = None
    #: the model's verdict threshold (:attr:`leuk.hub.LoadedModel.uncertain_below`)
    threshold: float = UNCERTAIN_BELOW
    #: the deletion/insertion curves themselves (:class:`leuk.explain.Faithfulness`), for the log-odds score
    curves: Any = None
    #: the reference image of Integrated Gradients and Occlusion (``None``: the method has none)
    baseline: str | None = None

    @property
    def faithfulness(self) -> float | None:
        """How well the map ranks the pixels the model uses (higher is better): the log-odds score of
        :attr:`leuk.explain.Faithfulness.score` (mean log-odds of the class along the insertion curve minus along
        the deletion curve, nats); ``None`` when the score cannot rank this map (its curves barely move the model)
        or was not computed."""
        if self.curves is not None:
            return self.curves.score if self.curves.separable else None
        if self.deletion_auc is None or self.insertion_auc is None:
            return None
        return self.insertion_auc - self.deletion_auc

    def _faithfulness_line(self) -> str | None:
        from leuk.explain.faithfulness import MIN_LOGODDS_RANGE

        curves = self.curves
        if curves is None or curves.logodds_range is None:
            if self.faithfulness is None:
                return None
            return (f"Faithfulness **{self.faithfulness:+.3f}** = insertion AUC {self.insertion_auc:.3f} "
                    f"(higher is better) minus deletion AUC {self.deletion_auc:.3f} (lower is better): "
                    "the probability of the class as the most-attributed pixels are put back / taken away.")
        removed = {"blur": "blurred", "black": "blacked out", "mean": "set to the mean colour",
                   "zero": "set to zero"}.get(curves.baseline, "replaced")
        probabilities = np.concatenate([curves.deletion, curves.insertion])
        if not curves.separable:
            return (f"**Faithfulness cannot rank this map:** however many of its most-attributed pixels are "
                    f"{removed} or put back, the probability of **{self.target_label}** stays between "
                    f"{probabilities.min():.3f} and {probabilities.max():.3f} (log-odds within "
                    f"{curves.logodds_range:.3f}, below {MIN_LOGODDS_RANGE}), so its score "
                    f"({curves.score:+.3f}) is near zero as any map's would be. Either the map misses what the "
                    "model uses or the model barely reacts to this on the image: compare another method here.")
        return (f"Faithfulness **{curves.score:+.3f}** = the log-odds of **{self.target_label}** averaged along "
                f"the insertion curve ({curves.insertion_logodds_auc:+.3f}, most-attributed pixels put back first; "
                f"higher is better) minus along the deletion curve ({curves.deletion_logodds_auc:+.3f}, most-attributed "
                f"pixels {removed} first; lower is better). Log-odds keep moving where the probability saturates; "
                f"on the probability: insertion AUC {curves.insertion_auc:.3f}, deletion AUC {curves.deletion_auc:.3f}.")

    @property
    def summary_markdown(self) -> str:
        """The image's verdict, then target, probability, faithfulness and timing in a few Markdown lines."""
        lines = [] if self.verdict is None else [verdict_headline(self.verdict, self.threshold)]
        baseline = f", from the {self.baseline} baseline" if self.baseline else ""
        lines += [f"**{METHOD_TITLES.get(self.method, self.method)}**{baseline} for class **{self.target_label}** "
                  f"(probability {self.probability:.3f}), {self.seconds:.1f} s."]
        faithfulness = self._faithfulness_line()
        if faithfulness:
            lines.append(faithfulness)
        lines += [f"_{note}_" for note in self.notes]
        return "\n\n".join(lines)


def _enlarged(rgb: np.ndarray, minimum: int = DISPLAY_SIZE) -> np.ndarray:
    """The model-input picture upscaled (bicubic) so that its shorter side is at least ``minimum`` pixels."""
    height, width = rgb.shape[:2]
    scale = minimum / min(height, width)
    if scale <= 1:
        return rgb
    size = (round(width * scale), round(height * scale))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BICUBIC))


@gpu()
def explain_image(
    image: ImageSource,
    model_name: str | None = None,
    method: str = EXPLAIN_METHODS[0],
    target: str | int | None = None,
    *,
    baseline: str | None = None,
    registry: ModelRegistry | None = None,
) -> ExplainResult:
    """Attribution map of ``method`` for ``target`` (a class name or index; default: the predicted class).

    ``baseline``: the reference image of Integrated Gradients and Occlusion, one of :data:`EXPLAIN_BASELINES`
    (default ``black``, as ``leuk explain --baseline``); other methods have none and ignore it.
    Raises :class:`leuk.errors.ImageReadError` for an unreadable image and :class:`leuk.explain.ExplainError`
    for an unknown method, target or baseline.
    """
    from leuk.explain import ExplainError, canonical_method, display_image, explain, render_overlay, restore_aspect

    registry = registry or get_registry()
    name = registry.check_name(model_name)
    method = canonical_method(method)
    baseline = (baseline or "").strip().lower() or EXPLAIN_BASELINES[0]
    if baseline not in EXPLAIN_BASELINES:
        raise ExplainError(f"unknown baseline {baseline!r}: use one of {', '.join(EXPLAIN_BASELINES)}")
    uses_baseline = method in BASELINE_METHODS
    if isinstance(target, str) and target.strip().lower() in ("", "predicted"):
        target = None
    picture = read_image(image, max_pixels=MAX_APP_PIXELS)
    loaded = registry.get(name)
    pixel_values = loaded.processor(images=picture, return_tensors="pt")["pixel_values"]
    classified = classify_images([picture], name, registry=registry)
    verdict = classified.verdict
    options = dict(CPU_OPTIONS.get(method, {})) if registry.device == "cpu" else {}
    if uses_baseline:
        options["baseline"] = baseline
    start = time.perf_counter()
    explanation = explain(loaded.model, pixel_values, method, target=target,
                          faithfulness_steps=FAITHFULNESS_STEPS, **options)
    seconds = time.perf_counter() - start
    # the model saw the image squashed to a square: show it (and its map) at the upload's own aspect ratio
    seen = _enlarged(restore_aspect(display_image(pixel_values, loaded.processor), picture.size))
    overlay = render_overlay(seen, explanation.attribution, sign="positive")
    faith = explanation.faithfulness
    return ExplainResult(
        model_name=name,
        method=explanation.method,
        overlay=Image.fromarray(np.ascontiguousarray(overlay)),
        model_input=Image.fromarray(np.ascontiguousarray(seen)),
        target_label=explanation.label if explanation.label is not None else str(explanation.target),
        probability=float(explanation.probability),
        deletion_auc=None if faith is None else float(faith.deletion_auc),
        insertion_auc=None if faith is None else float(faith.insertion_auc),
        seconds=seconds,
        notes=list(explanation.notes),
        verdict=verdict,
        threshold=classified.threshold,
        curves=faith,
        baseline=baseline if uses_baseline else None,
    )
