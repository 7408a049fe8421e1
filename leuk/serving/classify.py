"""Classify one patient's images: per-image rows, a patient-level aggregate and uncertainty flags."""

from __future__ import annotations

import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from leuk.errors import ImageReadError
from leuk.io import ImageSource, read_image
from leuk.serving.ood import OOD_THRESHOLD, ReferenceStatistics, reference_for_model
from leuk.serving.registry import ModelRegistry, get_registry
from leuk.serving.runtime import gpu
from leuk.serving.samples import samples_for_labels

if TYPE_CHECKING:
    import pandas as pd

#: An image whose top class probability is below this is flagged "uncertain".
UNCERTAIN_BELOW = 0.7
#: Largest image an app accepts, in pixels (4096 x 4096); larger uploads are refused with a clear message.
MAX_APP_PIXELS = 4096 * 4096
#: Most images one request may classify.
MAX_IMAGES = 64


@dataclass
class ImageResult:
    """One image's outcome: prediction, confidence, out-of-distribution score and flag, or its error."""

    name: str
    label: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    top_probability: float | None = None
    ood_score: float | None = None
    uncertain: bool = False
    reasons: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class PatientAggregate:
    """The patient-level reading of all readable images: mean probabilities and the majority vote."""

    n_images: int
    mean_probabilities: dict[str, float]
    label: str
    majority_label: str
    votes: dict[str, int]
    uncertain: bool
    reasons: list[str]


@dataclass
class ClassifyResult:
    """Everything a view shows for one classification request."""

    model_name: str
    labels: list[str]
    images: list[ImageResult]
    aggregate: PatientAggregate | None
    is_demo: bool
    ood_reference: str | None

    def table(self) -> "pd.DataFrame":
        """One row per image: file, label, top probability, each class probability, OOD score, flag, error."""
        import pandas as pd

        rows = []
        for item in self.images:
            row: dict[str, Any] = {"image": item.name, "label": item.label or "",
                                   "top probability": _round(item.top_probability)}
            row.update({f"p({name})": _round(item.probabilities.get(name)) for name in self.labels})
            row["OOD score"] = _round(item.ood_score, 2)
            row["uncertain"] = "; ".join(item.reasons) if item.uncertain else ""
            row["error"] = item.error or ""
            rows.append(row)
        return pd.DataFrame(rows)

    def aggregate_table(self) -> "pd.DataFrame":
        """The patient-level aggregate as a two-column table (empty when no image could be read)."""
        import pandas as pd

        agg = self.aggregate
        if agg is None:
            return pd.DataFrame(columns=["patient-level", "value"])
        rows = [("images classified", str(agg.n_images)),
                ("label (mean probabilities)", agg.label),
                ("majority label", f"{agg.majority_label} ({agg.votes.get(agg.majority_label, 0)}/{agg.n_images})")]
        rows += [(f"mean p({name})", f"{agg.mean_probabilities[name]:.3f}") for name in self.labels]
        rows.append(("uncertain", "; ".join(agg.reasons) if agg.uncertain else "no"))
        return pd.DataFrame(rows, columns=["patient-level", "value"])

    @property
    def flag_markdown(self) -> str:
        """A short Markdown verdict: uncertain (and why) or confident, for the patient and for each image."""
        flagged = [item for item in self.images if item.uncertain]
        failed = [item for item in self.images if item.error is not None]
        lines = []
        if self.aggregate is None:
            lines.append("**No image could be classified.**")
        elif self.aggregate.uncertain:
            lines.append(f"⚠ **Uncertain**: {'; '.join(self.aggregate.reasons)}.")
        else:
            lines.append(f"**Confident**: top probability at least {UNCERTAIN_BELOW:.2f} and images like the "
                         "training data.")
        lines += [f"⚠ `{item.name}`: {'; '.join(item.reasons)}" for item in flagged[:8]]
        lines += [f"✖ {item.error}" for item in failed[:8]]
        if len(flagged) + len(failed) > 16:
            lines.append("… see the per-image table.")
        return "\n\n".join(lines)

    def label_output(self) -> dict[str, float]:
        """``{label: probability}`` for a label widget: the one image's, or the patient-level mean."""
        if self.aggregate is None:
            return {}
        readable = [item for item in self.images if item.error is None]
        return dict(readable[0].probabilities) if len(readable) == 1 else dict(self.aggregate.mean_probabilities)


