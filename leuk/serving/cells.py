"""From a smear to a verdict for every white cell: the two models as one workflow.

``classify_smears(smears)`` finds the white cells of each smear (:func:`leuk.serving.detection.find_white_cells`:
by default the learned white-cell detector :mod:`leuk.cell_detector`; or the colour threshold
:func:`leuk.segmentation.classical_cell_mask` or a HybridCN-NAS model's Attention U-Net, each split by a watershed,
:mod:`leuk.serving.smear_geometry`),
cuts each cell out onto black the way C-NMC cells are (the cell alone, centred on a 450 x 450 black canvas, at the
C-NMC cell scale), classifies the cuts with the cell model (EfficientNet-SE) and its uncertainty verdict
(:mod:`leuk.verdict`), and sums up each smear and the whole batch (one patient). Cells too small, cut by the
image border or overlapping a neighbour are listed with the reason and not classified.

**The scale assumption.** A smear says nothing about its pixel size, so each cell is scaled from its own size:
its equivalent diameter (the diameter of the disc of the same area) becomes :data:`CNMC_CELL_DIAMETER`, the
median of the real C-NMC cells. This assumes every white cell is the size of a typical C-NMC cell, and so it erases
absolute size, which is class evidence in C-NMC (median equivalent diameter of ALL cells 215 px, HEM 174 px).
``scale="smear"`` gives every cell of a smear one factor (from the median diameter of the smear's cells), which
keeps the cells' relative sizes and assumes instead that the smear's median white cell is C-NMC-sized.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from leuk.errors import ImageReadError, LeukError
from leuk.io import ImageSource, read_image
from leuk.serving.assessment import NOT_ASSESSED, UNLIKE_TRAINING, left_out_text, not_assessed_markdown
from leuk.serving.classify import MAX_APP_PIXELS, MAX_IMAGES, PatientAggregate, aggregate, classify_images
from leuk.serving.registry import ModelRegistry, get_registry
from leuk.serving.rows import SMEAR_CELL, PredictionRow
from leuk.serving.runtime import gpu
from leuk.serving.detection import SEGMENTERS, find_white_cells
from leuk.serving.smear_geometry import (
    RedCellRuler,
    CNMC_CANVAS,
    CNMC_CELL_DIAMETER,
    SKIP_BORDER,
    SKIP_OVERLAP,
    SKIP_SMALL,
    SmearCell,
    cut_out,
    find_cells,
)
from leuk.verdict import UNCERTAIN_BELOW, Verdict

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import pandas as pd
    from PIL import Image

__all__ = [
    "CNMC_CANVAS", "CNMC_CELL_DIAMETER", "MAX_SMEARS", "SEGMENTERS", "SCALES", "SmearCell", "SmearResult",
    "SmearsResult", "cell_model_names", "classify_smear", "classify_smears", "cut_out", "find_cells",
]

#: Ways of scaling cells to the C-NMC size: each from its own diameter, or one factor per smear.
SCALES = ("cell", "smear")
#: Most smears one request may hold.
MAX_SMEARS = 16
#: Longer side (px) of :meth:`SmearResult.annotated`: about the width either app shows a smear at.
ANNOTATED_SIDE = 1024
#: Label height in line units (:func:`box_line_unit`).
LABEL_SIZE = 9


def box_line_unit(size: tuple[int, int]) -> int:
    """The thin box line width (px) of a picture of ``size``: 1/400 of its longer side, at least 1 px. A confident
    call's box is three units wide, so at any resolution the lines keep the same share of the picture."""
    return max(1, round(max(size) / 400))




# ------------------------------------------------------------------------------------------- segmenters


def _all_label(labels: Sequence[str]) -> str | None:
    return next((label for label in labels if label.lower() == "all"), None)


def share_all(assessed: Sequence[SmearCell], labels: Sequence[str]) -> float | None:
    """Share of the ``assessed`` cells called ALL (``None`` when none was assessed or no label is ALL): what a
    smear's and the patient's rows report."""
    all_label = _all_label(labels)
    if not assessed or all_label is None:
        return None
    return sum(cell.result.label == all_label for cell in assessed) / len(assessed)


