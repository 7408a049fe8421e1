"""The one uncertainty verdict: ``confident`` or ``uncertain``, with the reasons, per image and per patient.

Every surface (the Gradio tabs, every Streamlit page, ``leuk predict``, ``leuk explain``) shows what these two
functions decide, in these words:

- :func:`image_verdict`: an image is **uncertain** when it could not be read, when it is out of distribution
  (its :class:`leuk.ood.OODResult` says so: unlike the model's training images), or when its calibrated top
  probability is below :data:`UNCERTAIN_BELOW`. An out-of-distribution image is never confident, however high
  its probability.
- :func:`patient_verdict`: a patient's reading is **uncertain** when any of its images is out of distribution or
  unreadable, when the mean's top probability is below the threshold, when the majority vote and the mean
  disagree, or when at least half of its images have a low probability.

Without a detector (a model folder with no ``ood_detector.json``) the out-of-distribution check is skipped and
the verdict says so in its note: "confident" then rests on the probability alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

__all__ = ["HELP_MARKDOWN", "UNCERTAIN_BELOW", "Verdict", "image_verdict", "patient_verdict", "rule_text",
           "selective_threshold",
           "selective_summary"]

#: An image (or a patient mean) whose calibrated top probability is below this is "uncertain", unless the model
#: folder's ``calibration.json`` sets its own threshold (:func:`selective_threshold`, fitted on predictions
#: for subjects its training never saw); :attr:`leuk.hub.LoadedModel.uncertain_below` is the one in force.
UNCERTAIN_BELOW = 0.7

#: What the verdict and its out-of-distribution score mean, for the apps' help and About pages.
HELP_MARKDOWN = f"""
**Confident or uncertain.** Every image (and every patient) gets one verdict. It is **uncertain** when the image
could not be read, when it is **out of distribution** (unlike the images the model was trained on), or when the
calibrated top probability is below the model's threshold ({UNCERTAIN_BELOW:.2f} unless the model sets its own: a model
with a `calibration.json` uses the lowest threshold at which at least 95% of its out-of-fold calls, each made by a
model that never saw that subject, were right; its card gives the figure); a patient is uncertain as soon as one of
its images is out of distribution or unreadable, when the mean probability is below the threshold, or when the
majority vote disagrees with the mean. An out-of-distribution image is never called confident, however high its probability.

**The out-of-distribution score** is the Mahalanobis distance of the image's pooled network features to the nearest
class mean of the model's **training images** (one covariance shared by the classes, Ledoit-Wolf shrinkage), plus a
cheap gate on ten colour and texture statistics of the image (largest z-score against the training images). Both
were fitted on the training images only, when the model was trained (or with `leuk ood fit`), and each threshold
is the 99% quantile of held-out validation images, so about 1 in 100 genuine cells is flagged too. The detector is
stored next to the weights (`ood_detector.json` says how it was fitted); a model without one says so and is
checked on its probability alone.

