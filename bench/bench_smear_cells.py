"""Smear in, a call per white cell out (leuk.serving.cells), measured on the real Aria smears.

    python bench/bench_smear_cells.py --data ../shared/datasets/aria-real [--per-class 25] [--json F]
    python bench/bench_smear_cells.py --measure-cnmc ../shared/datasets/cnmc-real   # the C-NMC cell scale

Detection: the ground-truth cells are the connected components of the reviewed reference masks
(``assets/aria_reference``, 47 real smears, all white cells outlined). A true cell is **found** when one detected
cell (classified or skipped) overlaps it with IoU >= 0.5, each detection matching at most one true cell (greedy,
largest IoU first); recall = found / true cells, precision = matched detections / detections. Touching cells are
one component in the reference, so a correct split of two touching cells counts as a miss and two false
detections: the figures are a lower bound where cells touch.

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
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
REFERENCE = REPO / "assets" / "aria_reference"
from leuk.experiments.aria_protocols import reference_mask_path  # noqa: E402
CLASSES = ("Benign", "Early", "Pre", "Pro")
IOU_FOUND = 0.5


def reference_smears(data: Path) -> list[tuple[str, Path, np.ndarray]]:
    """(name, image path, reference mask) of every accepted reviewed smear."""
    from PIL import Image

    with open(REFERENCE / "reviewed.csv", newline="", encoding="utf-8") as handle:
        rows = [row for row in csv.DictReader(handle) if row["source"] in ("classical", "unet")]
    out = []
    for row in rows:
        label, name = row["image"].split("/")
        mask = np.asarray(Image.open(reference_mask_path(REFERENCE, f"{label}/{name}")).convert("L")) > 127
        out.append((row["image"], data / "Original" / row["image"], mask))
    return out


def true_cells(mask: np.ndarray) -> list[np.ndarray]:
    import cv2

    count, components = cv2.connectedComponents(mask.astype(np.uint8))
    return [components == k for k in range(1, count)]


def match(truth: list[np.ndarray], found: list[np.ndarray]) -> int:
    """Greedy one-to-one matches with IoU >= IOU_FOUND, largest IoU first."""
    pairs = []
    for i, t in enumerate(truth):
        for j, f in enumerate(found):
            inter = np.logical_and(t, f).sum()
            if inter:
                pairs.append((inter / np.logical_or(t, f).sum(), i, j))
    used_t, used_f, matched = set(), set(), 0
    for iou, i, j in sorted(pairs, reverse=True):
        if iou < IOU_FOUND:
            break
        if i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
            matched += 1
    return matched


def detection(registry, smears, segmenter: str) -> dict:
    from leuk.serving.cells import classify_smears

    n_true = n_found = n_det = n_matched = n_classified = 0
    seconds, found_by = [], {}
    for name, path, mask in smears:
        start = time.perf_counter()
        result = classify_smears([str(path)], "demo:efficientnet-se", segmenter=segmenter, registry=registry)
        seconds.append(time.perf_counter() - start)
        smear = result.smears[0]
        truth = true_cells(mask)
        cells = [cell.mask for cell in smear.cells]
        matched = match(truth, cells)
        n_true += len(truth)
        n_det += len(cells)
        n_matched += matched
        n_classified += len(smear.classified)
        key = smear.segmenter.split(",")[0].split(" (")[0]
        found_by[key] = found_by.get(key, 0) + 1
    return {"segmenter": segmenter, "smears": len(smears), "true_cells": n_true, "detections": n_det,
            "recall": round(n_matched / max(n_true, 1), 3), "precision": round(n_matched / max(n_det, 1), 3),
            "classified_cells": n_classified, "found_by": found_by,
            "seconds_per_smear_median": round(float(np.median(seconds)), 3)}


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
    parser.add_argument("--segmenters", default="auto,unet,classical")
    parser.add_argument("--segmenter-model", default="demo:hybridcn-nas-lite")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "smear_cells.json")
    parser.add_argument("--measure-cnmc", type=Path, metavar="CNMC_ROOT")
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
    sample = sample_smears(args.data, args.per_class, {name for name, _, _ in reference})
    loaded = load_model(args.segmenter_model)
    results = {"date": time.strftime("%Y-%m-%d"), "machine": "CPU", "segmenter_model": args.segmenter_model,
               "segmenter_model_path": str(loaded.path), "cell_model": "demo:efficientnet-se",
               "iou_found": IOU_FOUND, "detection": [], "content": []}
    for segmenter in segmenters:
        figures = detection(registry, reference, segmenter)
        results["detection"].append(figures)
        print(json.dumps(figures), flush=True)
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
