"""Smear in, a call per white cell out (leuk.serving.cells), measured on the real Aria smears.

    python bench/bench_smear_cells.py --data ../shared/datasets/aria-real [--per-class 25] [--json F]
    python bench/bench_smear_cells.py --measure-cnmc ../shared/datasets/cnmc-real   # the C-NMC cell scale

Detection: the box-level reference ``assets/aria_reference/boxes.csv`` (104 real smears, every white cell boxed by
review, smudges noted; ``train/make_aria_boxes.py``). The learned white-cell detector (``auto``, ``detector``) was
trained on these boxes, so it is scored on the boxes its cross-validation folds drew, each smear by a detector that
never saw it (``assets/cell_detector/cv_boxes.csv``, ``train/train_cell_detector.py``); the colour rule and the
U-Net learned nothing from them and are run as shipped. A true cell is **found** when one detected cell (classified
or skipped) overlaps its box with IoU >= 0.5, each detection matching at most one true cell (greedy, largest IoU
first); recall = found / true cells, precision = matched / detections, where a detection on a smudge is not
counted. The count is exact when the detections counted equal the true cells; it is within doubt when it lies
between the sure cells and all cells (48 of the 104 smears hold a box the reviewer noted as unsure or a border
sliver: 88 of the 1,227 boxes). Figures per set: ``mask-review``
(80 smears; the finder's settings were chosen on them) and ``extra`` (24 smears never used to choose anything),
and per class. **Readings**: beside ``boxes.csv`` (the first reading: what the detector learned from and every choice
was made on), ``boxes_second.csv`` boxes the same smears again, blind to the first reading and to every finder, and
``boxes_consensus.csv`` holds what both drew with every disagreement decided by a third reader
(``train/make_aria_boxes.py``). ``readings_agree`` scores the readings against each other as if one were a finder
(how often two readers give a smear the same count: the ceiling a count-exact aim stands against); each finder is
also scored against the second reading and the consensus, with the share of smears whose count equals either
reading's and its count exact on the smears where the two readings agree. Timing: ``classify_smears`` end to end on
a reference smear as it is and resized to 2592 x 1944.

Content: every classified cell of a seeded sample of Aria smears outside the reference (``--per-class`` per class)
is labelled by its smear's class (Benign: hematogones, benign; Early, Pre, Pro: B-ALL) and the share called ALL is
reported per class, with the cell-level ROC AUC of p(ALL) for B-ALL against Benign smears (not every cell of a B-ALL
smear is a blast, so these labels are noisy). Aria has no patient ids: smears of one patient may sit in both classes'
samples, which does not matter here (nothing is trained), but the figures describe these smears, not patients.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
REFERENCE = REPO / "assets" / "aria_reference"
CLASSES = ("Benign", "Early", "Pre", "Pro")
IOU_FOUND = 0.5
#: Notes of the reference boxes that mark a white cell as doubtful: the reviewer was unsure, or it is a border sliver.
DOUBT = re.compile(r"unsure|sliver")
#: The large smear of the timing: a photo of a common 5-megapixel microscope camera.
LARGE = (2592, 1944)


def reference_smears(data: Path) -> list[dict]:
    """Every smear of the box-level reference (``assets/aria_reference/boxes.csv``): name, class, set
    (``mask-review``: the 80 smears the finders' settings were chosen on; ``extra``: the 24 chosen for their cell
    counts, never used to choose anything), path, white-cell boxes and smudge boxes."""
    sys.path.insert(0, str(REPO / "train"))
    from make_aria_boxes import read_boxes, reference_images

    with open(REFERENCE / "reviewed.csv", newline="", encoding="utf-8") as handle:
        tuned = {row["image"] for row in csv.DictReader(handle)}
    boxes = read_boxes()
    others = {reading: read_boxes(REFERENCE / file) for reading, file in READINGS.items() if (REFERENCE / file).is_file()}
    out = []
    for name in reference_images(data):
        out.append({"image": name, "class": name.split("/")[0], "set": "mask-review" if name in tuned else "extra",
                    "path": data / "Original" / name, **_reading(boxes.get(name, [])),
                    "readings": {reading: _reading(cells[name]) for reading, cells in others.items() if name in cells}})
    return out


def _reading(cells: list[dict]) -> dict:
    """One reading of a smear: white-cell boxes, smudge boxes and the number of doubtful white cells."""
    return {"white": [c["box"] for c in cells if c["kind"] == "white"],
            # cells the reviewers were unsure of, or border slivers: a count may fairly go either way on them
            "doubtful": sum(1 for c in cells if c["kind"] == "white" and DOUBT.search(c["note"])),
            "smudge": [c["box"] for c in cells if c["kind"] == "smudge"]}


#: The readings of the reference beside ``boxes.csv`` (the first, which the detector learned from and every choice was
#: made on): a second blind reading and the consensus of the two with their disagreements decided by a third reader.
READINGS = {"second": "boxes_second.csv", "consensus": "boxes_consensus.csv"}


def _read(smear: dict, reading: str) -> dict:
    return smear if reading == "first" else smear["readings"][reading]


def score_reading(smears: list[dict], truth: str, found: str) -> dict:
    """One reading of the reference scored as if it were a finder against another (``first``, ``second``,
    ``consensus``), overall, per set and per class: its precision is the share of its boxes the other reading also
    drew, its recall the share of the other's boxes it drew, its count exact the share of smears both count alike.
    Empty when a reading is missing."""
    rows = []
    for smear in smears:
        if any(r != "first" and r not in smear.get("readings", {}) for r in (truth, found)):
            continue
        t, f = _read(smear, truth), _read(smear, found)
        matched, counted = match(t["white"], f["white"], t["smudge"])
        rows.append({"set": smear["set"], "class": smear["class"], "true": len(t["white"]), "doubtful": t["doubtful"],
                     "counted": counted, "matched": matched, "shown": len(f["white"])})
    if not rows:
        return {}
    part = lambda key, values: {v: _figures([r for r in rows if r[key] == v]) for v in values
                                if any(r[key] == v for r in rows)}
    return {"all": _figures(rows), "per_set": part("set", ("mask-review", "extra")), "per_class": part("class", CLASSES)}


def reading_agreement(smears: list[dict]) -> dict:
    """How far the readings agree: the second scored against the first, and each against the consensus (what one
    careful reader scores against the decided reference: the most a finder can be asked for)."""
    pairs = {"second_against_first": ("first", "second"), "first_against_consensus": ("consensus", "first"),
             "second_against_consensus": ("consensus", "second")}
    out = {name: score_reading(smears, truth, found) for name, (truth, found) in pairs.items()}
    return {name: figures for name, figures in out.items() if figures}


def against_readings(smears: list[dict], found: dict[str, list]) -> dict:
    """A finder's boxes (``found``: by smear) scored against the second reading and the consensus, and its count
    against the two readings: the share of smears whose count equals either reading's, and its count exact on the
    smears where the two readings agree on the count (where the count is not a judgement call between readers)."""
    out: dict = {}
    for reading in READINGS:
        rows = []
        for smear in smears:
            if reading not in smear.get("readings", {}):
                continue
            truth = smear["readings"][reading]
            matched, counted = match(truth["white"], found[smear["image"]], truth["smudge"])
            rows.append({"set": smear["set"], "true": len(truth["white"]), "doubtful": truth["doubtful"],
                         "counted": counted, "matched": matched, "shown": len(found[smear["image"]])})
        if rows:
            out[reading] = {"all": _figures(rows),
                            "per_set": {s: _figures([r for r in rows if r["set"] == s]) for s in ("mask-review", "extra")
                                        if any(r["set"] == s for r in rows)}}
    either, agreed = [], []
    for smear in smears:
        if "second" not in smear.get("readings", {}):
            continue
        second = smear["readings"]["second"]
        _, counted_first = match(smear["white"], found[smear["image"]], smear["smudge"])
        _, counted_second = match(second["white"], found[smear["image"]], second["smudge"])
        either.append(counted_first == len(smear["white"]) or counted_second == len(second["white"]))
        if len(smear["white"]) == len(second["white"]):
            agreed.append(counted_first == len(smear["white"]))
    if either:
        out.update(count_equals_a_reading_share=round(float(np.mean(either)), 3), smears_readings_agree=len(agreed),
                   count_exact_share_where_readings_agree=round(float(np.mean(agreed)), 3) if agreed else None)
    return out


def match(truth: list, found: list, smudges: list = ()) -> tuple[int, int]:
    """(matches, detections counted): :func:`leuk.metrics.match_boxes` at IoU >= IOU_FOUND."""
    from leuk.metrics import match_boxes

    return match_boxes(truth, found, smudges, IOU_FOUND)


def cross_validated_boxes() -> dict[str, list[tuple[int, int, int, int]]]:
    """The boxes the white-cell detector drew on each reference smear when the smear's fold was held out of its
    training (``assets/cell_detector/cv_boxes.csv``, written by ``train/train_cell_detector.py``)."""
    from leuk.cell_detector import cell_detector_dir

    out: dict[str, list] = {}
    with open(cell_detector_dir() / "cv_boxes.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            boxes = out.setdefault(row["image"], [])
            if row["x0"] != "":
                boxes.append(tuple(int(row[k]) for k in ("x0", "y0", "x1", "y1")))
    return out


def _figures(rows: list[dict]) -> dict:
    true = sum(r["true"] for r in rows)
    counted = sum(r["counted"] for r in rows)
    matched = sum(r["matched"] for r in rows)
    return {"smears": len(rows), "true_cells": true, "detections": counted,
            "precision": round(matched / max(counted, 1), 3), "recall": round(matched / max(true, 1), 3),
            "count_exact_share": round(float(np.mean([r["counted"] == r["true"] for r in rows])), 3),
            # the count the apps' count line shows: every box, a box on a smudge included (the scoring above leaves
            # those out, neither right nor wrong)
            "count_exact_share_as_shown": round(float(np.mean([r["shown"] == r["true"] for r in rows])), 3),
            "count_within_one_share_as_shown": round(float(np.mean([abs(r["shown"] - r["true"]) <= 1 for r in rows])), 3),
            # the count lies between the sure cells and all cells: right unless a doubtful box is decided
            "count_within_doubt_share": round(float(np.mean(
                [r["true"] - r["doubtful"] <= r["counted"] <= r["true"] for r in rows])), 3),
            "count_error_mean_abs": round(float(np.mean([abs(r["counted"] - r["true"]) for r in rows])), 2),
            "count_error_median_relative": round(float(np.median(
                [abs(r["counted"] - r["true"]) / max(r["true"], 1) for r in rows])), 3)}


def detection(registry, smears: list[dict], segmenter: str, segmenter_model: str) -> dict:
    """Precision, recall and counting error of one cell finder on the box reference, overall, per set and per
    class, with a row per smear."""
    import cv2

    from leuk.serving.detection import find_white_cells

    # the learned detector was trained on these boxes: it is scored by cross-validation, each smear by the detector
    # of the fold that held it out, as the app runs it (train/train_cell_detector.py)
    learned = segmenter in ("auto", "detector")
    held_out = cross_validated_boxes() if learned else {}
    rows, found_boxes = [], {}
    for smear in smears:
        rgb = cv2.cvtColor(cv2.imread(str(smear["path"])), cv2.COLOR_BGR2RGB)
        if learned:
            boxes, ruler = held_out[smear["image"]], None
        else:
            found = find_white_cells(rgb, segmenter, segmenter_model=segmenter_model, registry=registry)
            boxes, ruler = [cell.box for cell in found.cells], found.ruler
        found_boxes[smear["image"]] = boxes
        matched, counted = match(smear["white"], boxes, smear["smudge"])
        rows.append({"image": smear["image"], "class": smear["class"], "set": smear["set"],
                     "true": len(smear["white"]), "doubtful": smear["doubtful"], "counted": counted, "matched": matched,
                     "shown": len(boxes), "red_cell_px": None if ruler is None else round(ruler.diameter, 1)})
    out = {"segmenter": segmenter, "scored": "5-fold cross-validation (out-of-fold boxes)" if learned
           else "as shipped (nothing learned from these boxes)", "all": _figures(rows)}
    out["per_set"] = {name: _figures([r for r in rows if r["set"] == name]) for name in ("mask-review", "extra")}
    out["per_class"] = {label: _figures([r for r in rows if r["class"] == label]) for label in CLASSES}
    readings = against_readings(smears, found_boxes)
    if readings:
        out["readings"] = readings
    out["per_smear"] = rows
    return out


def timing(registry, path: Path, sizes: list, repeats: int = 3) -> list[dict]:
    """End-to-end seconds of ``classify_smears`` (read, find, cut out, classify) on one smear at each size
    (``None``: as it is), the median of ``repeats`` runs after one warm-up."""
    import tempfile

    from PIL import Image

    from leuk.serving.cells import classify_smears

    out = []
    with tempfile.TemporaryDirectory() as scratch:
        for size in sizes:
            target = path
            if size is not None:
                target = Path(scratch) / f"smear_{size[0]}x{size[1]}.png"
                Image.open(path).convert("RGB").resize(size, Image.Resampling.BICUBIC).save(target)
            times, cells = [], 0
            for run in range(repeats + 1):
                start = time.perf_counter()
                result = classify_smears([str(target)], "demo:efficientnet-se", registry=registry)
                if run:
                    times.append(time.perf_counter() - start)
                cells = len(result.smears[0].cells)
            width, height = Image.open(target).size
            out.append({"smear": path.name, "size": f"{width}x{height}", "cells": cells,
                        "seconds_median": round(float(np.median(times)), 3)})
            print(json.dumps(out[-1]), flush=True)
    return out


def sample_smears(data: Path, per_class: int, exclude: set[str]) -> list[tuple[str, Path]]:
    rng = np.random.default_rng(2026)
    chosen = []
    for label in CLASSES:
        files = [p for p in sorted((data / "Original" / label).glob("*.jpg")) if f"{label}/{p.name}" not in exclude]
        for i in sorted(rng.choice(len(files), size=min(per_class, len(files)), replace=False)):
            chosen.append((label, files[i]))
    return chosen


def content(registry, smears: list[tuple[str, Path]], segmenter: str) -> dict:
    from sklearn.metrics import roc_auc_score

    from leuk.serving.cells import classify_smears

    per_class: dict[str, dict] = {}
    p_all, malignant, seconds = [], [], []
    for label, path in smears:
        start = time.perf_counter()
        smear = classify_smears([str(path)], "demo:efficientnet-se", segmenter=segmenter,
                                registry=registry).smears[0]
        seconds.append(time.perf_counter() - start)
        entry = per_class.setdefault(label, {"smears": 0, "smears_without_cells": 0, "cells": 0, "called_all": 0,
                                             "uncertain": 0, "out_of_distribution": 0, "smears_read_all": 0})
        entry["smears"] += 1
        entry["smears_without_cells"] += not smear.classified
        entry["smears_read_all"] += bool(smear.aggregate is not None and smear.aggregate.label == "all")
        for cell in smear.classified:
            entry["cells"] += 1
            entry["called_all"] += cell.result.label == "all"
            entry["uncertain"] += cell.result.uncertain
            entry["out_of_distribution"] += cell.result.verdict.out_of_distribution
            p_all.append(cell.result.probabilities["all"])
            malignant.append(label != "Benign")
    for entry in per_class.values():
        entry["share_called_all"] = round(entry["called_all"] / max(entry["cells"], 1), 3)
        entry["share_uncertain"] = round(entry["uncertain"] / max(entry["cells"], 1), 3)
        entry["share_out_of_distribution"] = round(entry["out_of_distribution"] / max(entry["cells"], 1), 3)
    auc = roc_auc_score(malignant, p_all) if len(set(malignant)) == 2 else None
    return {"segmenter": segmenter, "per_class": per_class, "cells": len(p_all),
            "cell_auc_ball_vs_benign": None if auc is None else round(float(auc), 3),
            "seconds_per_smear_median": round(float(np.median(seconds)), 3)}


def measure_cnmc(root: Path) -> dict:
    """Median equivalent diameter of the non-black region of every C-NMC cell (the constant of leuk.serving.cells)."""
    import cv2
    from PIL import Image

    diameters: dict[str, list[float]] = {}
    for path in sorted(root.rglob("*.png")) + sorted(root.rglob("*.bmp")):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        count, _, stats, _ = cv2.connectedComponentsWithStats((rgb.max(axis=2) > 10).astype(np.uint8))
        if count < 2:
            continue
        area = stats[1:, 4].max()
        diameters.setdefault(path.parent.name, []).append(float(np.sqrt(4 * area / np.pi)))
    every = [d for values in diameters.values() for d in values]
    return {"cells": len(every), "median_diameter": round(float(np.median(every)), 1),
            "p5_p95": [round(float(v), 1) for v in np.percentile(every, [5, 95])],
            "per_class_median": {k: round(float(np.median(v)), 1) for k, v in diameters.items()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="Aria folder (holds Original/<class>/)")
    parser.add_argument("--per-class", type=int, default=25, help="smears per class for the content figures")
    parser.add_argument("--segmenters", default="detector,unet,classical")
    parser.add_argument("--segmenter-model", default="demo:hybridcn-nas-lite")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "smear_cells.json")
    parser.add_argument("--measure-cnmc", type=Path, metavar="CNMC_ROOT")
    parser.add_argument("--timing-only", action="store_true", help="detection and timing, no content figures")
    args = parser.parse_args(argv)
    if args.measure_cnmc:
        print(json.dumps(measure_cnmc(args.measure_cnmc), indent=2))
        return 0
    if args.data is None:
        parser.error("--data is required")
    from leuk.hub import load_model
    from leuk.serving import ModelRegistry

    registry = ModelRegistry(["demo:efficientnet-se", args.segmenter_model], device="cpu")
    segmenters = [s.strip() for s in args.segmenters.split(",") if s.strip()]
    reference = reference_smears(args.data)
    sample = sample_smears(args.data, args.per_class, {smear["image"] for smear in reference})
    loaded = load_model(args.segmenter_model)
    results = {"date": time.strftime("%Y-%m-%d"), "machine": "CPU", "segmenter_model": args.segmenter_model,
               "segmenter_model_path": str(loaded.path), "cell_model": "demo:efficientnet-se",
               "iou_found": IOU_FOUND, "detection": [], "content": []}
    agreement = reading_agreement(reference)
    if agreement:
        results["readings_agree"] = agreement
        print(json.dumps({"readings_agree": {name: figures["all"] for name, figures in agreement.items()}}), flush=True)
    for segmenter in segmenters:
        figures = detection(registry, reference, segmenter, args.segmenter_model)
        results["detection"].append(figures)
        print(json.dumps({k: v for k, v in figures.items() if k != "per_smear"}), flush=True)
    results["timing"] = timing(registry, reference[0]["path"], [None, LARGE])
    if args.timing_only:
        results.pop("content")
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        return 0
    for segmenter in segmenters:
        figures = content(registry, sample, segmenter)
        results["content"].append(figures)
        print(json.dumps(figures), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"-> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
