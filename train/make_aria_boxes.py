"""The box-level white-cell reference of real Aria smears: every white cell boxed by review, red cells and platelets
not, smudges noted. Only boxes are committed (``assets/aria_reference/boxes.csv``), never an Aria pixel.

The reference must not be made by the detector it scores, so the review sheets show candidates from the two
*older* cell finders (the U-Net of a HybridCN-NAS folder and :func:`leuk.segmentation.classical_cell_mask`),
numbered, beside the plain smear with a coordinate grid; the reviewer keeps, corrects or rejects each candidate
and draws the white cells both missed::

    # 1. review sheets (PNG) and candidate lists (TXT) for the reference smears, in a scratch folder
    python train/make_aria_boxes.py render --data ../shared/datasets/aria-real --out /tmp/aria_box_sheets
    # 2. after looking at every sheet, write the rows into assets/aria_reference/boxes.csv (columns below)
    # 3. check the file: every reference smear reviewed, boxes inside the image, kinds known
    python train/make_aria_boxes.py check

``boxes.csv`` columns: ``image`` (``Class/file.jpg``), ``x0, y0, x1, y1`` (pixels of the 224 x 224 smear, x1/y1
exclusive), ``kind`` (``white``: a white cell, also when cut by the border; ``smudge``: a smudge/broken cell,
ignored by the scores; ``none``: a smear with no white cell, one row with empty box), ``source`` (``candidate N``
when a candidate was kept as drawn or corrected, ``drawn`` when the reviewer placed it), ``note``.

The reference smears are the 80 smears of ``reviewed.csv`` (the mask review, rejects included: a box review does
not depend on the mask) and 6 more per class (seeded) chosen for their number of white cells by the colour rule:
two with the fewest, two near the middle, two with the most, so that 1, few and many cells are all there.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
REFERENCE = REPO / "assets" / "aria_reference"
BOXES = REFERENCE / "boxes.csv"
CLASSES = ("Benign", "Early", "Pre", "Pro")
KINDS = ("white", "smudge", "none")
COLUMNS = ("image", "x0", "y0", "x1", "y1", "kind", "source", "note")
EXTRA_SEED = 27
EXTRA_POOL = 40
SIDE = 224
ZOOM = 3
GRID = 16


def reference_images(data: Path) -> list[str]:
    """``Class/file.jpg`` of every reference smear: the mask-review smears, then the extra ones per class."""
    with open(REFERENCE / "reviewed.csv", newline="", encoding="utf-8") as handle:
        names = [row["image"] for row in csv.DictReader(handle)]
    return names + extra_images(data, set(names))


def extra_images(data: Path, taken: set[str]) -> list[str]:
    """Per class, from a seeded pool of ``EXTRA_POOL`` smears outside ``taken``: the two with the fewest white cells
    by the colour rule, the two nearest the pool's median, the two with the most."""
    from leuk.segmentation import classical_cell_mask
    from leuk.serving.smear_geometry import find_cells

    rng = np.random.default_rng(EXTRA_SEED)
    chosen = []
    for label in CLASSES:
        files = [f"{label}/{path.name}" for path in sorted((data / "Original" / label).glob("*.jpg"))]
        files = [name for name in files if name not in taken]
        pool = [files[i] for i in sorted(rng.choice(len(files), size=min(EXTRA_POOL, len(files)), replace=False))]
        counts = []
        for name in pool:
            rgb = read_rgb(data / "Original" / name)
            counts.append(len(find_cells(rgb, classical_cell_mask(rgb))))
        order = list(np.argsort(counts, kind="stable"))
        middle = len(order) // 2
        picks = order[:2] + order[middle - 1:middle + 1] + order[-2:]
        chosen += [pool[i] for i in picks]
    return chosen


def read_rgb(path: Path) -> np.ndarray:
    from leuk.io import read_image

    return np.asarray(read_image(path), dtype=np.uint8)


