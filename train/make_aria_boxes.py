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

**Second reading and consensus.** ``assets/aria_reference/boxes_second.csv`` (same columns): the same 104 smears
boxed again by other readers from freshly rendered sheets (the same candidates), blind to the first reading and to
every detector's boxes. Where the two readings disagree (a box one drew and the other did not, at IoU >= 0.5 for
white cells, 0.3 for smudges), a third reader decides, from sheets that show the agreed cells thin and the disputed
boxes numbered in an order that does not say which reading drew them; the decisions (``adjudication.csv``:
``image, item, decision, x0, y0, x1, y1, note``; decision ``white``, ``smudge`` or ``none``, a box only where
redrawn, item ``add`` for a cell both missed) and the two readings give ``boxes_consensus.csv``. The first reading
stays the one the detector learns from and every choice is made on; ``bench/bench_smear_cells.py`` scores the
readings against each other and every finder against all three::

    python train/make_aria_boxes.py disputes --data ../shared/datasets/aria-real --out /tmp/aria_disputes
    python train/make_aria_boxes.py consensus      # boxes.csv + boxes_second.csv + adjudication.csv -> consensus
    python train/make_aria_boxes.py check --boxes assets/aria_reference/boxes_consensus.csv

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
#: The second, blind reading of the same smears (not used to train or choose anything).
SECOND = REFERENCE / "boxes_second.csv"
#: A third reader's decision on every box the two readings disagree on (``disputes`` renders the sheets).
DECISIONS = REFERENCE / "adjudication.csv"
DECISION_COLUMNS = ("image", "item", "decision", "x0", "y0", "x1", "y1", "note")
DECISION_KINDS = ("white", "smudge", "none")
#: The two readings with their disagreements decided (``consensus`` writes it from the three files above).
CONSENSUS = REFERENCE / "boxes_consensus.csv"
#: Two readings' boxes are the same white cell at IoU >= 0.5 (the scores' own rule), the same smudge at >= 0.3.
SAME_WHITE = 0.5
SAME_SMUDGE = 0.3
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


def _pairs(first: list[dict], second: list[dict], iou: float) -> tuple[list[tuple[dict, dict]], list[dict], list[dict]]:
    """Greedy one-to-one pairs of two readings' cells (:func:`leuk.metrics.match_pairs`), then what each side has
    left."""
    from leuk.metrics import match_pairs

    pairs = match_pairs([c["box"] for c in first], [c["box"] for c in second], iou)
    paired_first, paired_second = {i for i, _ in pairs}, {j for _, j in pairs}
    return ([(first[i], second[j]) for i, j in pairs], [a for i, a in enumerate(first) if i not in paired_first],
            [b for j, b in enumerate(second) if j not in paired_second])


def disputes(name: str, first: list[dict], second: list[dict]) -> tuple[list[dict], list[dict]]:
    """(agreed, disputed) cells of one smear from its two readings. Agreed: a white cell both drew (IoU >=
    :data:`SAME_WHITE`) or a smudge both drew (IoU >= :data:`SAME_SMUDGE`), with the mean of the two boxes. Disputed:
    every other box of either reading, in an order shuffled by the smear's name, so that the item numbers do not say
    which reading drew a box (the third reader must not weigh one reader above the other)."""
    import zlib

    agreed, disputed = [], []
    for kind, iou in (("white", SAME_WHITE), ("smudge", SAME_SMUDGE)):
        pairs, only_first, only_second = _pairs([c for c in first if c["kind"] == kind],
                                                [c for c in second if c["kind"] == kind], iou)
        for a, b in pairs:
            box = tuple(int(round((u + v) / 2)) for u, v in zip(a["box"], b["box"]))
            note = "; ".join(n for n in (a["note"], b["note"]) if n)
            agreed.append({"box": box, "kind": kind, "note": note})
        disputed += only_first + only_second
    disputed.sort(key=lambda c: (c["box"], c["kind"]))
    order = np.random.default_rng(zlib.crc32(name.encode())).permutation(len(disputed))
    return agreed, [disputed[i] for i in order]


def dispute_sheet(rgb: np.ndarray, agreed: list[dict], items: list[dict], title: str):
    """The plain smear with its grid beside the same with the agreed cells (thin: white cells grey-green, smudges
    grey) and the disputed boxes numbered (thick: orange where a reader called it a white cell, magenta a smudge)."""
    from PIL import ImageDraw

    out = sheet(rgb, [], title)
    draw = ImageDraw.Draw(out)
    margin, left = 28, 28 + SIDE * ZOOM + 28
    rect = lambda b: [left + b[0] * ZOOM, margin + b[1] * ZOOM, left + b[2] * ZOOM - 1, margin + b[3] * ZOOM - 1]
    for cell in agreed:
        draw.rectangle(rect(cell["box"]), outline=(90, 160, 90) if cell["kind"] == "white" else (140, 140, 140), width=1)
    for number, cell in enumerate(items, 1):
        colour = (255, 120, 0) if cell["kind"] == "white" else (220, 0, 200)
        draw.rectangle(rect(cell["box"]), outline=colour, width=3)
        x, y = left + cell["box"][0] * ZOOM + 3, margin + cell["box"][1] * ZOOM + 2
        draw.rectangle([x - 1, y - 1, x + 8 * len(str(number)), y + 11], fill=(255, 255, 255))
        draw.text((x, y), str(number), fill=(0, 0, 0))
    return out


