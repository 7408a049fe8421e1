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
from leuk.serving.assessment import (
    NOT_ASSESSED,
    NOT_ASSESSED_OOD,
    UNLIKE_TRAINING,
    is_assessed,
    left_out_text,
    not_assessed_markdown,
    not_assessed_text,
)
from leuk.serving.registry import ModelRegistry, get_registry
from leuk.serving.rows import APP_TABLE, PredictionRow
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

    @property
    def assessed(self) -> bool:
        """Whether its label is an answer (:func:`leuk.serving.assessment.is_assessed`): read, classified and
        not out of distribution."""
        return self.error is None and bool(self.probabilities) and is_assessed(self.verdict)

    @property
    def shown_label(self) -> str:
        """What a surface shows as this image's class: the label, or :data:`NOT_ASSESSED`."""
        return (self.label or "") if self.assessed else NOT_ASSESSED


@dataclass
class PatientAggregate:
    """The patient-level reading of the assessed images (read and not out of distribution): mean probabilities
    and the majority vote. ``n_left_out`` readable images were left out as not assessed; when every readable
    image was, ``label`` and ``majority_label`` are ``None`` and ``mean_probabilities`` is empty."""

    n_images: int
    mean_probabilities: dict[str, float]
    label: str | None
    majority_label: str | None
    votes: dict[str, int]
    uncertain: bool
    reasons: list[str]
    note: str | None = None
    n_left_out: int = 0

    @property
    def assessed(self) -> bool:
        """Whether the patient has a label (at least one assessed image)."""
        return self.label is not None

    @property
    def left_out_text(self) -> str:
        """What the label rests on and how many images it left out (one line)."""
        return left_out_text(self.n_left_out, self.n_images)

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
    #: the verdict threshold in force (the model's own, :attr:`leuk.hub.LoadedModel.uncertain_below`)
    threshold: float = UNCERTAIN_BELOW

    def table(self) -> "pd.DataFrame":
        """One row per image, as the apps show it: file, label, top probability, each class probability, OOD
        score, verdict, its reasons, error. An image that is not assessed shows :data:`NOT_ASSESSED` as its
        label and no probability (they are in :meth:`probability_details`)."""
        import pandas as pd

        rows = [APP_TABLE.render(PredictionRow.of(item, item.name), self.labels) for item in self.images]
        return pd.DataFrame(rows)

    def aggregate_table(self) -> "pd.DataFrame":
        """The patient-level aggregate as a two-column table (empty when no image could be read)."""
        import pandas as pd

        agg = self.aggregate
        if agg is None:
            return pd.DataFrame(columns=["patient-level", "value"])
        rows = [("images assessed", str(agg.n_images)),
                ("images left out (not assessed)", str(agg.n_left_out))]
        if agg.assessed:
            rows += [("label (mean probabilities)", agg.label),
                     ("majority label",
                      f"{agg.majority_label} ({agg.votes.get(agg.majority_label, 0)}/{agg.n_images})")]
            rows += [(f"mean p({name})", f"{agg.mean_probabilities[name]:.3f}") for name in self.labels]
        else:
            rows.append(("label (mean probabilities)", NOT_ASSESSED))
        rows.append(("uncertain", "; ".join(agg.reasons) if agg.uncertain else "no"))
        return pd.DataFrame(rows, columns=["patient-level", "value"])

    @property
    def verdict(self) -> Verdict | None:
        """The headline verdict: the one image's own when a single image was read, else the patient's."""
        if self.aggregate is None:
            return None
        return self.single.verdict if self.single is not None else self.aggregate.verdict

    @property
    def single(self) -> ImageResult | None:
        """The one image, when one image was sent and read (its own reading is the headline), else ``None``."""
        readable = [item for item in self.images if item.error is None]
        return readable[0] if len(self.images) == 1 and len(readable) == 1 else None

    @property
    def assessed(self) -> bool:
        """Whether the headline is an answer: the one image is assessed, or the patient has a label."""
        if self.aggregate is None:
            return False
        return self.single.assessed if self.single is not None else self.aggregate.assessed

    @property
    def headline(self) -> str | None:
        """The answer: the one image's class or the patient's label, or why there is none
        (:data:`leuk.serving.assessment.NOT_ASSESSED_OOD`); ``None`` when no image could be read."""
        if self.aggregate is None:
            return None
        if self.single is not None:
            return self.single.label if self.single.assessed else not_assessed_text(self.single.verdict)
        return self.aggregate.label if self.aggregate.assessed else NOT_ASSESSED_OOD

    #: Title of the collapsed detail holding the probabilities of the images that are not assessed.
    DETAILS_TITLE = f"Probabilities of the images not assessed (no answer: {UNLIKE_TRAINING})"

    def not_assessed_lines(self) -> list[str]:
        """One Markdown line per image read but not assessed: its name and every class probability (what a
        collapsed detail shows; never the answer)."""
        return [f"`{item.name}`: " + ", ".join(f"{name} {item.probabilities[name]:.4f}" for name in self.labels)
                for item in self.images if item.error is None and item.probabilities and not item.assessed]

    def probability_details(self) -> str:
        """:meth:`not_assessed_lines` as a collapsed HTML ``<details>`` block (empty when there is none)."""
        lines = self.not_assessed_lines()
        if not lines:
            return ""
        return (f"<details><summary>{self.DETAILS_TITLE}</summary>\n\n" + "\n\n".join(lines)
                + "\n\n</details>")

    @property
    def flag_markdown(self) -> str:
        """A short Markdown verdict (:meth:`leuk.verdict.Verdict.markdown`): uncertain (and why) or confident,
        for the patient, then each flagged image. An image or patient that is not assessed leads with
        **Not assessed** (no class, no probability; :meth:`probability_details` has them)."""
        flagged = [item for item in self.images if item.uncertain and item.error is None]
        failed = [item for item in self.images if item.error is not None]
        verdict = self.verdict
        lines = []
        if verdict is None:
            lines.append("**No image could be classified.**")
        elif not self.assessed:
            lines.append(not_assessed_markdown(self.headline, verdict.reasons))
        else:  # assessed, though a patient may still hold images that were not (its verdict counts them)
            lines.append(verdict.markdown(self.threshold))
        if self.single is None and self.aggregate is not None and self.aggregate.n_left_out:
            lines.append(self.aggregate.left_out_text)
        if len(self.images) > 1:
            lines += [f"⚠ `{item.name}`: {'; '.join(item.reasons)}" for item in flagged[:8]]
            lines += [f"✖ {item.error}" for item in failed[:8]]
            if len(flagged) + len(failed) > 16:
                lines.append("… see the per-image table.")
        # what the out-of-distribution check is (Mahalanobis, its fit, its threshold rule) is said once, in the
        # apps' help (leuk.verdict.HELP_MARKDOWN) and the model card, not under every verdict
        if verdict is not None and verdict.uncertain and not self.ood_reference and self.ood_note:
            lines.append(f"_Note: {self.ood_note}._")
        return "\n\n".join(lines)

    #: How many file names :attr:`files_markdown` lists before it says how many more there are.
    FILES_SHOWN = 8

    @property
    def files_markdown(self) -> str:
        """Which files this result is about, e.g. ``Classified by `m`: `a.png`, `b.png`.`` (one line)."""
        names = [f"`{item.name}`" for item in self.images]
        more = len(names) - self.FILES_SHOWN
        listed = ", ".join(names[:self.FILES_SHOWN]) + (f" and {more} more" if more > 0 else "")
        noun = "image" if len(names) == 1 else f"{len(names)} images"
        return f"**Classified {noun}** by `{self.model_name}`: {listed}."

    def label_output(self) -> dict[str, float] | str:
        """``{label: probability}`` for a label widget: the one image's, or the patient-level mean of the assessed
        images; :data:`NOT_ASSESSED` (no class, no probability) when the headline is not an answer."""
        if self.aggregate is None:
            return {}
        if not self.assessed:
            return NOT_ASSESSED
        single = self.single
        return dict(single.probabilities) if single is not None else dict(self.aggregate.mean_probabilities)


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
    """Patient-level reading: mean of the class probabilities and majority vote over the **assessed** images
    (read and not out of distribution: the others are left out and counted in ``n_left_out``), and the
    patient's verdict (:func:`leuk.verdict.patient_verdict`): uncertain when any image is out of distribution or
    unreadable, when the mean's top probability is below ``threshold``, when the vote and the mean disagree, or
    when at least half of the images have a low probability. Ties in the vote go to the class with the higher
    mean probability. ``None`` when no image could be read; no label when none is assessed.
    """
    readable = [item for item in results if item.error is None and item.probabilities]
    if not readable:
        return None
    assessed = [item for item in readable if item.assessed]
    mean = {name: sum(item.probabilities[name] for item in assessed) / len(assessed) for name in labels} \
        if assessed else {}
    label = max(labels, key=lambda name: mean[name]) if assessed else None
    votes = Counter(item.label for item in assessed)
    majority = max(labels, key=lambda name: (votes.get(name, 0), mean[name])) if assessed else None
    verdicts = []
    for item in results:
        verdict = item.verdict
        if item.error is None and item.uncertain and not verdict.reasons:  # flagged by hand, no reason given
            verdict = Verdict(True, (f"low calibrated probability: {item.name}",))
        verdicts.append(verdict)
    verdict = patient_verdict(verdicts, mean[label] if assessed else None, label=label, majority_label=majority,
                              threshold=threshold)
    return PatientAggregate(
        n_images=len(assessed), mean_probabilities=mean, label=label, majority_label=majority,
        votes={name: votes.get(name, 0) for name in labels}, uncertain=verdict.uncertain,
        reasons=list(verdict.reasons), note=verdict.note, n_left_out=len(readable) - len(assessed),
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

    # each upload is decoded once, here (the apps' pixel limit, errors named by the display name); the prediction
    # engine classifies the decoded images and decides every verdict, with the threshold in force
    from leuk.inference import failed_prediction

    predictions: list[Any] = []
    decoded = []
    for src, display in zip(images, names):
        try:
            decoded.append((len(predictions), read_image(src, max_pixels=MAX_APP_PIXELS, name=display)))
            predictions.append(None)
        except ImageReadError as err:
            predictions.append(failed_prediction(display, str(err)))
    if decoded:
        classified = _predictor(registry, name).predict_images(
            [image for _, image in decoded], names=[names[i] for i, _ in decoded], uncertain_below=threshold)
        for (index, _), prediction in zip(decoded, classified):
            predictions[index] = prediction
    results = [_image_result(display, prediction) for display, prediction in zip(names, predictions)]

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
        threshold=threshold,
    )


#: :func:`classify_images` as the apps call it (on ZeroGPU: inside a GPU allocation). The other serving
#: functions that need a verdict call :func:`classify_images` from within their own allocation.
classify = gpu()(classify_images)


def _image_result(name: str, prediction: Any) -> ImageResult:
    """The view of one :class:`leuk.inference.Prediction` (its verdict as the prediction engine decided it)."""
    if prediction.error is not None:
        return ImageResult(name=name, error=prediction.error, uncertain=prediction.uncertain,
                           reasons=list(prediction.reasons))
    return ImageResult(name=name, label=prediction.label, probabilities=dict(prediction.probabilities),
                       top_probability=prediction.top_probability, ood_score=prediction.ood_score,
                       ood_threshold=prediction.ood_threshold, uncertain=prediction.uncertain,
                       reasons=list(prediction.reasons), note=prediction.note)
