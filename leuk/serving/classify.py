"""Classify one patient's images: per-image rows, a patient-level aggregate and the uncertainty verdict.

The verdict (confident / uncertain, with the reasons) is :mod:`leuk.verdict`'s, per image and per patient; the
out-of-distribution check is the model's stored detector (:mod:`leuk.ood`), run by the prediction engine.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from leuk.errors import ImageReadError
from leuk.io import ImageSource, read_image
from leuk.serving.registry import ModelRegistry, get_registry
from leuk.serving.runtime import gpu
from leuk.verdict import UNCERTAIN_BELOW, Verdict, image_verdict, patient_verdict

if TYPE_CHECKING:
    import pandas as pd

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
    ood_threshold: float | None = None
    uncertain: bool = False
    reasons: list[str] = field(default_factory=list)
    error: str | None = None
    #: what was not checked (no out-of-distribution detector), shown with a confident verdict
    note: str | None = None

    @property
    def verdict(self) -> Verdict:
        """This image's :class:`leuk.verdict.Verdict`."""
        if self.error is not None and not self.reasons:
            return image_verdict(None, None, self.error)
        return Verdict.from_reasons(self.reasons, note=self.note)


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
    note: str | None = None

    @property
    def verdict(self) -> Verdict:
        """The patient's :class:`leuk.verdict.Verdict`."""
        return Verdict.from_reasons(self.reasons, note=self.note)


@dataclass
class ClassifyResult:
    """Everything a view shows for one classification request."""

    model_name: str
    labels: list[str]
    images: list[ImageResult]
    aggregate: PatientAggregate | None
    is_demo: bool
    #: how the out-of-distribution check was fitted (one line), ``None`` without a detector
    ood_reference: str | None
    #: why there is no out-of-distribution check, ``None`` with one
    ood_note: str | None = None

    def table(self) -> "pd.DataFrame":
        """One row per image: file, label, top probability, each class probability, OOD score, verdict, its
        reasons, error."""
        import pandas as pd

        rows = []
        for item in self.images:
            row: dict[str, Any] = {"image": item.name, "label": item.label or "",
                                   "top probability": _round(item.top_probability)}
            row.update({f"p({name})": _round(item.probabilities.get(name)) for name in self.labels})
            row["OOD score"] = _round(item.ood_score, 2)
            row["verdict"] = item.verdict.word
            row["reasons"] = "; ".join(item.reasons) if item.uncertain else ""
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
    def verdict(self) -> Verdict | None:
        """The headline verdict: the one image's own when a single image was read, else the patient's."""
        if self.aggregate is None:
            return None
        readable = [item for item in self.images if item.error is None]
        if len(self.images) == 1 and len(readable) == 1:
            return readable[0].verdict
        return self.aggregate.verdict

    @property
    def flag_markdown(self) -> str:
        """A short Markdown verdict (:meth:`leuk.verdict.Verdict.markdown`): uncertain (and why) or confident,
        for the patient, then each flagged image."""
        flagged = [item for item in self.images if item.uncertain and item.error is None]
        failed = [item for item in self.images if item.error is not None]
        verdict = self.verdict
        lines = []
        if verdict is None:
            lines.append("**No image could be classified.**")
        else:
            lines.append(verdict.markdown())
        if len(self.images) > 1:
            lines += [f"⚠ `{item.name}`: {'; '.join(item.reasons)}" for item in flagged[:8]]
            lines += [f"✖ {item.error}" for item in failed[:8]]
            if len(flagged) + len(failed) > 16:
                lines.append("… see the per-image table.")
        if verdict is not None and self.ood_reference:
            lines.append(f"_Out-of-distribution check: {self.ood_reference}._")
        elif verdict is not None and verdict.uncertain and self.ood_note:
            lines.append(f"_Note: {self.ood_note}._")
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
_CACHE_LOCK = threading.Lock()


def _predictor(registry: ModelRegistry, name: str) -> Any:
    from leuk.inference import Predictor

    loaded = registry.get(name)
    key = (id(loaded.model), registry.device)
    with _CACHE_LOCK:
        if key not in _PREDICTORS:
            _PREDICTORS[key] = Predictor.from_loaded(loaded, device=registry.device, batch_size=16)
        return _PREDICTORS[key]