def render_disputes(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    first, second = read_boxes(BOXES), read_boxes(SECOND)
    shown = 0
    for index, name in enumerate(sorted(first)):
        agreed, items = disputes(name, first[name], second.get(name, []))
        if not items:
            continue
        shown += 1
        stem = f"{index:03d}_{name.replace('/', '_').removesuffix('.jpg')}"
        rgb = read_rgb(args.data / "Original" / name)
        dispute_sheet(rgb, agreed, items, f"{name}: {len(agreed)} agreed (thin), {len(items)} disputed (numbered); "
                                          f"grid every {GRID} px").save(args.out / f"{stem}.png")
        with open(args.out / f"{stem}.txt", "w", encoding="utf-8") as handle:
            handle.write(f"{name}\n" + "".join(f"item {n}: {c['box'][0]} {c['box'][1]} {c['box'][2]} {c['box'][3]} "
                                               f"called {c['kind']}\n" for n, c in enumerate(items, 1)))
    print(f"{shown} smears with disputed boxes: sheets in {args.out}")
    return 0


def consensus_rows(first: dict[str, list[dict]], second: dict[str, list[dict]],
                   decisions: dict[str, list[dict]]) -> list[dict]:
    """The consensus reference as rows of ``boxes.csv``: the agreed cells, and each disputed box as the third reader
    decided (``white``/``smudge``, with the box redrawn where given, or ``none``: not a cell, or a second box of a cell
    already kept), plus the cells the third reader added (item ``add``). A smear with no cell left gets a ``none``
    row. Raises ``ValueError`` when a disputed box has no decision."""
    rows = []
    for name in sorted(first):
        agreed, items = disputes(name, first[name], second.get(name, []))
        decided = {d["item"]: d for d in decisions.get(name, [])}
        undecided = [str(n) for n in range(1, len(items) + 1) if str(n) not in decided]
        if undecided:
            raise ValueError(f"{name}: no decision on disputed item(s) {', '.join(undecided)}")
        cells = [dict(c, source="both readings") for c in agreed]
        for number, item in enumerate(items, 1):
            d = decided[str(number)]
            if d["decision"] != "none":
                box = tuple(int(d[k]) for k in ("x0", "y0", "x1", "y1")) if d["x0"] != "" else item["box"]
                cells.append({"box": box, "kind": d["decision"], "note": d["note"],
                              "source": f"one reading, decided (item {number})"})
        cells += [{"box": tuple(int(d[k]) for k in ("x0", "y0", "x1", "y1")), "kind": d["decision"], "note": d["note"],
                   "source": "added by the third reader"} for d in decisions.get(name, []) if d["item"] == "add"]
        if not cells:
            rows.append({"image": name, "x0": "", "y0": "", "x1": "", "y1": "", "kind": "none", "source": "", "note": ""})
        for c in sorted(cells, key=lambda c: (c["box"][1], c["box"][0])):
            rows.append({"image": name, **dict(zip(("x0", "y0", "x1", "y1"), c["box"])), "kind": c["kind"],
                         "source": c["source"], "note": c["note"]})
    return rows


def read_decisions(path: Path = DECISIONS) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in _rows(path):
        if row["decision"] not in DECISION_KINDS:
            raise ValueError(f"{path.name}: {row['image']} item {row['item']}: unknown decision {row['decision']!r}")
        out.setdefault(row["image"], []).append(row)
    return out


def write_consensus(args: argparse.Namespace) -> int:
    rows = consensus_rows(read_boxes(BOXES), read_boxes(SECOND), read_decisions(args.decisions))
    with open(args.out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    print(f"{sum(r['kind'] == 'white' for r in rows)} white cells, {sum(r['kind'] == 'smudge' for r in rows)} smudges "
          f"-> {args.out}")
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


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def check(args: argparse.Namespace) -> int:
    problems = []
    if not Path(args.boxes).is_file():
        print(f"no such file: {args.boxes}")
        return 1
    with open(args.boxes, newline="", encoding="utf-8") as handle:
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
    if Path(args.boxes).resolve() != BOXES.resolve():  # a second reading covers exactly the first one's smears
        first = {row["image"] for row in _rows(BOXES)}
        problems += [f"not in {BOXES.name}: {name}" for name in sorted({row["image"] for row in rows} - first)]
        problems += [f"not read: {name}" for name in sorted(first - {row["image"] for row in rows})]
    boxes = read_boxes(args.boxes)
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
    two = sub.add_parser("check", help="validate boxes.csv (or a second reading of it)")
    two.add_argument("--boxes", type=Path, default=BOXES, help="the file to check (default: boxes.csv)")
    two.add_argument("--data", type=Path, default=None, help="also check every reference smear was reviewed")
    three = sub.add_parser("disputes", help="sheets of the boxes the two readings disagree on, for a third reader")
    three.add_argument("--data", type=Path, required=True, help="the aria-real folder (holds Original/)")
    three.add_argument("--out", type=Path, required=True, help="scratch folder for the sheets (never the dataset)")
    four = sub.add_parser("consensus", help="write boxes_consensus.csv from both readings and the decisions")
    four.add_argument("--decisions", type=Path, default=DECISIONS)
    four.add_argument("--out", type=Path, default=CONSENSUS)
    args = parser.parse_args(argv)
    if args.command in ("render", "disputes") and "datasets" in args.out.resolve().parts:
        parser.error("--out must not be inside a datasets folder (it is read-only)")
    if args.command == "render":
        return render(args)
    if args.command == "disputes":
        return render_disputes(args)
    if args.command == "consensus":
        return write_consensus(args)
    return check(args)


if __name__ == "__main__":
    raise SystemExit(main())