def _is_cell_model(loaded: Any) -> bool:
    """A single-cell ALL/HEM model: an ``all`` class and no smear phases."""
    family = getattr(loaded, "family", None)
    return _all_label(loaded.labels) is not None and not (family is not None and family.has_phases)


def cell_model_names(registry: ModelRegistry | None = None) -> list[str]:
    """Configured single-cell models (an ``all`` class, no smear phases) that can classify cut-out cells."""
    return (registry or get_registry()).names_where(_is_cell_model)


def cell_model_for(selected: str | None, registry: ModelRegistry | None = None) -> str | None:
    """The model an app's smear view classifies the cells with: ``selected`` when it classifies single cells,
    else the first configured model that does (``None`` when none does)."""
    names = cell_model_names(registry)
    return selected if selected in names else (names[0] if names else None)


#: The two inputs of the apps' classify view: cells cut out onto black (C-NMC), or smear photos (every white cell
#: found, :func:`classify_smears`); the second is the smear mode.
MODES = ("Single cells", "Smear")


# ---------------------------------------------------------------------------------------------- results


@dataclass
class SmearResult:
    """One smear: its cells, who found them, and the smear-level summary of their calls."""

    name: str
    size: tuple[int, int] = (0, 0)
    segmenter: str = ""
    cells: list[SmearCell] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    aggregate: PatientAggregate | None = None
    error: str | None = None
    image: np.ndarray | None = field(default=None, repr=False)
    #: the red cells read as a ruler (``None``: too few to read; the smear was searched at its own scale)
    ruler: RedCellRuler | None = None

    @property
    def classified(self) -> list[SmearCell]:
        return [c for c in self.cells if c.result is not None and c.result.error is None]

    @property
    def skipped(self) -> list[SmearCell]:
        return [c for c in self.cells if c.skipped is not None]

    @property
    def all_label(self) -> str | None:
        return _all_label(self.labels)

    @property
    def assessed(self) -> list[SmearCell]:
        """The classified cells whose call is an answer (not out of distribution)."""
        return [c for c in self.classified if c.result.assessed]

    def counts(self) -> dict[str, int]:
        """Assessed cells per class (cells that are not assessed are called nothing)."""
        return {label: sum(c.result.label == label for c in self.assessed) for label in self.labels}

    @property
    def share_all(self) -> float | None:
        """Share of the assessed cells called ALL (``None`` when none was assessed)."""
        return share_all(self.assessed, self.labels)

    @property
    def n_uncertain(self) -> int:
        return sum(c.result.uncertain for c in self.classified)

    @property
    def verdict(self) -> Verdict | None:
        return None if self.aggregate is None else self.aggregate.verdict

    @property
    def count_line(self) -> str:
        """"3 white cells found, 2 classified, 1 skipped; red cells ≈ 180, 13 px across, used as the ruler"."""
        found = len(self.cells)
        ruler = (self.ruler.text() if self.ruler is not None
                 else "too few red cells for a ruler: searched at the smear's own scale")
        return (f"{found} white cell{'s' if found != 1 else ''} found ({self.segmenter}), {len(self.classified)} "
                f"classified, {len(self.skipped)} skipped; {ruler}")

    @property
    def headline(self) -> str:
        """One line: how many cells were found, classified and called ALL, and the smear's reading."""
        if self.error is not None:
            return f"{self.name}: {self.error}"
        if not self.cells:
            return f"{self.name}: no white cell found ({self.segmenter}); nothing classified"
        text = f"{self.name}: {self.count_line}"
        if self.aggregate is None:
            return text + "; nothing classified"
        share = self.share_all
        called = "" if share is None else f"; {self.counts()[self.all_label]} called {self.all_label} ({share:.0%})"
        left_out = self.aggregate.n_left_out
        skipped = f"; {left_out} {NOT_ASSESSED} ({UNLIKE_TRAINING})" if left_out else ""
        reading = self.aggregate.label or NOT_ASSESSED
        return text + f"{skipped}{called}; {self.n_uncertain} uncertain; smear reading {reading} " \
                      f"({self.verdict.word})"

    def row(self) -> dict[str, Any]:
        """The smear's row of :meth:`SmearsResult.table`."""
        agg = self.aggregate
        row: dict[str, Any] = {"row": "smear", "smear": self.name, "cell": "", "segmenter": self.segmenter,
                               "cells_found": len(self.cells), "classified": len(self.classified),
                               "skipped": len(self.skipped),
                               "red_cells": None if self.ruler is None else self.ruler.count,
                               "red_cell_px": None if self.ruler is None else round(self.ruler.diameter, 1)}
        for reason in (SKIP_SMALL, SKIP_BORDER, SKIP_OVERLAP):
            row[f"skipped {reason}"] = sum(bool(c.skipped and c.skipped.startswith(reason)) for c in self.cells)
        row.update({f"n_{label}": n for label, n in self.counts().items()})
        row["share_all"] = None if self.share_all is None else round(self.share_all, 4)
        row["uncertain_cells"] = self.n_uncertain
        row["not_assessed_cells"] = 0 if agg is None else agg.n_left_out
        row["label"] = "" if agg is None else agg.label or NOT_ASSESSED
        row.update({f"p_{label}": _mean(agg, label) for label in self.labels})
        row["verdict"] = "" if agg is None else agg.verdict.word
        row["reasons"] = "" if agg is None else "; ".join(agg.reasons)
        row["note"] = self.error or ("no white cell found" if not self.cells else
                                     "no cell could be classified" if agg is None else "")
        return row

    def cell_rows(self) -> list[dict[str, Any]]:
        """One row per cell of :meth:`SmearsResult.table`: where it is, whether it was classified, and its
        prediction in the columns of :data:`leuk.serving.rows.SMEAR_CELL` (blank for a skipped cell)."""
        rows = []
        for cell in self.cells:
            item = cell.result
            x0, y0, x1, y1 = cell.box
            row: dict[str, Any] = {"row": "cell", "smear": self.name, "cell": cell.number, "segmenter": self.segmenter,
                                   "x0": x0, "y0": y0, "x1": x1, "y1": y1, "diameter_px": round(cell.diameter, 1),
                                   "scale": round(cell.scale, 3) if cell.scale else None,
                                   "status": "skipped" if cell.skipped else "classified",
                                   "skip_reason": cell.skipped or ""}
            row.update(SMEAR_CELL.render(None if item is None else PredictionRow.of(item, self.name), self.labels))
            rows.append(row)
        return rows

    def annotated(self, display: int = ANNOTATED_SIDE) -> "Image.Image":
        """The smear, its longer side resized to ``display`` pixels, with each cell's box coloured by its call (ALL
        red, other classes green, skipped grey; an uncertain call is drawn thin and marked ``?``), numbered as in
        the table. Line width and label size are fractions of the picture (:func:`box_line_unit`), so the boxes read
        the same at display size whatever the smear's resolution."""
        from PIL import Image, ImageDraw, ImageFont

        picture = Image.fromarray(self.image if self.image is not None else np.zeros((64, 64, 3), np.uint8))
        factor = display / max(picture.size)
        if factor != 1:
            resample = Image.Resampling.LANCZOS if factor > 1 else Image.Resampling.BOX
            picture = picture.resize((max(1, round(picture.width * factor)), max(1, round(picture.height * factor))),
                                     resample)
        draw = ImageDraw.Draw(picture)
        unit = box_line_unit(picture.size)
        font = ImageFont.load_default(size=LABEL_SIZE * unit)
        for cell in self.cells:
            x0, y0, x1, y1 = (int(round(v * factor)) for v in cell.box)
            colour, width, mark = box_style(cell, self.all_label)
            draw.rectangle((x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)), outline=colour, width=width * unit)
            draw.text((x0 + 2 * unit, y0 + unit), f"{cell.number}{mark}", fill=colour, font=font,
                      stroke_width=max(1, unit // 2), stroke_fill="white")
        return picture

    def gallery(self) -> list[tuple["Image.Image", str]]:
        """``(crop, caption)`` of every classified cell, in table order."""
        from PIL import Image

        items = []
        for cell in self.classified:
            probability = cell.result.top_probability or 0.0
            call = f"{cell.result.label} {probability:.2f}" if cell.result.assessed else NOT_ASSESSED
            items.append((Image.fromarray(cell.crop),
                          f"{self.name} cell {cell.number}: {call} ({cell.result.verdict.word})"))
        return items


#: Box colours of :meth:`SmearResult.annotated`.
COLOUR_ALL, COLOUR_OTHER, COLOUR_SKIPPED = (220, 38, 38), (22, 163, 74), (140, 140, 140)


def box_style(cell: SmearCell, all_label: str | None) -> tuple[tuple[int, int, int], int, str]:
    """(colour, line width, mark) of a cell's box."""
    if cell.result is None or cell.result.error is not None:
        return COLOUR_SKIPPED, 1, ""
    if not cell.result.assessed:  # no call to colour: grey and marked, like an uncertain one
        return COLOUR_SKIPPED, 1, "?"
    colour = COLOUR_ALL if cell.result.label == all_label else COLOUR_OTHER
    return (colour, 1, "?") if cell.result.uncertain else (colour, 3, "")


@dataclass
class SmearsResult:
    """Every smear of one request (one patient): per-cell and per-smear rows and the patient-level reading."""

    model_name: str
    labels: list[str]
    smears: list[SmearResult]
    aggregate: PatientAggregate | None
    scale_mode: str = "cell"
    #: the verdict threshold in force (the cell model's own)
    threshold: float = UNCERTAIN_BELOW

    @property
    def cells(self) -> list[tuple[SmearResult, SmearCell]]:
        return [(smear, cell) for smear in self.smears for cell in smear.cells]

    def patient_row(self) -> dict[str, Any]:
        classified = [c for s in self.smears for c in s.classified]
        assessed = [c for s in self.smears for c in s.assessed]
        share = share_all(assessed, self.labels)
        agg = self.aggregate
        row: dict[str, Any] = {"row": "patient", "smear": f"{len(self.smears)} smears", "cell": "",
                               "cells_found": sum(len(s.cells) for s in self.smears), "classified": len(classified),
                               "skipped": sum(len(s.skipped) for s in self.smears),
                               "share_all": None if share is None else round(share, 4),
                               "uncertain_cells": sum(s.n_uncertain for s in self.smears),
                               "not_assessed_cells": len(classified) - len(assessed),
                               "label": "" if agg is None else agg.label or NOT_ASSESSED,
                               "verdict": "" if agg is None else agg.verdict.word,
                               "reasons": "" if agg is None else "; ".join(agg.reasons)}
        row.update({f"p_{label}": _mean(agg, label) for label in self.labels})
        return row

    def table(self, *, patient: bool | None = None) -> "pd.DataFrame":
        """One row per cell (``row`` = ``cell``, with its box), then one per smear (``smear``) and, with more than
        one smear (or ``patient=True``), the patient row."""
        import pandas as pd

        rows = [row for smear in self.smears for row in smear.cell_rows()]
        rows += [smear.row() for smear in self.smears]
        if patient or (patient is None and len(self.smears) > 1):
            rows.append(self.patient_row())
        columns = ["row", "smear", "cell", "segmenter", "x0", "y0", "x1", "y1", "diameter_px", "scale", "status",
                   "skip_reason", *SMEAR_CELL.headers(self.labels), "cells_found", "classified", "skipped", "red_cells", "red_cell_px",
                   *(f"skipped {r}" for r in (SKIP_SMALL, SKIP_BORDER, SKIP_OVERLAP)),
                   *(f"n_{n}" for n in self.labels), "share_all", "uncertain_cells", "not_assessed_cells", "note"]
        return pd.DataFrame(rows).reindex(columns=columns)

    def cell_table(self) -> "pd.DataFrame":
        """The cell rows as the apps show them: a cell that is not assessed has :data:`NOT_ASSESSED` as its label
        and no probabilities (the CSV, :meth:`table`, keeps them)."""
        table = self.table(patient=False)
        keep = ["smear", "cell", "x0", "y0", "x1", "y1", "diameter_px", "status", "skip_reason", "label",
                *(f"p_{n}" for n in self.labels), "ood_score", "verdict", "reasons"]
        cells = table[table["row"] == "cell"].reset_index(drop=True)
        hidden = cells["assessed"].eq(False)
        cells.loc[hidden, "label"] = NOT_ASSESSED
        cells.loc[hidden, [f"p_{n}" for n in self.labels]] = None
        for name in self.labels:  # what a person reads: 3 decimals (the CSV, :meth:`table`, keeps full precision)
            cells[f"p_{name}"] = cells[f"p_{name}"].astype(float).round(DISPLAY_DECIMALS)
        return cells[keep]

    def smear_table(self) -> "pd.DataFrame":
        table = self.table()
        keep = ["row", "smear", "segmenter", "cells_found", "classified", "skipped",
                *(f"n_{n}" for n in self.labels), "share_all", "uncertain_cells", "not_assessed_cells", "label",
                "verdict", "reasons", "note"]
        return table[table["row"] != "cell"][keep].reset_index(drop=True)

    @property
    def summary_markdown(self) -> str:
        lines = [f"- {smear.headline}" for smear in self.smears]
        if self.aggregate is None:
            head = "**No white cell was classified.**"
        else:
            agg = self.aggregate
            head = (agg.verdict.markdown(self.threshold) if agg.assessed
                    else not_assessed_markdown(UNLIKE_TRAINING, agg.reasons))
            if agg.n_left_out:
                head += "\n\n" + left_out_text(agg.n_left_out, agg.n_images, unit="cell")
            if len(self.smears) > 1:
                row = self.patient_row()
                share = "" if row["share_all"] is None else f"{row['share_all']:.0%} called ALL, "
                head += (f"\n\n**Patient** ({len(self.smears)} smears): {row['classified']} cells classified, "
                         f"{share}{row['uncertain_cells']} uncertain.")
        return "\n".join([head, "", *lines, "", SCALE_NOTE[self.scale_mode]])


#: Decimals of the probabilities the apps show (downloads keep full precision).
DISPLAY_DECIMALS = 3


def _mean(agg: PatientAggregate | None, label: str) -> float | None:
    """The rounded mean probability of ``label`` over the assessed cells (``None`` without any)."""
    value = None if agg is None else agg.mean_probabilities.get(label)
    return None if value is None else round(value, 4)


SCALE_NOTE = {
    "cell": (f"_Each cell is cut out onto black and scaled so that its equivalent diameter is "
             f"{CNMC_CELL_DIAMETER:.0f} px on a {CNMC_CANVAS} px canvas, the median real C-NMC cell: absolute "
             f"size (a cue in C-NMC) is not used._"),
    "smear": (f"_Each cell is cut out onto black; one scale per smear brings the smear's median cell to "
              f"{CNMC_CELL_DIAMETER:.0f} px on a {CNMC_CANVAS} px canvas (the median real C-NMC cell)._"),
}


# ------------------------------------------------------------------------------------------- the pipeline


def _names(smears: Sequence[ImageSource]) -> list[str]:
    import os
    from pathlib import Path

    return [Path(s).name if isinstance(s, (str, os.PathLike)) else f"smear {i + 1}" for i, s in enumerate(smears)]


def _scales(cells: list[SmearCell], mode: str) -> None:
    kept = [c for c in cells if c.skipped is None]
    if not kept:
        return
    smear_factor = CNMC_CELL_DIAMETER / float(np.median([c.diameter for c in kept]))
    for cell in kept:
        cell.scale = CNMC_CELL_DIAMETER / cell.diameter if mode == "cell" else smear_factor


def classify_smears(
    smears: Sequence[ImageSource],
    cell_model: str | None = None,
    *,
    names: Sequence[str] | None = None,
    segmenter: str = "auto",
    segmenter_model: str | None = None,
    scale: str = "cell",
    threshold: float | None = None,
    registry: ModelRegistry | None = None,
    progress: Callable[[int, int], None] | None = None,
    max_smears: int | None = MAX_SMEARS,
) -> SmearsResult:
    """Every white cell of every smear found, cut out C-NMC-style, classified, and summed up.

    ``cell_model``: a configured single-cell model (default: the first of :func:`cell_model_names`).
    ``segmenter``: ``auto`` (the finder measured best on the box reference: the learned detector), ``detector``,
    ``unet`` (the U-Net of ``segmenter_model`` or the first configured HybridCN-NAS model) or ``classical``
    (:func:`find_white_cells`).
    ``scale``: ``cell`` or ``smear`` (module docstring). The smears are one patient's: the
    patient-level reading pools every classified cell. An unreadable smear gets an error row and never stops
    the others; raises :class:`ImageReadError` when none is given, more than ``max_smears`` are (the apps'
    limit :data:`MAX_SMEARS`; ``None``: no limit), or none is readable.
    """
    registry = registry or get_registry()
    if scale not in SCALES:
        raise LeukError(f"unknown scale {scale!r}: use one of {', '.join(SCALES)}")
    smears = list(smears)
    if not smears:
        raise ImageReadError("no smear given: upload at least one smear image")
    if max_smears is not None and len(smears) > max_smears:
        raise ImageReadError(f"{len(smears)} smears in one request; the limit is {max_smears}")
    name = registry.choose(cell_model, _is_cell_model,
                           wrong_kind="is not a single-cell ALL/HEM model: choose one such as EfficientNet-SE",
                           none_configured="no single-cell model (with an 'all' class) is configured to classify "
                                           "the cells")
    labels = registry.get(name).labels
    threshold = registry.get(name).uncertain_below if threshold is None else float(threshold)
    names = list(names) if names is not None else _names(smears)
    results = []
    for index, (src, display) in enumerate(zip(smears, names)):
        result = SmearResult(name=display, labels=list(labels))
        try:
            rgb = np.asarray(read_image(src, max_pixels=MAX_APP_PIXELS, name=display), dtype=np.uint8)
        except ImageReadError as err:
            result.error = str(err)
            results.append(result)
            continue
        result.image, result.size = rgb, (rgb.shape[1], rgb.shape[0])
        try:
            found = find_white_cells(rgb, segmenter, segmenter_model=segmenter_model, registry=registry)
        except LeukError:
            raise  # a setting of the request (segmenter, model), not this smear
        except Exception as err:  # this smear defeats the finder: its row says so, the others go on
            log.exception("finding the cells of %s failed", display)
            result.error = f"{display}: the white cells could not be found ({type(err).__name__}: {err})"
            results.append(result)
            continue
        result.cells, result.segmenter, result.ruler = found.cells, found.found_by, found.ruler
        _scales(result.cells, scale)
        for cell in result.cells:
            if cell.skipped is None:
                cell.crop = cut_out(rgb, cell.mask, cell.scale)
        _classify_cells(result, name, threshold, registry)
        results.append(result)
        if progress is not None:
            progress(index + 1, len(smears))
    failures = [r.error for r in results if r.error is not None]
    if len(failures) == len(results):
        more = f" (and {len(failures) - 1} more unreadable)" if len(failures) > 1 else ""
        raise ImageReadError(f"{failures[0]}{more}")
    every = [c.result for r in results for c in r.classified]
    return SmearsResult(model_name=name, labels=list(labels), smears=results,
                        aggregate=aggregate(every, labels, threshold) if every else None, scale_mode=scale,
                        threshold=threshold)


def _classify_cells(result: SmearResult, name: str, threshold: float, registry: ModelRegistry) -> None:
    todo = [cell for cell in result.cells if cell.crop is not None]
    for start in range(0, len(todo), MAX_IMAGES):
        part = todo[start:start + MAX_IMAGES]
        classified = classify_images([c.crop for c in part], name, registry=registry, threshold=threshold,
                                     names=[f"{result.name} cell {c.number}" for c in part])
        for cell, item in zip(part, classified.images):
            cell.result = item
    readable = [c.result for c in result.classified]
    result.aggregate = aggregate(readable, result.labels, threshold) if readable else None


#: :func:`classify_smears` as the apps call it (on ZeroGPU: inside a GPU allocation).
classify_smears_gpu = gpu()(classify_smears)


def classify_smear(smear: ImageSource, cell_model: str | None = None, **options: Any) -> SmearResult:
    """One smear through :func:`classify_smears`."""
    return classify_smears([smear], cell_model, **options).smears[0]
