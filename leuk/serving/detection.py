"""Finding the white cells of a smear: the red cells read as a ruler, the smear brought to the red-cell scale, a
cell finder (the colour rule or the U-Net of a HybridCN-NAS model), touching cells split, everything mapped back to
the smear's own pixels. :mod:`leuk.serving.cells` cuts the cells out and classifies them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from leuk.errors import LeukError
from leuk.serving.registry import ModelRegistry, get_registry
from leuk.serving.smear_geometry import (
    RULER_DIAMETER,
    RULER_SIDE,
    RedCellRuler,
    SmearCell,
    cells_from_boxes,
    distance_peaks,
    find_cells,
    red_cell_ruler,
    rescale_cells,
)

__all__ = ["CLASSICAL_NAME", "DETECTOR_NAME", "Found", "SEGMENTERS", "SEGMENTER_CHOICES", "SEGMENTER_LABELS", "find_white_cells", "has_segmenter",
           "at_working_scale", "unet_mask", "working_scale"]

#: Ways of finding cells: the best measured (today the learned detector), the learned white-cell detector
#: (:mod:`leuk.cell_detector`), the U-Net of a HybridCN-NAS model, the colour rule (``bench/bench_smear_cells.py``
#: scores each on the box-level reference).
SEGMENTERS = ("auto", "detector", "unet", "classical")
#: What each finder is, in the words both apps and the CLI show.
SEGMENTER_LABELS = {
    "auto": "best measured: white-cell detector at the red-cell scale (colour rule on stains it never saw)",
    "detector": "white-cell detector (a small network trained on reviewed boxes), at the red-cell scale",
    "unet": "U-Net of the HybridCN-NAS model, at the red-cell scale",
    "classical": "colour rule at the red-cell scale",
}
#: The finders as ``(shown, value)`` pairs, in :data:`SEGMENTERS` order: a choice widget's options in both apps.
SEGMENTER_CHOICES: list[tuple[str, str]] = [(label, value) for value, label in SEGMENTER_LABELS.items()]
CLASSICAL_NAME = "colour threshold (leuk.segmentation.classical_cell_mask)"
DETECTOR_NAME = "white-cell detector (leuk.cell_detector)"

def unet_mask(loaded: Any, rgb: np.ndarray) -> np.ndarray:
    """The segmenter mask of ``rgb`` at its own size, as the model itself sees the smear: the model's preprocessing,
    then its family's :meth:`leuk.models.family.ModelFamily.cell_mask` (its own probabilities and threshold)."""
    pixels = loaded.processor(images=[rgb], return_tensors="pt")["pixel_values"]
    return loaded.family.cell_mask(loaded.model, pixels, size=rgb.shape[:2])


def has_segmenter(loaded: Any) -> bool:
    """Whether a loaded model finds cells (asked of its family: :meth:`ModelFamily.has_segmenter`)."""
    return loaded.family is not None and loaded.family.has_segmenter(loaded.model)


#: Smallest white-cell region the colour rule keeps at the red-cell scale: 0.15 of a red cell's area (20 px on an
#: Aria smear; chosen on the 80 mask-review smears of the box reference, ``bench/bench_smear_cells.py``).
MIN_WHITE_AREA = 0.15 * np.pi / 4 * RULER_DIAMETER ** 2
#: Seeds of the watershed that splits touching cells (:func:`distance_peaks`), at the red-cell scale: a seed is the
#: deepest point within 0.55 red-cell diameters and at least 0.27 diameters inside the mask (7 and 3.5 px; chosen
#: on the same 80 smears with the ruler's per-pixel spectrum, ``bench/bench_smear_cells.py``; issue 27).
SEED_SEPARATION = 0.55 * RULER_DIAMETER
SEED_DEPTH = 0.27 * RULER_DIAMETER


#: The white cells the ruler leaves out of its red-cell count: violet only (OpenCV hue <= 140, stricter than the
#: finder's :data:`leuk.segmentation.WHITE_CELL_HUE_MAX` 145), so that the darker pink overlaps of a Wright-stained
#: smear's red cells stay red cells. With 145 the bundled sample ``Early_1`` kept only red-cell fragments, read a
#: 7 px ruler and gave 38 "white cells" (it has 3); with 140 it reads 29 px. The 104 box-reference smears give the
#: same figures with either (``bench/bench_smear_cells.py``; issue 27).
RULER_WHITE_HUE_MAX = 140

#: Longest side (px) the cells are looked for at.
MAX_WORK_SIDE = 2048


@dataclass
class Found:
    """The white cells of one smear, who found them, and the red-cell ruler that set the scale."""

    cells: list[SmearCell]
    found_by: str
    ruler: RedCellRuler | None = None
    #: the factor the smear was resized by to bring its red cells to :data:`RULER_DIAMETER`
    factor: float = 1.0