def _round(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def _display_name(src: Any, index: int) -> str:
    if isinstance(src, (str, os.PathLike)):
        return Path(src).name
    return f"image {index + 1}"


_PREDICTORS: dict[tuple[int, str], Any] = {}
_REFERENCES: dict[str, ReferenceStatistics | None] = {}
_CACHE_LOCK = threading.Lock()


def _predictor(registry: ModelRegistry, name: str) -> Any:
    from leuk.inference import Predictor

    loaded = registry.get(name)
    key = (id(loaded.model), registry.device)
    with _CACHE_LOCK:
        if key not in _PREDICTORS:
            _PREDICTORS[key] = Predictor(loaded.model, loaded.processor, device=registry.device, batch_size=16)
        return _PREDICTORS[key]


def ood_reference(registry: ModelRegistry, name: str) -> ReferenceStatistics | None:
    """Reference image statistics for model ``name`` (see :mod:`leuk.serving.ood`), computed once."""
    loaded = registry.get(name)
    with _CACHE_LOCK:
        if name not in _REFERENCES:
            _REFERENCES[name] = reference_for_model(loaded.path, samples_for_labels(loaded.labels))
        return _REFERENCES[name]


def aggregate(results: Sequence[ImageResult], labels: Sequence[str],
              threshold: float = UNCERTAIN_BELOW) -> PatientAggregate | None:
    """Patient-level reading: mean of the class probabilities and majority vote over readable images.

    Flagged uncertain when the mean's top probability is below ``threshold``, when the vote and the mean
    disagree, or (with several images) when at least half of them are flagged themselves. Ties in the vote go to the class
    with the higher mean probability.
    """
    readable = [item for item in results if item.error is None and item.probabilities]
    if not readable:
        return None
    mean = {name: sum(item.probabilities[name] for item in readable) / len(readable) for name in labels}
    label = max(labels, key=lambda name: mean[name])
    votes = Counter(item.label for item in readable)
    majority = max(labels, key=lambda name: (votes.get(name, 0), mean[name]))
    reasons = []
    if mean[label] < threshold:
        reasons.append(f"mean top probability {mean[label]:.2f} < {threshold:.2f}")
    if majority != label:
        reasons.append(f"majority vote ({majority}) differs from mean probabilities ({label})")
    flagged = sum(item.uncertain for item in readable)
    if len(readable) > 1 and flagged * 2 >= len(readable):
        reasons.append(f"{flagged} of {len(readable)} images uncertain")
    return PatientAggregate(
        n_images=len(readable), mean_probabilities=mean, label=label, majority_label=majority,
        votes={name: votes.get(name, 0) for name in labels}, uncertain=bool(reasons), reasons=reasons,
    )


@gpu()
def classify(
    images: Sequence[ImageSource],
    model_name: str | None = None,
    *,
    names: Sequence[str] | None = None,
    threshold: float = UNCERTAIN_BELOW,
    ood_threshold: float = OOD_THRESHOLD,
    registry: ModelRegistry | None = None,
) -> ClassifyResult:
    """Classify the images of one patient with the configured model ``model_name`` (default: the first).

    Unreadable inputs get an ``error`` row and never stop the others. An image is "uncertain" when its top
    probability is below ``threshold`` or its out-of-distribution score exceeds ``ood_threshold``.
    Raises :class:`ImageReadError` when no input is given, more than :data:`MAX_IMAGES` are, or none is readable.
    """
    registry = registry or get_registry()
    name = registry.check_name(model_name)
    images = list(images)
    if not images:
        raise ImageReadError("no image given: upload at least one image")
    if len(images) > MAX_IMAGES:
        raise ImageReadError(f"{len(images)} images in one request; the limit is {MAX_IMAGES}")
    names = list(names) if names is not None else [_display_name(src, i) for i, src in enumerate(images)]
    loaded = registry.get(name)
    labels = loaded.labels
    reference = ood_reference(registry, name)

    results: list[ImageResult] = []
    decoded = []
    for src, display in zip(images, names):
        try:
            decoded.append((len(results), read_image(src, max_pixels=MAX_APP_PIXELS)))
            results.append(ImageResult(name=display))
        except ImageReadError as err:
            results.append(ImageResult(name=display, error=str(err)))

    if decoded:
        predictions = _predictor(registry, name).predict_images(
            [image for _, image in decoded], names=[results[i].name for i, _ in decoded]
        )
        for (index, image), prediction in zip(decoded, predictions):
            item = results[index]
            if prediction.error is not None:
                item.error = prediction.error
                continue
            item.label = prediction.label
            item.probabilities = dict(prediction.probabilities)
            item.top_probability = prediction.top_probability
            if item.top_probability is not None and item.top_probability < threshold:
                item.reasons.append(f"top probability {item.top_probability:.2f} < {threshold:.2f}")
            if reference is not None:
                item.ood_score = reference.score(image)
                if item.ood_score > ood_threshold:
                    item.reasons.append(f"unlike the training images (OOD score {item.ood_score:.1f} > {ood_threshold:g})")
            item.uncertain = bool(item.reasons)

    failures = [item.error for item in results if item.error is not None]
    if len(failures) == len(results):
        more = f" (and {len(failures) - 1} more unreadable)" if len(failures) > 1 else ""
        raise ImageReadError(f"{failures[0]}{more}")
    return ClassifyResult(
        model_name=name,
        labels=list(labels),
        images=results,
        aggregate=aggregate(results, labels, threshold),
        is_demo=loaded.is_demo,
        ood_reference=None if reference is None else f"{reference.source} ({reference.n_images} images)",
    )
