"""Geometry of white cells on a smear: one label per cell (touching cells split), the reasons a cell must not
be classified, and the cut-out of a cell onto black at the C-NMC cell scale (:mod:`leuk.serving.cells` runs it)."""

from __future__ import annotations

from dataclasses import dataclass, field
import numpy as np

from leuk.serving.classify import ImageResult

__all__ = ["CNMC_CANVAS", "CNMC_CELL_DIAMETER", "RULER_DIAMETER", "RedCellRuler", "SmearCell", "cut_out",
           "cells_from_boxes", "concave_cut", "distance_peaks", "find_cells", "red_cell_ruler", "rescale_cells"]

#: Side of a C-NMC image: one cell centred on black.
CNMC_CANVAS = 450
#: Median equivalent diameter (px, on the 450 px canvas) of the non-black region of the real C-NMC cells:
#: measured on 2026-12-02 over all 2,161 cells of ``../shared/datasets/cnmc-real`` (fold_0, 14 ALL and 3 HEM
#: subjects; pixels whose largest channel exceeds 10, largest connected region): median 208.6 px (5-95%:
#: 159-245 px; ALL 214.6, HEM 174.1). ``bench/bench_smear_cells.py --measure-cnmc`` re-measures it.
CNMC_CELL_DIAMETER = 209.0
#: A cell narrower than this (equivalent diameter, px) holds too little to classify.
MIN_CELL_DIAMETER = 10.0
#: ... and so does one narrower than this fraction of the smear's largest cell (a fragment, a platelet clump).
MIN_RELATIVE_DIAMETER = 0.35
#: Two watershed cells overlap (rather than touch) when their contact line is longer than this fraction of the
#: smaller one's diameter (two discs in contact: about 0.25; discs whose centres are 13% closer: 0.5).
OVERLAP_CONTACT = 0.5
#: An unsplit region this far from convex (area / convex-hull area) is a clump of overlapping cells.
MIN_SOLIDITY = 0.75

#: Cutting merged cells at concave points (:func:`concave_cut`), every size in red-cell diameters (or their
#: squares) so that a smear and its 2x enlargement are cut alike: a region is looked at when it is less convex than
#: this (area / convex-hull area of its smoothed outline; two 2-diameter discs overlapping by a third read 0.94-0.95,
#: a pixelated single disc up to 0.99) ...
CONCAVE_MAX_SOLIDITY = 0.97
#: ... and larger than this many squared red-cell diameters (2.5: about 1.5 typical white cells on an Aria smear);
CONCAVE_MIN_AREA = 2.5
#: two notches at least this deep (red-cell diameters) are cut along the line joining them when that line is no
#: longer than :data:`CONCAVE_PAIR_RATIO` times their summed depth; a lone notch at least
#: :data:`CONCAVE_SINGLE_DEPTH` deep is cut straight inwards, across the region;
CONCAVE_DEPTH = 0.12
CONCAVE_PAIR_RATIO = 4.0
CONCAVE_SINGLE_DEPTH = 0.2
#: and a cut stands only when every part keeps this many squared red-cell diameters. All chosen on the 80
#: mask-review smears of the box reference (``bench/bench_smear_cells.py``; issue 27).
CONCAVE_MIN_PART = 0.6
#: Outlines are traced at this many times the picture's resolution (a white cell is ~20 px across there).
_CONCAVE_UPSAMPLE = 4

#: Red-cell diameter (px, as :func:`red_cell_ruler` reads it) that the cell finders and every size rule here are
#: set for: what it reads on the real Aria smears (224 x 224; median over a sample of 11 smears 2026-12-07: 13 px;
#: with the per-pixel spectrum of issue 27, median over the 104 box-reference smears: 13 px).
#: A smear is brought to this scale before its cells are found, so the same smear at 2x gives the same cells.
RULER_DIAMETER = 13.0
#: The ruler reads a copy no larger than this (px, longer side): red cells stay tens of pixels across there.
RULER_SIDE = 768
#: Fewest red cells (foreground area over one red cell's) for a reading to count as a ruler.
MIN_RED_CELLS = 8

