"""Assessed or not: the one place that decides whether a prediction is an answer at all.

An image that is **out of distribution** (unlike the images the model was trained on) or **unreadable** is *not
assessed*: its class and probability are no answer, however high the probability (a C-NMC model calls almost any
foreign picture "hem 1.0000"). Every surface renders this decision the same way: the apps show
:data:`NOT_ASSESSED` instead of a class and a percentage (the probabilities only in a collapsed detail), ``leuk
predict`` prints it in the label column, a patient's label is read from its assessed images only and says how many
it left out (:func:`leuk.serving.aggregate`); CSV and JSON exports keep the numbers next to the verdict and an
``assessed`` flag.

A merely *uncertain* image (low calibrated probability) is still assessed: its class is shown, flagged uncertain.
"""

from __future__ import annotations

from leuk.verdict import Verdict

__all__ = ["NOT_ASSESSED", "NOT_ASSESSED_OOD", "NOT_ASSESSED_UNREADABLE", "UNLIKE_TRAINING", "is_assessed", "left_out_text",
           "not_assessed_markdown", "not_assessed_text", "verdict_headline"]

#: What a surface shows in place of the class of an image that is not assessed.
NOT_ASSESSED = "not assessed"
#: Why an out-of-distribution image is not assessed.
UNLIKE_TRAINING = "unlike the images this model was trained on"
#: ... as one phrase.
NOT_ASSESSED_OOD = f"{NOT_ASSESSED}: {UNLIKE_TRAINING}"
#: ... and why, for an image that could not be read.
NOT_ASSESSED_UNREADABLE = f"{NOT_ASSESSED}: the image could not be read"


def is_assessed(verdict: Verdict) -> bool:
    """Whether a prediction with this verdict is an answer: neither out of distribution nor unreadable."""
    return not (verdict.out_of_distribution or verdict.unreadable)


def not_assessed_text(verdict: Verdict) -> str | None:
    """Why a prediction is not assessed (:data:`NOT_ASSESSED_OOD` or :data:`NOT_ASSESSED_UNREADABLE`); ``None``
    when it is assessed."""
    if verdict.unreadable:
        return NOT_ASSESSED_UNREADABLE
    if verdict.out_of_distribution:
        return NOT_ASSESSED_OOD
    return None


def left_out_text(n_left_out: int, n_assessed: int, unit: str = "image") -> str:
    """One line for a patient reading: what its label rests on and how many images it left out."""
    plural = "" if n_assessed == 1 else "s"
    if n_assessed == 0:
        return (f"No {unit} assessed ({n_left_out} left out: {UNLIKE_TRAINING}), "
                f"so there is no patient label.")
    if not n_left_out:
        return f"Label from {n_assessed} assessed {unit}{plural}."
    return (f"Label from {n_assessed} assessed {unit}{plural}; {n_left_out} left out "
            f"({NOT_ASSESSED_OOD}).")


def not_assessed_markdown(why: str, reasons) -> str:
    """The headline of an image, patient or smear that is not assessed: ``why`` (one of the ``NOT_ASSESSED_*``
    phrases, or its reason alone) and the verdict's ``reasons``."""
    reason = why.split(": ", 1)[1] if why.startswith(f"{NOT_ASSESSED}: ") else why
    return f"⚠ **Not assessed**: {reason} ({'; '.join(reasons)})."


def verdict_headline(verdict: Verdict, threshold: float) -> str:
    """The verdict as the one Markdown headline every view shows: **Not assessed** (and why) for an image that
    is not assessed, else :meth:`leuk.verdict.Verdict.markdown` at the model's own ``threshold``."""
    why = not_assessed_text(verdict)
    return verdict.markdown(threshold) if why is None else not_assessed_markdown(why, verdict.reasons)
