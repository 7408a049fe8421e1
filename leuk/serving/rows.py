"""The one per-image prediction row: every table and file that lists predictions builds its rows here.

:class:`PredictionRow` is one image's prediction in one ordered column vocabulary (:data:`COLUMNS`; one
``p_<class>`` column per class, in logit order)::

    file, label, top_probability, p_<class>..., ood_score, assessed, uncertain, reasons, verdict, error

A surface that needs other headers, fewer columns, rounded numbers or a hidden class declares it once as a
:class:`RowView` (a mapping from schema columns to its headers) and renders rows through it:

- :data:`CLI_CSV` -- ``leuk predict --csv``; :func:`json_record` -- ``leuk predict --json`` (the engine's nested
  record, :meth:`leuk.inference.Prediction.to_dict`, with the row's ``assessed``);
- :data:`BATCH_CSV` -- :meth:`leuk.serving.batch.BatchResult.table` (the batch CSV);
- :data:`APP_TABLE` -- :meth:`leuk.serving.classify.ClassifyResult.table` (the apps' per-image table);
- :data:`SMEAR_CELL` -- the prediction columns of a cell row, :meth:`leuk.serving.cells.SmearResult.cell_rows`.

Whether a prediction is *assessed* is :func:`leuk.serving.assessment.is_assessed` of its verdict, for a read and
classified image (the one rule; an image that is not assessed keeps its numbers here, a view may hide them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from leuk.serving.assessment import NOT_ASSESSED, is_assessed
from leuk.verdict import Verdict

__all__ = ["APP_TABLE", "BATCH_CSV", "CLI_CSV", "COLUMNS", "PROBABILITY", "SMEAR_CELL", "PredictionRow", "RowView",
           "json_record"]

#: The per-class column of the schema: ``p_<class>``; in a view's header, ``{label}`` stands for the class.
PROBABILITY = "p_{label}"
#: The schema's columns in order, each with its value for a row without a prediction (a skipped smear cell).
COLUMNS: tuple[tuple[str, Any], ...] = (
    ("file", ""), ("label", ""), ("top_probability", None), (PROBABILITY, None), ("ood_score", None),
    ("assessed", None), ("uncertain", None), ("reasons", ""), ("verdict", ""), ("error", ""),
)
_BLANK = dict(COLUMNS)


class _Predicted(Protocol):
    """What a row is read from: :class:`leuk.inference.Prediction` or :class:`leuk.serving.ImageResult`."""

    label: str | None
    probabilities: dict[str, float]
    top_probability: float | None
    ood_score: float | None
    uncertain: bool
    reasons: list[str]
    error: str | None

    @property
    def verdict(self) -> Verdict: ...


@dataclass(frozen=True)
class PredictionRow:
    """One image's prediction in the schema's terms (:data:`COLUMNS`); the numbers are kept whether or not the
    image is assessed."""

    file: str
    label: str = ""
    probabilities: Mapping[str, float] = field(default_factory=dict)
    top_probability: float | None = None
    ood_score: float | None = None
    assessed: bool = False
    uncertain: bool = False
    reasons: tuple[str, ...] = ()
    verdict: str = ""
    error: str = ""

    @classmethod
    def of(cls, item: _Predicted, file: str) -> "PredictionRow":
        """The row of a :class:`leuk.inference.Prediction` or :class:`leuk.serving.ImageResult` named ``file``."""
        verdict = item.verdict
        return cls(file=file, label=item.label or "", probabilities=dict(item.probabilities),
                   top_probability=item.top_probability, ood_score=item.ood_score,
                   assessed=item.error is None and bool(item.probabilities) and is_assessed(verdict),
                   uncertain=bool(item.uncertain), reasons=tuple(item.reasons), verdict=verdict.word,
                   error=item.error or "")

    @staticmethod
    def columns(labels: Sequence[str]) -> list[str]:
        """The schema's column names for the classes ``labels``."""
        return [name for column, _ in COLUMNS for name in _expand(column, labels)]

    def to_dict(self, labels: Sequence[str]) -> dict[str, Any]:
        """The row as ``{column: value}`` in :meth:`columns` order (``p_<class>`` ``None`` for a class it lacks)."""
        values = {"file": self.file, "label": self.label, "top_probability": self.top_probability,
                  "ood_score": self.ood_score, "assessed": self.assessed, "uncertain": self.uncertain,
                  "reasons": "; ".join(self.reasons), "verdict": self.verdict, "error": self.error}
        values.update({PROBABILITY.format(label=label): self.probabilities.get(label) for label in labels})
        return {name: values[name] for name in self.columns(labels)}