SKIP_SMALL = "too small"
SKIP_BORDER = "cut by the border"
SKIP_OVERLAP = "overlapping"


# --------------------------------------------------------------------------------------------- geometry


@dataclass
class SmearCell:
    """One white cell found on a smear: where it is, how it was cut out, and its call (or why it was skipped)."""

    number: int
    #: (x0, y0, x1, y1) in the smear's pixels, x1/y1 exclusive
    box: tuple[int, int, int, int]
    area: int
    #: equivalent diameter in the smear's pixels
    diameter: float
    centroid: tuple[float, float]
    #: factor from smear pixels to C-NMC pixels (0 when the cell was not cut out)
    scale: float = 0.0
    skipped: str | None = None
    #: the cell on black, ``CNMC_CANVAS`` square (uint8 RGB); ``None`` when skipped
    crop: np.ndarray | None = field(default=None, repr=False)
    #: the cell model's reading of ``crop``
    result: ImageResult | None = None
    #: the cell's own mask on the smear (bool, full size)
    mask: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class RedCellRuler:
    """The red cells of a smear read as a ruler (a red cell is about 7.5 micrometres across in any smear): their
    typical diameter in the smear's pixels and about how many there are (foreground area outside the white cells
    over one red cell's area)."""

    diameter: float
    count: int
    #: median OpenCV hue of the red cells, pinks unwrapped past 179 (hue h < 30 read as h + 180): grey-blue red cells
    #: of a May-Gruenwald-Giemsa smear read about 100-130, pink ones of a Wright-style stain 150-190
    hue: float | None = None

    def text(self) -> str:
        return f"red cells ≈ {self.count}, {self.diameter:.0f} px across, used as the ruler"


def red_cell_ruler(rgb: np.ndarray, white: np.ndarray | None = None) -> RedCellRuler | None:
    """The typical red-cell diameter of a smear by granulometry: the cells (darker than the background by Otsu on
    the green channel, holes filled) are opened with discs of growing radius, and the radius at which most of
    their area vanishes (the peak of the pattern spectrum: area lost per pixel of radius) is the red cells' (they
    hold most of a smear's cell area). Per pixel, not per log-radius step: the log scale weighs each radius by its
    size, so in a crowded smear the sheets of touching red cells outweighed the cells themselves (the box-reference
    Aria smears, one magnification, read 13-33 px that way, 11-23 px per pixel). The peak is then read between every
    whole radius around it, so the same smear at 2x reads twice the diameter to a few percent (a drawn smear: 2.3%).
    ``white`` (optional bool mask of the white cells, the picture's shape) is left out of the count. ``None`` when
    fewer than :data:`MIN_RED_CELLS` red cells are there to read (a crop of one cell, a drawing). It reads the
    picture as given: :func:`leuk.serving.detection.working_scale` hands it a copy no larger than :data:`RULER_SIDE`."""
    import cv2
    from scipy import ndimage

    green = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)[..., 1])
    white_small = np.zeros(green.shape, bool) if white is None else np.asarray(white, dtype=bool)
    if white_small.shape != green.shape:
        raise ValueError(f"white mask {white_small.shape} and picture {green.shape} differ in size")
    # background against red cells: the white cells (far darker) would take Otsu's split for themselves
    rest = green[~white_small] if (~white_small).sum() > 100 else green.ravel()
    threshold, _ = cv2.threshold(np.ascontiguousarray(rest.reshape(1, -1)), 0, 255,
                                 cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    cells = ndimage.binary_fill_holes(green < threshold).astype(np.uint8)
    red = (cells.astype(bool) & ~white_small).astype(np.uint8)  # white cells are larger: they would blur the peak
    opened: dict[int, float] = {}

    def area(r: int) -> float:
        if r not in opened:
            disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
            opened[r] = float(cv2.morphologyEx(red, cv2.MORPH_OPEN, disc).sum())
        return opened[r]

    def peak_step(radii: np.ndarray) -> tuple[int, float]:
        """Index of the step between ``radii`` that loses the most area per pixel of radius, and that loss."""
        areas = np.array([area(int(r)) for r in radii])
        spectrum = (areas[:-1] - areas[1:]) / (radii[1:] - radii[:-1])
        return (int(np.argmax(spectrum)), float(spectrum.max())) if len(spectrum) else (0, 0.0)

    radii = np.unique(np.round(np.geomspace(1.5, max(cells.shape) / 12, 40)).astype(int))
    peak, loss = peak_step(radii)
    if loss <= 0:
        return None
    # past a radius of ~10 px the coarse radii step by 2 px or more, and a smear and its enlargement read
    # differently rounded diameters (5% apart on a drawn smear at 2x); every whole radius around the coarse peak
    # reads it to the pixel. Below that the coarse radii are every whole radius already: nothing changes.
    radii = np.arange(int(radii[max(peak - 1, 0)]), int(radii[min(peak + 2, len(radii) - 1)]) + 1)
    peak, _ = peak_step(radii)
    radius = float(np.sqrt(radii[peak] * radii[peak + 1]))
    red_area = float(red.sum())
    count = int(round(red_area / (np.pi * radius ** 2)))
    if count < MIN_RED_CELLS:
        return None
    hue = cv2.cvtColor(np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)[..., :3]), cv2.COLOR_RGB2HSV)[..., 0]
    red_hue = hue[red.astype(bool)].astype(float)
    return RedCellRuler(diameter=2 * radius, count=count,
                        hue=float(np.median(np.where(red_hue < 30, red_hue + 180, red_hue))))


