"""One image's attribution map, drawn on the image the model saw, with its faithfulness numbers."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from leuk.explain import BASELINE_METHODS, BASELINES, GRADCAM_METHODS, METHOD_TITLES, METHODS
from leuk.io import ImageSource, read_image
from leuk.serving.assessment import verdict_headline
from leuk.verdict import UNCERTAIN_BELOW
from leuk.serving.classify import MAX_APP_PIXELS, classify_images
from leuk.serving.registry import ModelRegistry, get_registry
from leuk.serving.runtime import gpu

#: The methods the apps offer: every one of :data:`leuk.explain.METHODS` (names, titles and aliases are
#: :mod:`leuk.explain`'s), the cheapest useful ones first.
EXPLAIN_METHODS: tuple[str, ...] = ("gradcam", "integrated_gradients",
                                    *(name for name in METHODS if name not in ("gradcam", "integrated_gradients")))
#: Lighter settings used on CPU so that one explanation takes seconds, not minutes.
CPU_OPTIONS: dict[str, dict[str, Any]] = {
    "integrated_gradients": {"n_steps": 16},
    "smoothgrad": {"nt_samples": 8},
}
FAITHFULNESS_STEPS = 10
#: Reference images Integrated Gradients and Occlusion (:data:`leuk.explain.BASELINE_METHODS`) can start from
#: (:data:`leuk.explain.BASELINES`, ``black`` first: the default).
EXPLAIN_BASELINES: tuple[str, ...] = ("black", *(name for name in BASELINES if name != "black"))
BASELINE_TITLES = {
    "black": "black (no cell: credits the cell as a whole)",
    "blur": "blurred image (which fine structure, e.g. chromatin, drove the call)",
    "mean": "mean colour",
    "zero": "zero input (the dataset mean colour)",
}
#: Integrated Gradients steps an app offers (``None``: the device's default, 16 on CPU, captum's 50 on a GPU);
#: more steps make the integral exact (a smaller completeness gap) and cost time in proportion.
IG_STEPS_CHOICES: tuple[int | None, ...] = (None, 16, 32, 64, 128, 256)
#: Methods that read the IG steps setting.
IG_STEPS_METHODS: tuple[str, ...] = ("integrated_gradients",)
#: A pixel whose brightest channel is at most this (0-255) is background of a cell segmented onto black.
BLACK_LEVEL = 12
#: Share of the picture that must be black before it is treated as a segmented cell on black.
MIN_BLACK_SHARE = 0.10
#: Shorter side, in pixels, of the overlay shown to the user (maps are upsampled bilinearly to it).
DISPLAY_SIZE = 320


def explain_method_choices() -> list[tuple[str, str]]:
    """``(title, method)`` pairs for a dropdown."""
    return [(METHOD_TITLES[name], name) for name in EXPLAIN_METHODS]


def ig_steps_choices() -> list[tuple[str, int]]:
    """``(title, steps)`` pairs for the IG steps picker (``0`` first: the device's default, as ``None`` is)."""
    default = CPU_OPTIONS["integrated_gradients"]["n_steps"]
    return [(f"auto ({default} on CPU, 50 on a GPU)" if steps is None else str(steps), steps or 0)
            for steps in IG_STEPS_CHOICES]


def _more_steps(steps: int) -> int:
    """The next IG steps choice worth trying: at least four times ``steps`` (capped at the largest choice)."""
    larger = [s for s in IG_STEPS_CHOICES if s is not None and s >= 4 * steps]
    return larger[0] if larger else max(s for s in IG_STEPS_CHOICES if s is not None)


def _app_note(note: str, steps: int | None) -> str:
    """A note of :mod:`leuk.explain` reworded for the apps: the completeness gap points at the IG steps setting."""
    if "completeness gap" in note and "raise n_steps" in note and steps is not None:
        gap = note.split(":", 1)[0]
        if steps >= max(s for s in IG_STEPS_CHOICES if s is not None):
            return f"{gap}: already at the most IG steps offered ({steps}); read the map's fine detail with care"
        return (f"{gap}: the integral is coarse at {steps} IG steps; choose {_more_steps(steps)} under "
                "'Integrated Gradients steps' and explain again for a more exact map")
    return note


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
    #: the file the map is about (an upload's or a sample's name), ``""`` when unknown
    image_name: str = ""
    #: Integrated Gradients steps used (``None``: the method has none)
    ig_steps: int | None = None
    #: lines that say what the picture shows or hides (an empty Grad-CAM, masked background), shown in full
    caveats: list[str] | None = None

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
        steps = f", {self.ig_steps} steps" if self.ig_steps else ""
        about = f" of `{self.image_name}`" if self.image_name else ""
        lines += [f"**{METHOD_TITLES.get(self.method, self.method)}**{about}{baseline}{steps} for class "
                  f"**{self.target_label}** (probability {self.probability:.3f}), {self.seconds:.1f} s."]
        lines += list(self.caveats or [])
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
    ig_steps: int | None = None,
    image_name: str | None = None,
    registry: ModelRegistry | None = None,
) -> ExplainResult:
    """Attribution map of ``method`` for ``target`` (a class name or index; default: the predicted class).

    ``baseline``: the reference image of Integrated Gradients and Occlusion, one of :data:`EXPLAIN_BASELINES`
    (default ``black``, as ``leuk explain --baseline``); other methods have none and ignore it.
    ``ig_steps``: Integrated Gradients steps (``None``: 16 on CPU, 50 on a GPU; :data:`IG_STEPS_CHOICES`).
    ``image_name``: the file's name for the result text (default: the name of a path ``image``).
    A Grad-CAM that is empty says so and names the method that shows the call; on a cell segmented onto black,
    Grad-CAM's heat on the background is masked out of the overlay, and the result says how much was masked.
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
    if method in IG_STEPS_METHODS and ig_steps:
        if int(ig_steps) < 1:
            raise ExplainError(f"Integrated Gradients steps must be at least 1, got {ig_steps}")
        options["n_steps"] = int(ig_steps)
    steps = int(options.get("n_steps", 50)) if method in IG_STEPS_METHODS else None
    if uses_baseline:
        options["baseline"] = baseline
    start = time.perf_counter()
    explanation = explain(loaded.model, pixel_values, method, target=target,
                          faithfulness_steps=FAITHFULNESS_STEPS, **options)
    seconds = time.perf_counter() - start
    model_view = display_image(pixel_values, loaded.processor)
    attribution, caveats = _checked_map(explanation, model_view)
    # the model saw the image squashed to a square: show it (and its map) at the upload's own aspect ratio
    seen = _enlarged(restore_aspect(model_view, picture.size))
    overlay = render_overlay(seen, attribution, sign="positive")
    faith = explanation.faithfulness
    if image_name is None and isinstance(image, (str, os.PathLike)):
        image_name = Path(image).name
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
        notes=[_app_note(note, steps) for note in explanation.notes],
        verdict=verdict,
        threshold=classified.threshold,
        curves=faith,
        baseline=baseline if uses_baseline else None,
        image_name=image_name or "",
        ig_steps=steps,
        caveats=caveats,
    )


def _checked_map(explanation: Any, model_view: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """The map to draw and what the result must say about it (Grad-CAM only): an empty map (every region of
    the feature map lowers the class score, so ReLU leaves nothing), or heat on the black background of a cell
    segmented onto black, which is masked out of the drawing (the faithfulness numbers use the whole map)."""
    attribution = np.asarray(explanation.attribution, dtype=np.float32)
    if explanation.method not in GRADCAM_METHODS:
        return attribution, []
    label = explanation.label if explanation.label is not None else explanation.target
    title = METHOD_TITLES.get(explanation.method, explanation.method)
    positive = np.clip(attribution, 0, None)
    total = float(positive.sum())
    if not np.isfinite(total) or total <= 1e-12 * max(1, positive.size):
        return attribution, [
            f"**The {title} map is empty for this image:** every region of the last feature map lowers the score "
            f"of **{label}** (Grad-CAM keeps only the regions that raise it), so there is no heat to draw. "
            "**Integrated Gradients** (or Occlusion) shows which pixels drove the call: choose it under Method."]
    view = np.asarray(model_view)
    if view.ndim != 3 or view.shape[:2] != attribution.shape:
        return attribution, []
    background = view.max(axis=2) <= BLACK_LEVEL
    if background.mean() < MIN_BLACK_SHARE or background.all():
        return attribution, []
    share = float(positive[background].sum()) / total
    masked = np.where(background, 0.0, attribution).astype(np.float32)
    return masked, [
        f"_Background masked:_ {share:.0%} of this {title} map's heat fell on the black background around the "
        "cell (Grad-CAM's coarse feature map spills over the cell's edge); the overlay shows only the heat on the "
        "cell. The faithfulness numbers use the whole map."]