**What it cannot catch.** A cell that looks like the training cells but is wrong anyway (another disease, another
stain batch that happens to sit near a class mean), and anything a 10-number colour summary and the network's own
features cannot tell apart. A confident verdict is not a correct answer; this is not a medical device.
"""



def rule_text(threshold: float = UNCERTAIN_BELOW) -> str:
    """The verdict rule of :data:`HELP_MARKDOWN` in one line, at the ``threshold`` in force (what a results page
    says under its table; the help says it in full)."""
    return (f"Uncertain: unreadable, out of distribution (unlike the training images), or top probability below "
            f"{threshold:.2f} (this model's threshold); a patient with any such image is uncertain too.")


OOD_PREFIX = "out of distribution"
UNREADABLE_PREFIX = "unreadable"
LOW_PROBABILITY_PREFIX = "low calibrated probability"


@dataclass(frozen=True)
class Verdict:
    """``uncertain`` with its ``reasons`` (empty when confident); ``note`` says what was not checked."""

    uncertain: bool
    reasons: tuple[str, ...] = ()
    note: str | None = None
    out_of_distribution: bool = False
    unreadable: bool = False

    @classmethod
    def from_reasons(cls, reasons: Sequence[str], note: str | None = None) -> "Verdict":
        """The verdict whose reasons are ``reasons`` (as :func:`image_verdict` wrote them)."""
        reasons = tuple(reasons)
        return cls(bool(reasons), reasons, note=note,
                   out_of_distribution=any(r.startswith(OOD_PREFIX) for r in reasons),
                   unreadable=any(r.startswith(UNREADABLE_PREFIX) for r in reasons))

    @property
    def word(self) -> str:
        """``"uncertain"`` or ``"confident"``."""
        return "uncertain" if self.uncertain else "confident"

    @property
    def text(self) -> str:
        """One line: ``uncertain: reason; reason`` or ``confident`` (plus the note, if any)."""
        line = f"uncertain: {'; '.join(self.reasons)}" if self.uncertain else "confident"
        if not self.uncertain and self.note:
            line += f" ({self.note})"
        return line

    def markdown(self, threshold: float = UNCERTAIN_BELOW) -> str:
        """The verdict as a Markdown headline (what the apps show)."""
        if self.uncertain:
            return f"⚠ **Uncertain**: {'; '.join(self.reasons)}."
        text = (f"**Confident**: calibrated top probability at least {threshold:.2f}"
                + (" and within the training distribution (out-of-distribution check passed)."
                   if self.note is None else f". Note: {self.note}."))
        return text


def _below(value: float, threshold: float) -> str:
    """``"0.61 < 0.70"``, with a third decimal when two would print the value as the threshold."""
    digits = 2 if f"{value:.2f}" != f"{threshold:.2f}" else 3
    return f"{value:.{digits}f} < {threshold:.2f}"


def image_verdict(
    top_probability: float | None,
    ood: Any = None,
    error: str | None = None,
    *,
    threshold: float = UNCERTAIN_BELOW,
    ood_note: str | None = None,
) -> Verdict:
    """The verdict on one image.

    ``ood`` is its :class:`leuk.ood.OODResult` (``None`` when no detector ran: ``ood_note`` then says why);
    ``error`` the reason it could not be read or classified.
    """
    if error is not None:
        return Verdict(True, (f"{UNREADABLE_PREFIX}: {error}",), unreadable=True)
    reasons = []
    flagged = ood is not None and bool(ood.is_ood)
    if flagged:
        reasons.append(ood.reason)
    if top_probability is not None and top_probability < threshold:
        reasons.append(f"{LOW_PROBABILITY_PREFIX}: top {_below(top_probability, threshold)}")
    note = None if ood is not None else (ood_note or "not checked for out-of-distribution input")
    return Verdict(bool(reasons), tuple(reasons), note=note, out_of_distribution=flagged)


@dataclass
class _Counts:
    ood: int = 0
    unreadable: int = 0
    low: int = 0
    notes: list[str] = field(default_factory=list)


def patient_verdict(
    verdicts: Sequence[Verdict],
    mean_top_probability: float | None,
    *,
    label: str | None = None,
    majority_label: str | None = None,
    threshold: float = UNCERTAIN_BELOW,
) -> Verdict:
    """The verdict on one patient from the verdicts of all its images (readable or not) and the mean of the
    readable images' probabilities (its top value, the label it gives, and the majority vote)."""
    counts = _Counts()
    for verdict in verdicts:
        counts.ood += verdict.out_of_distribution
        counts.unreadable += verdict.unreadable
        counts.low += any(reason.startswith(LOW_PROBABILITY_PREFIX) for reason in verdict.reasons)
        if verdict.note and verdict.note not in counts.notes:
            counts.notes.append(verdict.note)
    n = len(verdicts)
    readable = n - counts.unreadable
    reasons = []
    if counts.ood:
        reasons.append(f"{OOD_PREFIX}: {counts.ood} of {n} image{'s' if n != 1 else ''} unlike the training images")
    if counts.unreadable:
        reasons.append(f"{UNREADABLE_PREFIX}: {counts.unreadable} of {n} image{'s' if n != 1 else ''}")
    if mean_top_probability is not None and mean_top_probability < threshold:
        reasons.append(f"{LOW_PROBABILITY_PREFIX}: mean top {_below(mean_top_probability, threshold)}")
    if label is not None and majority_label is not None and majority_label != label:
        reasons.append(f"majority vote ({majority_label}) differs from mean probabilities ({label})")
    if readable > 1 and counts.low * 2 >= readable:
        reasons.append(f"{counts.low} of {readable} images with {LOW_PROBABILITY_PREFIX}")
    return Verdict(bool(reasons), tuple(reasons), note="; ".join(counts.notes) or None,
                   out_of_distribution=bool(counts.ood), unreadable=bool(counts.unreadable))


def selective_threshold(top_probability: Sequence[float], correct: Sequence[bool], *,
                        target: float = 0.95, floor: float = 0.5) -> float | None:
    """The lowest threshold ``t >= floor`` such that the calls with top probability ``>= t`` are right at least
    ``target`` of the time (the most calls kept confident at that accuracy); ``None`` when no threshold
    reaches it. Candidates are the observed top probabilities. Fit it on predictions for subjects the model
    did not train on (out-of-fold), never on its training subjects' own predictions."""
    import numpy as np

    p = np.asarray(top_probability, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    if p.shape != ok.shape or p.ndim != 1:
        raise ValueError("top_probability and correct must be 1-D and of one length")
    order = np.argsort(-p, kind="stable")
    p, ok = p[order], ok[order]
    kept_right = np.cumsum(ok)
    # a threshold equal to p[i] keeps every call with p >= p[i]: the last index of each run of ties
    last_of_value = np.r_[p[1:] != p[:-1], True]
    kept = np.arange(1, len(p) + 1)
    accuracy = kept_right / kept
    admissible = last_of_value & (accuracy >= target) & (p >= floor)
    if not admissible.any():
        return None
    return float(p[np.flatnonzero(admissible)[-1]])


def selective_summary(top_probability: Sequence[float], correct: Sequence[bool], threshold: float | None) -> dict:
    """Share of calls confident at ``threshold`` (top probability ``>= threshold``) and their accuracy."""
    import numpy as np

    p = np.asarray(top_probability, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    confident = p >= threshold if threshold is not None else np.zeros(len(p), dtype=bool)
    n_confident = int(confident.sum())
    return {"n": int(len(p)), "n_confident": n_confident,
            "confident_share": float(n_confident / len(p)) if len(p) else None,
            "confident_accuracy": float(ok[confident].mean()) if n_confident else None,
            "uncertain_accuracy": float(ok[~confident].mean()) if n_confident < len(p) else None}