def rescale_cells(cells: list[SmearCell], factor: float, shape: tuple[int, int]) -> list[SmearCell]:
    """Cells found on a copy of a smear resized by ``factor``, in the smear's own pixels (``shape``: its height and
    width): boxes, areas, diameters and centroids divided by ``factor``, each mask resized to the full smear."""
    import cv2

    if factor == 1:
        return cells
    height, width = shape
    out = []
    for cell in cells:
        x0, y0, x1, y1 = cell.box
        box = (max(0, int(np.floor(x0 / factor))), max(0, int(np.floor(y0 / factor))),
               min(width, int(np.ceil(x1 / factor))), min(height, int(np.ceil(y1 / factor))))
        mask = None
        if cell.mask is not None:
            part = cell.mask[y0:y1, x0:x1].astype(np.float32)
            size = (box[2] - box[0], box[3] - box[1])
            mask = np.zeros((height, width), bool)
            # bilinear, then halfway: a smooth outline instead of blocks the size of one work pixel
            mask[box[1]:box[3], box[0]:box[2]] = cv2.resize(part, size, interpolation=cv2.INTER_LINEAR) > 0.5
        out.append(SmearCell(number=cell.number, box=box, area=int(round(cell.area / factor ** 2)),
                             diameter=cell.diameter / factor,
                             centroid=(cell.centroid[0] / factor, cell.centroid[1] / factor),
                             skipped=_rescaled_reason(cell.skipped, factor), mask=mask))
    return out


def _rescaled_reason(reason: str | None, factor: float) -> str | None:
    """A "too small (N px across)" reason in the smear's own pixels."""
    if reason is None or not reason.startswith(SKIP_SMALL):
        return reason
    import re

    return re.sub(r"\((\d+) px across\)", lambda m: f"({float(m.group(1)) / factor:.0f} px across)", reason)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    return ndimage.binary_fill_holes(mask)


def _shape(region: np.ndarray) -> tuple[float, float]:
    """(solidity, contour length) of a boolean region."""
    import cv2

    contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return 1.0, 0.0
    contour = max(contours, key=cv2.contourArea)
    hull = cv2.contourArea(cv2.convexHull(contour))
    return (float(region.sum()) / hull if hull > 0 else 1.0), float(cv2.arcLength(contour, True))