def working_scale(rgb: np.ndarray) -> tuple[RedCellRuler | None, float]:
    """The smear's red-cell ruler and the factor that brings its red cells to :data:`RULER_DIAMETER` px (between
    1/32 and 2; 1 without a ruler, and never above what keeps the copy under ``MAX_WORK_SIDE``)."""
    import cv2

    from leuk.segmentation import classical_cell_mask

    shrink = min(1.0, RULER_SIDE / max(rgb.shape[:2]))
    small = rgb if shrink == 1 else cv2.resize(rgb, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
    ruler = red_cell_ruler(small, white=classical_cell_mask(small, min_area_fraction=0, hue_max=RULER_WHITE_HUE_MAX))
    if ruler is not None and shrink != 1:
        ruler = RedCellRuler(diameter=ruler.diameter / shrink, count=ruler.count, hue=ruler.hue)
    factor = 1.0 if ruler is None else float(np.clip(RULER_DIAMETER / ruler.diameter, 1 / 32, 2.0))
    factor = min(factor, MAX_WORK_SIDE / max(rgb.shape[:2]))
    return ruler, (1.0 if abs(factor - 1) < 0.05 else factor)


def at_working_scale(rgb: np.ndarray) -> tuple[RedCellRuler | None, float, np.ndarray]:
    """The smear's ruler, its :func:`working_scale` factor and the smear resized by it (the picture every finder
    searches, and the detector was trained on)."""
    import cv2

    ruler, factor = working_scale(rgb)
    work = rgb if factor == 1 else cv2.resize(rgb, None, fx=factor, fy=factor,
                                             interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC)
    return ruler, factor, work


def find_white_cells(rgb: np.ndarray, segmenter: str = "auto", *, segmenter_model: str | None = None,
                     registry: ModelRegistry | None = None, detector: Any = None) -> Found:
    """The white cells of one smear, found at the red-cell scale and returned in the smear's own pixels.

    The red cells are the ruler (:func:`red_cell_ruler`): the smear is resized so that they are
    :data:`RULER_DIAMETER` px across, the cells are found there (so a smear and its 2x enlargement give the same
    cells, and a 2592 x 1944 photo is searched at a few hundred pixels), and boxes and masks are mapped back.
    ``segmenter``: ``auto`` and ``detector`` the learned white-cell detector (:mod:`leuk.cell_detector`, measured
    best on the box reference; ``detector``: a :class:`leuk.cell_detector.LoadedCellDetector` other than the bundled
    one), its boxes kept and each cell's mask the colour rule's inside its box; ``classical`` the colour rule
    (:func:`leuk.segmentation.classical_cell_mask`) split by watershed; ``unet`` the U-Net of a HybridCN-NAS model
    (``segmenter_model`` or the first configured).
    """
    from leuk.segmentation import WHITE_CELL_HUE_MAX, WHITE_GROW_HUE_MIN, WHITE_REGION_HUE_MIN, classical_cell_mask

    if segmenter not in SEGMENTERS:
        raise LeukError(f"unknown segmenter {segmenter!r}: use one of {', '.join(SEGMENTERS)}")
    ruler, factor, work = at_working_scale(rgb)
    why_not = ""
    if segmenter == "auto":
        segmenter, why_not = _auto_finder(ruler, detector)
    if segmenter == "unet":
        registry = registry or get_registry()
        name = segmenter_model or _segmenter_name(registry, required=True)
        loaded = registry.get(name)
        if not has_segmenter(loaded):
            raise LeukError(f"model {name!r} has no cell segmenter: choose a HybridCN-NAS model")
        mask, found_by = unet_mask(loaded, work), f"U-Net of {name}"
    elif segmenter == "detector":
        from leuk.cell_detector import load_cell_detector

        detector = detector or load_cell_detector()
        # the cell's own pixels for its cut-out: the colour rule inside the detector's box, nothing left out for size
        mask = classical_cell_mask(work, hue_max=WHITE_CELL_HUE_MAX, grow_hue_min=WHITE_GROW_HUE_MIN,
                                   min_area_fraction=0)
        cells = cells_from_boxes(mask, [d.box for d in detector.detect(work)])
        return Found(cells=rescale_cells(cells, factor, rgb.shape[:2]), found_by=DETECTOR_NAME, ruler=ruler,
                     factor=factor)
    else:
        # without a ruler (a drawing, a crop) the smallest cell is a share of the picture, as on a 224 px Aria smear
        size = dict(min_area=MIN_WHITE_AREA) if ruler is not None else dict(min_area_fraction=MIN_WHITE_AREA / 224 ** 2)
        # regions at the blue edge of the violet rule are sheets of grey-blue red cells, not white cells; the mask
        # grows into the pale parts of its cells, so that a patchy cell is boxed whole rather than by a piece
        mask = classical_cell_mask(work, hue_max=WHITE_CELL_HUE_MAX, min_region_hue=WHITE_REGION_HUE_MIN,
                                   grow_hue_min=WHITE_GROW_HUE_MIN, **size)
        found_by = CLASSICAL_NAME + why_not
    # merged cells the watershed left whole are cut at their outline's notches, sized by the ruler's red cells
    cells = find_cells(work, mask, seeds=distance_peaks(mask, SEED_SEPARATION, SEED_DEPTH),
                       concave_ruler=RULER_DIAMETER)
    cells = rescale_cells(cells, factor, rgb.shape[:2])
    return Found(cells=cells, found_by=found_by, ruler=ruler, factor=factor)


def _auto_finder(ruler: RedCellRuler | None, detector: Any) -> tuple[str, str]:
    """The finder ``auto`` stands for on this smear, and why it is not the detector when it is not: the learned
    detector on a smear whose red cells are coloured as in the smears it was trained on (their hue within the range its
    metadata records, ``red_cell_hue``), else the colour rule; the colour rule, too, where no detector is installed
    (a copy that left ``assets/`` out)."""
    from leuk.cell_detector import has_cell_detector, load_cell_detector

    if detector is None:
        if not has_cell_detector():
            return "classical", "; no white-cell detector installed"
        detector = load_cell_detector()
    span = detector.meta.get("red_cell_hue")
    if ruler is not None and ruler.hue is not None and span and not span[0] <= ruler.hue <= span[1]:
        return "classical", (f"; red cells of hue {ruler.hue:.0f}, unlike the {span[0]:.0f}-{span[1]:.0f} of the "
                             "smears the white-cell detector learned from")
    return "detector", ""


def _segmenter_name(registry: ModelRegistry, *, required: bool) -> str | None:
    names = registry.names_where(has_segmenter)
    if names:
        return names[0]
    if required:
        raise LeukError("no HybridCN-NAS model with a segmenter is configured: use segmenter 'classical'")
    return None