@dataclass(frozen=True)
class RowView:
    """How one surface shows rows: which schema columns under which headers, in order (``{label}`` in a column
    and its header stands for each class), rounded to ``digits``, and two display rules."""

    columns: tuple[tuple[str, str], ...]
    #: decimals of a numeric column (``None`` stays ``None``)
    digits: Mapping[str, int] = field(default_factory=dict)
    #: an image read but not assessed shows :data:`NOT_ASSESSED` as its label and no probabilities
    hide_not_assessed: bool = False
    #: an unreadable image's reasons stay blank and its error drops the file name the row already shows
    error_once: bool = False

    def headers(self, labels: Sequence[str]) -> list[str]:
        """The headers for the classes ``labels``."""
        return [name for _, header in self.columns for name in _expand(header, labels)]

    def render(self, row: PredictionRow | None, labels: Sequence[str]) -> dict[str, Any]:
        """``{header: value}`` of ``row`` (``None``: a row without a prediction, each column blank)."""
        values = row.to_dict(labels) if row is not None else {
            name: _BLANK[column] for column, _ in COLUMNS for name in _expand(column, labels)}
        if row is not None and self.hide_not_assessed and not row.assessed and not row.error:
            values["label"] = NOT_ASSESSED
            values["top_probability"] = None
            values.update({PROBABILITY.format(label=label): None for label in labels})
        if row is not None and self.error_once and row.error:
            values["reasons"] = ""
            prefix = f"{row.file}: "
            values["error"] = row.error[len(prefix):] if row.error.startswith(prefix) else row.error
        for column, digits in self.digits.items():
            for name in _expand(column, labels):
                values[name] = None if values[name] is None else round(float(values[name]), digits)
        return {header: values[name] for column, header in self.columns
                for name, header in zip(_expand(column, labels), _expand(header, labels))}


def _expand(name: str, labels: Sequence[str]) -> list[str]:
    return [name.format(label=label) for label in labels] if "{label}" in name else [name]


def json_record(prediction: Any, row: PredictionRow) -> dict[str, Any]:
    """``leuk predict --json``'s record: the engine's nested record (:meth:`leuk.inference.Prediction.to_dict`:
    ``source``, ``probabilities`` as a mapping, the detector's scores and thresholds) and the row's ``assessed``."""
    return {**prediction.to_dict(), "assessed": row.assessed}


#: ``leuk predict --csv``.
CLI_CSV = RowView((("file", "file"), ("label", "label"), ("top_probability", "probability"),
                   (PROBABILITY, PROBABILITY), ("ood_score", "ood_score"), ("assessed", "assessed"),
                   ("uncertain", "uncertain"), ("reasons", "reasons"), ("error", "error")))
#: The batch CSV (:meth:`leuk.serving.batch.BatchResult.table`; ``patient_id`` is the batch's own column).
BATCH_CSV = RowView((("file", "file"), ("label", "label"), (PROBABILITY, PROBABILITY),
                     ("top_probability", "top_probability"), ("assessed", "assessed"), ("uncertain", "uncertain"),
                     ("reasons", "uncertain_reasons"), ("ood_score", "ood_score"), ("error", "error")))
#: The apps' per-image table (:meth:`leuk.serving.classify.ClassifyResult.table`).
APP_TABLE = RowView((("file", "image"), ("label", "label"), ("top_probability", "top probability"),
                     (PROBABILITY, "p({label})"), ("ood_score", "OOD score"), ("verdict", "verdict"),
                     ("reasons", "reasons"), ("error", "error")),
                    digits={"top_probability": 4, PROBABILITY: 4, "ood_score": 2},
                    hide_not_assessed=True, error_once=True)
#: The prediction columns of a smear's cell row (:meth:`leuk.serving.cells.SmearResult.cell_rows`).
SMEAR_CELL = RowView((("label", "label"), (PROBABILITY, PROBABILITY), ("assessed", "assessed"),
                      ("ood_score", "ood_score"), ("verdict", "verdict"), ("reasons", "reasons")),
                     digits={"ood_score": 2})