def _contacts(labels: np.ndarray) -> dict[tuple[int, int], float]:
    """Length (px) of the edge each pair of touching cells shares: the root of the squared counts of horizontal
    and vertical neighbour pairs across it (exact for a straight edge at any angle)."""
    counts: dict[tuple[int, int], list[int]] = {}
    for axis, (a, b) in enumerate(((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :]))):
        across = (a != b) & (a > 0) & (b > 0)
        for low, high in zip(np.minimum(a, b)[across].tolist(), np.maximum(a, b)[across].tolist()):
            counts.setdefault((low, high), [0, 0])[axis] += 1
    return {pair: float(np.hypot(*n)) for pair, n in counts.items()}


def distance_peaks(mask: np.ndarray, separation: float, depth: float) -> np.ndarray:
    """Seeds for :func:`find_cells`: the maxima of the mask's distance map (smoothed a little) that are the largest
    within ``separation`` px and at least ``depth`` px inside the mask. In a clump of touching cells every cell
    whose centre lies ``separation`` px from the next one's gets its own seed, which a ratio of the clump's deepest
    point cannot give (the smaller cells of a large clump fall under it)."""
    import cv2

    binary = _fill_holes(np.asarray(mask, dtype=bool)).astype(np.uint8)  # as find_cells fills them
    if binary.all():  # no background pixel: the picture's edge is the background, as in split_cells
        distance = cv2.distanceTransform(np.pad(binary, 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
    else:
        distance = cv2.distanceTransform(binary, cv2.DIST_L2, 5)
    distance = cv2.GaussianBlur(distance, (0, 0), 1.0)
    size = 2 * int(round(separation)) + 1
    top = cv2.dilate(distance, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    return (distance >= top - 1e-4) & (distance >= depth) & (binary > 0)


def _concave_outline(region: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """The region enlarged :data:`_CONCAVE_UPSAMPLE` times and smoothed (bool), and its outer contour."""
    import cv2

    up = _CONCAVE_UPSAMPLE
    big = cv2.resize(region.astype(np.float32), None, fx=up, fy=up, interpolation=cv2.INTER_LINEAR)
    big = cv2.GaussianBlur(big, (0, 0), up / 2) > 0.5
    contours, _ = cv2.findContours(big.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    return big, (max(contours, key=cv2.contourArea) if contours else None)


def _concave_line(big: np.ndarray, contour: np.ndarray, unit: float) -> tuple[np.ndarray, np.ndarray] | None:
    """The cut (two end points on ``big``) through the region's notches, or ``None``: the pair of notches at least
    :data:`CONCAVE_DEPTH` deep whose joining line is shortest against their summed depth (within
    :data:`CONCAVE_PAIR_RATIO`), else the deepest lone notch (:data:`CONCAVE_SINGLE_DEPTH`) cut inwards,
    perpendicular to the hull edge that bridges it, until the line leaves the region. ``unit``: one red-cell
    diameter in ``big``'s pixels."""
    import cv2

    try:
        defects = cv2.convexityDefects(contour, cv2.convexHull(contour, returnPoints=False))
    except cv2.error:  # a self-touching outline
        return None
    if defects is None:
        return None
    points = contour[:, 0, :].astype(float)
    notches = [(points[far], depth / 256 / unit, points[start], points[end])
               for start, end, far, depth in defects.reshape(-1, 4) if depth / 256 / unit >= CONCAVE_DEPTH]
    best = None
    for i, (a, depth_a, _, _) in enumerate(notches):
        for b, depth_b, _, _ in notches[i + 1:]:
            ratio = float(np.hypot(*(a - b))) / unit / (depth_a + depth_b)
            if ratio <= CONCAVE_PAIR_RATIO and (best is None or ratio < best[0]):
                best = (ratio, a, b)
    if best is not None:
        return best[1], best[2]
    if not notches:
        return None
    far, depth, start, end = max(notches, key=lambda n: n[1])
    if depth < CONCAVE_SINGLE_DEPTH:
        return None
    normal = np.array([end[1] - start[1], start[0] - end[0]], dtype=float)
    normal /= np.linalg.norm(normal) + 1e-9
    if np.dot(far - (start + end) / 2, normal) < 0:
        normal = -normal
    height, width = big.shape
    point, steps = far.copy(), 0
    while steps < 10 * unit:  # walk inwards until leaving the region (past the notch's own edge pixels)
        row, col = int(round(point[1] + normal[1])), int(round(point[0] + normal[0]))
        if not (0 <= row < height and 0 <= col < width) or (steps > _CONCAVE_UPSAMPLE and not big[row, col]):
            break
        point, steps = point + normal, steps + 1
    return far - 2 * normal, point + 2 * normal


def concave_cut(region: np.ndarray, ruler: float, *, depth: int = 0) -> list[np.ndarray]:
    """Touching or overlapping cells that the watershed left as one region, cut apart at the notches of the
    region's outline (convexity defects): ``region`` (bool) is returned as its parts (bool, its shape), or whole.
    Only a region less convex than :data:`CONCAVE_MAX_SOLIDITY` and larger than :data:`CONCAVE_MIN_AREA` is
    looked at, so a single cell, however large, stays whole (it is round); each part is cut again (three levels).
    ``ruler``: the red-cell diameter in ``region``'s pixels, the unit of every size rule."""
    import cv2
    from scipy import ndimage

    region = np.asarray(region, dtype=bool)
    if depth >= 3 or region.sum() < CONCAVE_MIN_AREA * ruler ** 2:
        return [region]
    big, contour = _concave_outline(region)
    if contour is None or len(contour) < 8:
        return [region]
    hull = cv2.contourArea(cv2.convexHull(contour))
    if hull <= 0 or cv2.contourArea(contour) / hull >= CONCAVE_MAX_SOLIDITY:
        return [region]
    line = _concave_line(big, contour, ruler * _CONCAVE_UPSAMPLE)
    if line is None:
        return [region]
    cut = big.astype(np.uint8)
    cv2.line(cut, tuple(int(v) for v in line[0]), tuple(int(v) for v in line[1]), 0,
             thickness=max(2, _CONCAVE_UPSAMPLE // 2))
    count, pieces = cv2.connectedComponents(cut, connectivity=4)
    if count < 3:
        return [region]
    # back at the region's own pixels: each takes the piece under its centre, the cut line the nearest piece
    rows, cols = np.nonzero(region)
    up = _CONCAVE_UPSAMPLE
    labels = np.zeros(region.shape, np.int32)
    labels[rows, cols] = pieces[np.clip(rows * up + up // 2, 0, pieces.shape[0] - 1),
                                np.clip(cols * up + up // 2, 0, pieces.shape[1] - 1)]
    if (labels[rows, cols] == 0).any():
        nearest = ndimage.distance_transform_edt(labels == 0, return_distances=False, return_indices=True)
        labels = np.where(region, labels[nearest[0], nearest[1]], 0)
    parts = [labels == k for k in range(1, count) if (labels == k).any()]
    if len(parts) < 2 or min(int(p.sum()) for p in parts) < CONCAVE_MIN_PART * ruler ** 2:
        return [region]
    return [piece for part in parts for piece in concave_cut(part, ruler, depth=depth + 1)]


def _cut_concave(labels: np.ndarray, regions: list[dict], ruler: float) -> tuple[np.ndarray, list[dict]]:
    """The watershed's ``labels`` with every region that :func:`concave_cut` cuts replaced by its parts, and the
    regions (label, box, area, centroid, as :func:`leuk.segmentation.split_cells` gives them) renumbered."""
    pad = 3
    height, width = labels.shape
    out = np.zeros_like(labels)
    parts: list[tuple[int, int, np.ndarray]] = []
    for region in regions:
        x0, y0, x1, y1 = region["box"]
        top, left = max(0, y0 - pad), max(0, x0 - pad)
        window = labels[top:min(height, y1 + pad), left:min(width, x1 + pad)] == region["label"]
        parts += [(top, left, piece) for piece in concave_cut(np.pad(window, pad), ruler)]
    cells = []
    for top, left, piece in parts:
        rows, cols = np.nonzero(piece)
        rows, cols = rows + top - pad, cols + left - pad
        label = len(cells) + 1
        out[rows, cols] = label
        cells.append({"label": label, "area": int(rows.size), "centroid": (float(cols.mean()), float(rows.mean())),
                      "box": (int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1)})
    return out, cells


def find_cells(rgb: np.ndarray, mask: np.ndarray, *, peak_ratio: float | None = None,
               seeds: np.ndarray | None = None, concave_ruler: float | None = None) -> list[SmearCell]:
    """The white cells of a binary ``mask`` of smear ``rgb``: one per region of the watershed
    :func:`leuk.segmentation.split_cells` (touching cells split on the saddle of the distance map), numbered
    in reading order (``seeds``: one per cell, e.g. :func:`distance_peaks`, instead of the ratio; ``peak_ratio``
    ``None``: the watershed's own default, the value HybridCN-NAS records as ``watershed_peak_ratio``), with the reason
    when a cell must not be classified (too small, cut by the border,
    overlapping: judged from the contacts between regions and their shapes). ``concave_ruler`` (the red-cell
    diameter in ``mask``'s pixels) also cuts the regions the watershed left merged at the notches of their
    outline (:func:`concave_cut`); the parts of a cut touch, so the skip rules read them as neighbours."""
    from leuk.segmentation import split_cells

    mask = _fill_holes(np.asarray(mask, dtype=bool))
    height, width = mask.shape
    ratio = {} if peak_ratio is None else {"peak_ratio": peak_ratio}
    labels, regions = split_cells(mask, seeds=seeds, **ratio)
    if concave_ruler is not None:
        labels, regions = _cut_concave(labels, regions, concave_ruler)
    return _cells_of_labels(labels, regions)


def cells_from_boxes(mask: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> list[SmearCell]:
    """The white cells a detector boxed (:mod:`leuk.cell_detector`), one per box and with the box as given: each
    cell's mask is the colour ``mask`` inside the ellipse its box inscribes (a pixel two ellipses share goes to the
    nearer centre, in units of each box), or the ellipse itself where the colour rule holds under 30% of it (a pale
    cell). Skip reasons as :func:`find_cells` gives them."""
    mask = _fill_holes(np.asarray(mask, dtype=bool))
    height, width = mask.shape
    labels = np.zeros((height, width), np.int32)
    nearest = np.full((height, width), np.inf, np.float32)
    regions = []
    for number, (x0, y0, x1, y1) in enumerate(boxes, start=1):
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, max((x1 - x0) / 2, 0.5), max((y1 - y0) / 2, 0.5)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        reach = ((xx + 0.5 - cx) / rx) ** 2 + ((yy + 0.5 - cy) / ry) ** 2
        ellipse = reach <= 1.0
        if not ellipse.any():
            ellipse = np.ones_like(ellipse)
        own = ellipse & mask[y0:y1, x0:x1]
        if own.sum() < 0.3 * ellipse.sum():
            own = ellipse
        window = (slice(y0, y1), slice(x0, x1))
        closer = own & (reach < nearest[window])
        labels[window][closer] = number
        nearest[window][closer] = reach[closer]
        regions.append({"label": number, "box": (int(x0), int(y0), int(x1), int(y1))})
    for region in regions:
        rows, cols = np.nonzero(labels == region["label"])
        if rows.size == 0:  # wholly taken by stronger neighbours: keep its centre pixel
            x0, y0, x1, y1 = region["box"]
            rows, cols = np.array([min((y0 + y1) // 2, height - 1)]), np.array([min((x0 + x1) // 2, width - 1)])
            labels[rows, cols] = region["label"]
        region["area"] = int(rows.size)
        region["centroid"] = (float(cols.mean()), float(rows.mean()))
    return _cells_of_labels(labels, regions)


def _cells_of_labels(labels: np.ndarray, regions: list[dict]) -> list[SmearCell]:
    """One :class:`SmearCell` per region of ``labels`` (label, box, area, centroid), in reading order, with the
    reason when it must not be classified (too small, cut by the border, overlapping)."""
    height, width = labels.shape
    contacts = _contacts(labels)
    diameters = {r["label"]: float(np.sqrt(4 * r["area"] / np.pi)) for r in regions}
    largest = max(diameters.values(), default=0.0)
    touching: dict[int, list[int]] = {}
    for (a, b), length in contacts.items():
        touching.setdefault(a, []).append(b)
        touching.setdefault(b, []).append(a)
    cells = []
    for region in sorted(regions, key=lambda r: (r["box"][1] // 8, r["box"][0])):
        label = region["label"]
        diameter = diameters[label]
        x0, y0, x1, y1 = region["box"]
        own = labels == label
        skipped = None
        if diameter < MIN_CELL_DIAMETER or diameter < MIN_RELATIVE_DIAMETER * largest:
            skipped = f"{SKIP_SMALL} ({diameter:.0f} px across)"
        elif x0 <= 0 or y0 <= 0 or x1 >= width or y1 >= height:
            skipped = SKIP_BORDER
        else:
            overlap = [other for other in touching.get(label, [])
                       if contacts.get((min(label, other), max(label, other)), 0)
                       > OVERLAP_CONTACT * min(diameter, diameters[other])]
            solidity, _ = _shape(own)
            if overlap:
                skipped = f"{SKIP_OVERLAP} (shares a long edge with a neighbouring cell)"
            elif solidity < MIN_SOLIDITY and not touching.get(label):
                skipped = f"{SKIP_OVERLAP} (a clump: area {solidity:.2f} of its convex hull)"
        cells.append(SmearCell(number=len(cells) + 1, box=(x0, y0, x1, y1), area=int(region["area"]),
                               diameter=diameter, centroid=tuple(region["centroid"]), skipped=skipped, mask=own))
    return cells


def cut_out(rgb: np.ndarray, cell_mask: np.ndarray, scale: float, *, canvas: int = CNMC_CANVAS) -> np.ndarray:
    """The cell of ``cell_mask`` on black, scaled by ``scale`` and centred (by its centroid) on a ``canvas``
    square, as C-NMC cells are. The scale shrinks when the scaled cell would not fit (95% of the canvas)."""
    import cv2

    rows, cols = np.nonzero(cell_mask)
    if rows.size == 0:
        raise ValueError("empty cell mask")
    pad = 2
    y0, y1 = max(rows.min() - pad, 0), min(rows.max() + 1 + pad, cell_mask.shape[0])
    x0, x1 = max(cols.min() - pad, 0), min(cols.max() + 1 + pad, cell_mask.shape[1])
    patch = np.ascontiguousarray(rgb[y0:y1, x0:x1, :3], dtype=np.uint8)
    region = cell_mask[y0:y1, x0:x1].astype(np.float32)
    scale = min(float(scale), 0.95 * canvas / max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1))
    size = (max(1, int(round(patch.shape[1] * scale))), max(1, int(round(patch.shape[0] * scale))))
    method = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
    patch = cv2.resize(patch, size, interpolation=method)
    region = cv2.resize(region, size, interpolation=cv2.INTER_LINEAR) > 0.5
    out = np.zeros((canvas, canvas, 3), np.uint8)
    cy, cx = (rows.mean() - y0) * scale, (cols.mean() - x0) * scale
    top, left = int(round(canvas / 2 - cy)), int(round(canvas / 2 - cx))
    # the window of the canvas the patch lands on (clipped to the canvas)
    sy0, sx0 = max(0, -top), max(0, -left)
    dy0, dx0 = max(0, top), max(0, left)
    h = min(patch.shape[0] - sy0, canvas - dy0)
    w = min(patch.shape[1] - sx0, canvas - dx0)
    if h > 0 and w > 0:
        keep = region[sy0:sy0 + h, sx0:sx0 + w]
        out[dy0:dy0 + h, dx0:dx0 + w][keep] = patch[sy0:sy0 + h, sx0:sx0 + w][keep]
    return out