def candidates(rgb: np.ndarray, segmenter_model: str | None) -> list[tuple[int, int, int, int]]:
    """Boxes of the cells the two older finders find, as the review sheets showed them (the U-Net and the colour
    rule on the smear at its own scale, touching cells split by the watershed's peak ratio 0.7); a box found by
    both is listed once (IoU >= 0.6). Not the detector the reference scores (:mod:`leuk.serving.detection`)."""
    from leuk.hub.loader import load_model
    from leuk.metrics import box_iou
    from leuk.segmentation import classical_cell_mask
    from leuk.serving.detection import unet_mask
    from leuk.serving.smear_geometry import find_cells

    boxes = [cell.box for cell in find_cells(rgb, classical_cell_mask(rgb))]
    if segmenter_model:
        loaded = _LOADED.get(segmenter_model) or _LOADED.setdefault(segmenter_model, load_model(segmenter_model))
        boxes += [cell.box for cell in find_cells(rgb, unet_mask(loaded, rgb), peak_ratio=0.7)]
    kept: list[tuple[int, int, int, int]] = []
    for box in boxes:
        if all(box_iou(box, other) < 0.6 for other in kept):
            kept.append(tuple(int(v) for v in box))
    return sorted(kept, key=lambda b: (b[1] // 16, b[0]))


_LOADED: dict = {}


def sheet(rgb: np.ndarray, boxes: list[tuple[int, int, int, int]], title: str):
    """Two panels at ``ZOOM`` x: the plain smear with a labelled grid, and the same with the numbered candidates."""
    from PIL import Image, ImageDraw

    big = Image.fromarray(rgb).resize((SIDE * ZOOM, SIDE * ZOOM), Image.Resampling.BICUBIC)
    margin = 28
    out = Image.new("RGB", (2 * SIDE * ZOOM + 3 * margin, SIDE * ZOOM + 2 * margin), "white")
    draw = ImageDraw.Draw(out)
    draw.text((margin, 4), title, fill="black")
    for panel in range(2):
        left = margin + panel * (SIDE * ZOOM + margin)
        out.paste(big, (left, margin))
        for value in range(0, SIDE + 1, GRID):
            v = value * ZOOM
            colour = (60, 60, 60) if value % 64 == 0 else (150, 150, 150)
            draw.line([(left + v, margin), (left + v, margin + SIDE * ZOOM)], fill=colour, width=1)
            draw.line([(left, margin + v), (left + SIDE * ZOOM, margin + v)], fill=colour, width=1)
            draw.text((left + v - 6, margin + SIDE * ZOOM + 4), str(value), fill="black")
            if panel == 0:
                draw.text((2, margin + v - 5), str(value), fill="black")
        if panel == 1:
            for number, (x0, y0, x1, y1) in enumerate(boxes, 1):
                draw.rectangle([left + x0 * ZOOM, margin + y0 * ZOOM, left + x1 * ZOOM - 1, margin + y1 * ZOOM - 1],
                               outline=(0, 200, 0), width=2)
                draw.text((left + x0 * ZOOM + 3, margin + y0 * ZOOM + 2), str(number), fill=(0, 90, 0))
    return out


def render(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    names = reference_images(args.data)
    with open(args.out / "smears.txt", "w", encoding="utf-8") as listing:
        listing.write("\n".join(names) + "\n")
    for index, name in enumerate(names):
        rgb = read_rgb(args.data / "Original" / name)
        boxes = candidates(rgb, args.segmenter)
        stem = f"{index:03d}_{name.replace('/', '_').removesuffix('.jpg')}"
        sheet(rgb, boxes, f"{index:03d}  {name}  ({len(boxes)} candidates; grid every {GRID} px)").save(
            args.out / f"{stem}.png")
        with open(args.out / f"{stem}.txt", "w", encoding="utf-8") as handle:
            handle.write(f"{name}\n" + "".join(f"candidate {n}: {b[0]} {b[1]} {b[2]} {b[3]}\n"
                                               for n, b in enumerate(boxes, 1)))
        print(f"{index + 1}/{len(names)} {name}: {len(boxes)} candidates", flush=True)
    print(f"sheets in {args.out}")
    return 0


def read_boxes(path: Path = BOXES) -> dict[str, list[dict]]:
    """The reviewed boxes by smear (every reference smear present; a smear with no white cell maps to [])."""
    out: dict[str, list[dict]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            cells = out.setdefault(row["image"], [])
            if row["kind"] != "none":
                cells.append({"box": tuple(int(row[k]) for k in ("x0", "y0", "x1", "y1")), "kind": row["kind"],
                              "note": row["note"]})
    return out


def check(args: argparse.Namespace) -> int:
    problems = []
    with open(BOXES, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            problems.append(f"columns {reader.fieldnames} are not {COLUMNS}")
        rows = list(reader)
    for number, row in enumerate(rows, 2):
        if row["kind"] not in KINDS:
            problems.append(f"line {number}: unknown kind {row['kind']!r}")
        elif row["kind"] != "none":
            x0, y0, x1, y1 = (int(row[k]) for k in ("x0", "y0", "x1", "y1"))
            if not (0 <= x0 < x1 <= SIDE and 0 <= y0 < y1 <= SIDE):
                problems.append(f"line {number}: box {x0, y0, x1, y1} is not inside the {SIDE} px smear")
    if args.data is not None:
        missing = sorted(set(reference_images(args.data)) - {row["image"] for row in rows})
        problems += [f"not reviewed: {name}" for name in missing]
    boxes = read_boxes()
    white = sum(cell["kind"] == "white" for cells in boxes.values() for cell in cells)
    print(f"{len(boxes)} smears, {white} white cells, "
          f"{sum(cell['kind'] == 'smudge' for cells in boxes.values() for cell in cells)} smudges")
    for problem in problems:
        print(problem)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("render", help="review sheets and candidate lists")
    one.add_argument("--data", type=Path, required=True, help="the aria-real folder (holds Original/)")
    one.add_argument("--out", type=Path, required=True, help="scratch folder for the sheets (never the dataset)")
    one.add_argument("--segmenter", default="demo:hybridcn-nas-lite", help="HybridCN-NAS model whose U-Net proposes")
    two = sub.add_parser("check", help="validate boxes.csv")
    two.add_argument("--data", type=Path, default=None, help="also check every reference smear was reviewed")
    args = parser.parse_args(argv)
    if args.command == "render":
        if "datasets" in args.out.resolve().parts:
            parser.error("--out must not be inside a datasets folder (it is read-only)")
        return render(args)
    return check(args)


if __name__ == "__main__":
    raise SystemExit(main())
