"""One image's attribution map, drawn on the image the model saw, with its faithfulness numbers."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from leuk.io import ImageSource, read_image
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
#: Shorter side, in pixels, of the overlay shown to the user (maps are upsampled bilinearly to it).
DISPLAY_SIZE = 320


def explain_method_choices() -> list[tuple[str, str]]:
    """``(title, method)`` pairs for a dropdown."""
    return [(METHOD_TITLES[name], name) for name in EXPLAIN_METHODS]


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

    @property
    def faithfulness(self) -> float | None:
        """Insertion AUC minus deletion AUC: higher means the map points at what the model uses."""
        if self.deletion_auc is None or self.insertion_auc is None:
            return None
        return self.insertion_auc - self.deletion_auc

    @property
    def summary_markdown(self) -> str:
        """The image's verdict, then target, probability, faithfulness and timing in a few Markdown lines."""
        lines = [] if self.verdict is None else [self.verdict.markdown()]
        lines += [f"**{METHOD_TITLES.get(self.method, self.method)}** for class **{self.target_label}** "
                 f"(probability {self.probability:.3f}), {self.seconds:.1f} s."]
        if self.faithfulness is not None:
            lines.append(
                f"Faithfulness **{self.faithfulness:+.3f}** = insertion AUC {self.insertion_auc:.3f} "
                f"(higher is better) minus deletion AUC {self.deletion_auc:.3f} (lower is better): "
                "the probability of the class as the most-attributed pixels are put back / taken away."
            )
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
    registry: ModelRegistry | None = None,
) -> ExplainResult:
    """Attribution map of ``method`` for ``target`` (a class name or index; default: the predicted class).

    Raises :class:`leuk.errors.ImageReadError` for an unreadable image and :class:`leuk.explain.ExplainError`
    for an unknown method or target.
    """
    from leuk.explain import canonical_method, display_image, explain, render_overlay, restore_aspect

    registry = registry or get_registry()
    name = registry.check_name(model_name)
    method = canonical_method(method)
    if isinstance(target, str) and target.strip().lower() in ("", "predicted"):
        target = None
    picture = read_image(image, max_pixels=MAX_APP_PIXELS)
    loaded = registry.get(name)
    pixel_values = loaded.processor(images=picture, return_tensors="pt")["pixel_values"]
    verdict = classify_images([picture], name, registry=registry).verdict
    options = CPU_OPTIONS.get(method, {}) if registry.device == "cpu" else {}
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
    )