def aggregate(results: Sequence[ImageResult], labels: Sequence[str],
              threshold: float = UNCERTAIN_BELOW) -> PatientAggregate | None:
    """Patient-level reading: mean of the class probabilities and majority vote over readable images, and the
    patient's verdict (:func:`leuk.verdict.patient_verdict`): uncertain when any image is out of distribution or
    unreadable, when the mean's top probability is below ``threshold``, when the vote and the mean disagree, or
    when at least half of the images have a low probability. Ties in the vote go to the class with the higher
    mean probability. ``None`` when no image could be read.
    """
    readable = [item for item in results if item.error is None and item.probabilities]
    if not readable:
        return None
    mean = {name: sum(item.probabilities[name] for item in readable) / len(readable) for name in labels}
    label = max(labels, key=lambda name: mean[name])
    votes = Counter(item.label for item in readable)
    majority = max(labels, key=lambda name: (votes.get(name, 0), mean[name]))
    verdicts = []
    for item in results:
        verdict = item.verdict
        if item.error is None and item.uncertain and not verdict.reasons:  # flagged by hand, no reason given
            verdict = Verdict(True, (f"low calibrated probability: {item.name}",))
        verdicts.append(verdict)
    verdict = patient_verdict(verdicts, mean[label], label=label, majority_label=majority, threshold=threshold)
    return PatientAggregate(
        n_images=len(readable), mean_probabilities=mean, label=label, majority_label=majority,
        votes={name: votes.get(name, 0) for name in labels}, uncertain=verdict.uncertain,
        reasons=list(verdict.reasons), note=verdict.note,
    )


def classify_images(
    images: Sequence[ImageSource],
    model_name: str | None = None,
    *,
    names: Sequence[str] | None = None,
    threshold: float | None = None,
    registry: ModelRegistry | None = None,
) -> ClassifyResult:
    """Classify the images of one patient with the configured model ``model_name`` (default: the first).

    Unreadable inputs get an ``error`` row and never stop the others. Each image gets the verdict of
    :func:`leuk.verdict.image_verdict`: "uncertain" when it is out of distribution (the model's stored detector),
    or when its top probability is below ``threshold`` (``None``: the model's own, :attr:`LoadedModel.uncertain_below`).
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
    detector = loaded.ood_detector
    threshold = loaded.uncertain_below if threshold is None else float(threshold)

    results: list[ImageResult] = []
    decoded = []
    for src, display in zip(images, names):
        try:
            decoded.append((len(results), read_image(src, max_pixels=MAX_APP_PIXELS, name=display)))
            results.append(ImageResult(name=display))
        except ImageReadError as err:
            results.append(ImageResult(name=display, error=str(err)))

    if decoded:
        predictor = _predictor(registry, name)
        predictions = predictor.predict_images(
            [image for _, image in decoded], names=[results[i].name for i, _ in decoded]
        )
        for (index, _), prediction in zip(decoded, predictions):
            item = results[index]
            if prediction.error is not None:
                item.error = prediction.error
                continue
            item.label = prediction.label
            item.probabilities = dict(prediction.probabilities)
            item.top_probability = prediction.top_probability
            item.ood_score, item.ood_threshold = prediction.ood_score, prediction.ood_threshold
            verdict = image_verdict(item.top_probability, _ood_result(prediction), None, threshold=threshold,
                                    ood_note=loaded.ood_note)
            item.uncertain, item.reasons, item.note = verdict.uncertain, list(verdict.reasons), verdict.note
    for item in results:
        if item.error is not None:
            verdict = image_verdict(None, None, item.error)
            item.uncertain, item.reasons = verdict.uncertain, list(verdict.reasons)

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
        ood_reference=None if detector is None else detector.description,
        ood_note=loaded.ood_note,
    )


#: :func:`classify_images` as the apps call it (on ZeroGPU: inside a GPU allocation). The other serving
#: functions that need a verdict call :func:`classify_images` from within their own allocation.
classify = gpu()(classify_images)


def _ood_result(prediction: Any) -> Any:
    """The :class:`leuk.ood.OODResult` a prediction carries (``None`` when no detector ran)."""
    from leuk.ood import OODResult

    if prediction.ood_score is None:
        return None
    return OODResult(score=prediction.ood_score, threshold=prediction.ood_threshold,
                     stats_score=prediction.ood_stats_score, stats_threshold=prediction.ood_stats_threshold)
