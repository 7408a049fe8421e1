"""What reading the white-cell detector's heatmap differently can do for its count (issue 27), measured by the same
5-fold cross-validation as ``train/train_cell_detector.py``: every setting is chosen on a fold's training smears and
scored on its held-out smears, against the consensus reading::

    python bench/count_levers.py --data ../shared/datasets/aria-real     # ~3 min with the folds' networks cached

It reads the folds' networks from ``runs/cell-detector`` (left there by the training script; without them it trains
them, ~1.5 h on a 2-core CPU) and tries two levers that need no retraining:

- **Decoding**: the window within which a heatmap peak must be the highest (the shipped 5 heatmap pixels, or 3, 7,
  9), box suppression between peaks (none, as shipped, or IoU above 0.5 or 0.3), and the threshold, all chosen
  together on each fold's training smears by the count exact there (ties: precision plus recall), as the shipped
  threshold is.
- **A smudge flag** (a random forest, boosted trees, a logistic regression; none shipped): a classifier of a box's
  colours (:func:`box_features`: Lab lightness percentiles, the share of dark nuclear pixels, saturation, texture,
  size, each against the smear's own median) trained on the consensus's white-cell and smudge boxes of each fold's
  training smears, its cut chosen by an inner cross-validation over those folds (most smudges flagged minus white
  cells flagged), and applied to the held-out smears' detections: a flagged box leaves the count. How firmly each
  classifier chooses is measured too: its cut and flags again with the features moved by noise of 1e-5.

Both are scored two ways: as scored (a box on a consensus smudge neither right nor wrong, the acceptance line's count)
and as shown (every box counted, as the apps' count line does). Results: ``bench/results/count_levers.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "train"))

WINDOWS = (3, 5, 7, 9)
SUPPRESS = (0.0, 0.5, 0.3)
SHIPPED = (5, 0.0)
#: What :func:`box_features` returns, in order (Lab as OpenCV scales it, against the smear's median).
FEATURES = ("log_area_red_cells", "aspect", "lightness_p5", "lightness_p25", "lightness_p50", "a_p95", "b_p5",
            "share_darker_40", "share_darker_60", "lightness_std", "saturation_p95", "log_texture", "share_violet")
#: Cuts on the smudge probability the cross-validation chooses from.
CUTS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)


def candidates(output, window: int, size_unit: float, shape: tuple[int, int], floor: float = 0.15) -> list:
    """(score, box) of every heatmap peak above ``floor`` that is the highest within ``window``, strongest first
    (:func:`leuk.cell_detector.decode`), so that any threshold above ``floor`` can be tried without decoding again."""
    from leuk.cell_detector import decode

    return [(d.score, d.box) for d in decode(output, floor, size_unit, shape, window=window)]


def keep(found: list, threshold: float, suppress: float) -> list:
    """The boxes above ``threshold``, strongest first, each dropped that overlaps a kept one by IoU above
    ``suppress`` (0: none dropped)."""
    from leuk.metrics import box_iou

    kept: list = []
    for score, box in found:
        if score <= threshold:
            break
        if suppress and any(box_iou(box, other) > suppress for other in kept):
            continue
        kept.append(box)
    return kept


def in_smear_pixels(boxes: list, factor: float, shape: tuple[int, int]) -> list:
    """Working-scale boxes in the smear's own pixels, as :func:`leuk.serving.smear_geometry.rescale_cells` maps them."""
    if factor == 1:
        return list(boxes)
    height, width = shape
    return [(max(0, int(np.floor(x0 / factor))), max(0, int(np.floor(y0 / factor))),
             min(width, int(np.ceil(x1 / factor))), min(height, int(np.ceil(y1 / factor)))) for x0, y0, x1, y1 in boxes]


def smear_median_lab(work: np.ndarray) -> np.ndarray:
    """The smear's median colour in OpenCV's 8-bit Lab: what every box is read against (mostly red cells)."""
    import cv2

    lab = cv2.cvtColor(np.ascontiguousarray(work[..., :3]), cv2.COLOR_RGB2LAB)
    return np.median(lab.reshape(-1, 3).astype(float), 0)


def box_features(work: np.ndarray, box, median_lab: np.ndarray, size_unit: float = 13.0) -> list[float]:
    """:data:`FEATURES` of one box (x0, y0, x1, y1 in ``work``'s pixels, the smear at the red-cell scale, where a
    red cell is ``size_unit`` px across)."""
    import cv2

    height, width = work.shape[:2]
    x0, y0 = max(0, int(round(box[0]))), max(0, int(round(box[1])))
    x0, y0 = min(x0, width - 1), min(y0, height - 1)
    x1, y1 = min(width, max(int(round(box[2])), x0 + 1)), min(height, max(int(round(box[3])), y0 + 1))
    crop = np.ascontiguousarray(work[y0:y1, x0:x1, :3])
    lab = cv2.cvtColor(crop, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(float) - median_lab
    saturation = cv2.cvtColor(crop, cv2.COLOR_RGB2HSV).reshape(-1, 3)[:, 1].astype(float)
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(float)
    texture = cv2.Laplacian(grey, cv2.CV_64F).var() if min(grey.shape) >= 3 else 0.0
    lightness, a, b = lab[:, 0], lab[:, 1], lab[:, 2]
    w, h = x1 - x0, y1 - y0
    return [float(np.log(w * h / size_unit ** 2)), min(w, h) / max(w, h), *np.percentile(lightness, [5, 25, 50]),
            float(np.percentile(a, 95)), float(np.percentile(b, 5)), float(np.mean(lightness < -40)),
            float(np.mean(lightness < -60)), float(lightness.std()), float(np.percentile(saturation, 95)),
            float(np.log1p(texture)), float(np.mean(a - b > 40))]


def classifiers() -> dict:
    """The smudge classifiers tried, each called as ``fit(features, smudge, seed)`` -> a fitted classifier."""
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {"random forest": lambda x, y, seed: RandomForestClassifier(
                n_estimators=300, min_samples_leaf=3, class_weight="balanced_subsample", random_state=seed).fit(x, y),
            "boosted trees": lambda x, y, seed: HistGradientBoostingClassifier(
                max_iter=200, learning_rate=0.05, class_weight="balanced", random_state=seed).fit(x, y),
            "logistic regression": lambda x, y, seed: make_pipeline(StandardScaler(), LogisticRegression(
                C=0.1, class_weight="balanced", max_iter=5000)).fit(x, y)}


def choose_cut(features: np.ndarray, smudge: np.ndarray, groups: np.ndarray, fit, cuts=CUTS,
               seed: int = 0) -> tuple[float, dict[str, int]]:
    """The cut on the smudge probability that flags the most smudges minus white cells when each group (fold) is
    scored by ``fit`` (one of :func:`classifiers`) fitted on the others (ties: the higher cut), and what it flags
    there."""
    probability = np.zeros(len(smudge))
    for group in np.unique(groups):
        held = groups == group
        probability[held] = fit(features[~held], smudge[~held], seed).predict_proba(features[held])[:, 1]
    flagged = lambda cut: (int((probability[smudge] > cut).sum()), int((probability[~smudge] > cut).sum()))
    cut = max(cuts, key=lambda c: (flagged(c)[0] - flagged(c)[1], c))
    return float(cut), {"smudges_flagged": flagged(cut)[0], "smudges": int(smudge.sum()),
                        "white_cells_flagged": flagged(cut)[1], "white_cells": int((~smudge).sum())}


def figures(rows: list[dict]) -> dict:
    true = np.array([r["true"] for r in rows])
    counted = np.array([r["counted"] for r in rows])
    shown = np.array([r["shown"] for r in rows])
    matched = sum(r["matched"] for r in rows)
    return {"smears": len(rows), "precision": round(matched / max(counted.sum(), 1), 3),
            "recall": round(matched / max(true.sum(), 1), 3),
            "count_exact_share": round(float(np.mean(counted == true)), 3),
            "count_exact_share_as_shown": round(float(np.mean(shown == true)), 3),
            "count_within_one_share_as_shown": round(float(np.mean(abs(shown - true) <= 1)), 3),
            "count_error_mean_abs_as_shown": round(float(np.mean(abs(shown - true))), 2),
            "smears_three_or_more_off_as_shown": int(np.sum(abs(shown - true) >= 3))}


def score(smear: dict, boxes: list) -> dict:
    from leuk.metrics import match_boxes

    matched, counted = match_boxes(smear["white"], boxes, smear["smudge"])
    return {"true": len(smear["white"]), "counted": counted, "matched": matched, "shown": len(boxes)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="Aria folder (holds Original/<class>/)")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "cell-detector")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "results" / "count_levers.json")
    args = parser.parse_args(argv)
    from leuk.cell_detector import load_cell_detector, predict_maps
    from leuk.metrics import box_iou
    from leuk.training.cell_detector import THRESHOLDS, DetectorRecipe
    from train_cell_detector import BOXES_DEFAULT, fit_members, folds_of, load_reference

    started = time.time()
    # the shipped detector's recipe and reading, so that the folds are the ones its cross-validation trained
    shipped = load_cell_detector()
    recipe = DetectorRecipe(**{k: tuple(v) if isinstance(v, list) else v for k, v in shipped.meta["recipe"].items()})
    smears = load_reference(args.data, BOXES_DEFAULT)
    fold_of = folds_of(smears, 5, recipe.seed)
    factors = [s["factor"] for s in smears]
    # every fold's network on every smear: on its training smears to choose, on its held-out smears to score
    maps = []
    for fold in range(5):
        net = fit_members([s for s, f in zip(smears, fold_of) if f != fold], recipe, int(shipped.meta.get("members", 1)),
                          f"fold {fold + 1}/5", args.work, BOXES_DEFAULT, factors, f"fold{fold}")
        maps.append([predict_maps(net, s["work"], flips=shipped.flips, scales=shipped.scales)
                     for s in smears])
        print(f"fold {fold + 1}/5: maps read ({time.time() - started:.0f} s)", flush=True)
    found = {(fold, window): [candidates(maps[fold][i], window, recipe.size_unit, s["work"].shape[:2])
                              for i, s in enumerate(smears)] for fold in range(5) for window in WINDOWS}

    def boxes_of(fold, i, window, threshold, suppress):
        s = smears[i]
        return in_smear_pixels(keep(found[(fold, window)][i], threshold, suppress), s["factor"], s["rgb"].shape[:2])

    def rows(fold, setting, held_out: bool):
        """Held-out smears scored in their own pixels (as the bench scores them); training smears at the working
        scale, as ``choose_threshold`` chooses the shipped threshold there."""
        if held_out:
            return [score(s, boxes_of(fold, i, *setting)) for i, s in enumerate(smears) if fold_of[i] == fold]
        at_work = lambda s: {kind: [tuple(v * s["factor"] for v in b) for b in s[kind]] for kind in ("white", "smudge")}
        return [score(at_work(s), keep(found[(fold, setting[0])][i], *setting[1:]))
                for i, s in enumerate(smears) if fold_of[i] != fold]

    spaces = {"shipped (threshold chosen)": [(*SHIPPED[:1], t, SHIPPED[1]) for t in THRESHOLDS],
              "window, suppression and threshold chosen": [(w, t, n) for w in WINDOWS for n in SUPPRESS
                                                           for t in THRESHOLDS]}
    results: dict = {"date": time.strftime("%Y-%m-%d"), "machine": "CPU", "against": "consensus reading",
                     "scored": "5-fold cross-validation, settings chosen on each fold's training smears",
                     "decoding": {}}
    chosen_shipped = {}
    for name, space in spaces.items():
        held, chosen = [], []
        for fold in range(5):
            best = max(space, key=lambda p: (lambda f: (f["count_exact_share"], f["precision"] + f["recall"]))(
                figures(rows(fold, p, held_out=False))))
            chosen.append({"window": best[0], "threshold": best[1], "suppress_iou": best[2]})
            held += rows(fold, best, held_out=True)
            if name.startswith("shipped"):
                chosen_shipped[fold] = best
        results["decoding"][name] = {"chosen": chosen, **figures(held)}
        print(name, json.dumps(results["decoding"][name]), flush=True)
    # the best single decoding in hindsight (chosen on the held-out smears themselves: an upper bound, not a figure)
    hindsight = max(spaces["window, suppression and threshold chosen"], key=lambda p: figures(
        sum((rows(fold, p, held_out=True) for fold in range(5)), []))["count_exact_share"])
    results["decoding"]["best in hindsight (upper bound)"] = {
        "window": hindsight[0], "threshold": hindsight[1], "suppress_iou": hindsight[2],
        **figures(sum((rows(fold, hindsight, held_out=True) for fold in range(5)), []))}

    # the smudge flag, on the shipped decoding's held-out boxes, learned fold by fold from the reference's boxes
    medians = [smear_median_lab(s["work"]) for s in smears]
    at_work = lambda i, box: [v * smears[i]["factor"] for v in box]
    reference = [(i, box, kind == "smudge") for i, s in enumerate(smears) for kind in ("white", "smudge")
                 for box in s[kind]]
    x_ref = np.array([box_features(smears[i]["work"], at_work(i, box), medians[i]) for i, box, _ in reference])
    y_ref = np.array([smudge for _, _, smudge in reference])
    fold_ref = np.array([fold_of[i] for i, _, _ in reference])
    models = classifiers()
    results["smudge_flag"] = {"reference_boxes": {"white": int((~y_ref).sum()), "smudge": int(y_ref.sum())}}
    # how firmly each chooses: the cut and the flags out of fold on the reference boxes, and again with the features
    # moved by noise of 1e-5 (a flag whose choice moves with that is not one to ship)
    jitter = x_ref + np.random.default_rng(0).normal(scale=1e-5, size=x_ref.shape)
    results["smudge_flag"]["stability"] = {
        name: {"as read": choose_cut(x_ref, y_ref, fold_ref, model), "features moved by 1e-5":
               choose_cut(jitter, y_ref, fold_ref, model)} for name, model in models.items()}
    print("smudge flag, stability", json.dumps(results["smudge_flag"]["stability"]), flush=True)
    for name, model in models.items():
        held, flagged, cuts = [], Counter(), []
        for fold in range(5):
            train = fold_ref != fold
            cut, _ = choose_cut(x_ref[train], y_ref[train], fold_ref[train], model)
            fitted = model(x_ref[train], y_ref[train], 0)
            cuts.append(cut)
            for i, s in enumerate(smears):
                if fold_of[i] != fold:
                    continue
                boxes = boxes_of(fold, i, *chosen_shipped[fold])
                features = np.array([box_features(s["work"], at_work(i, b), medians[i]) for b in boxes])
                flags = fitted.predict_proba(features)[:, 1] > cut if boxes else []
                flagged.update("white" if any(box_iou(b, t) >= 0.5 for t in s["white"]) else
                               "smudge" if any(box_iou(b, t) >= 0.5 for t in s["smudge"]) else "neither"
                               for b, f in zip(boxes, flags) if f)
                held.append(score(s, [b for b, f in zip(boxes, flags) if not f]))
        results["smudge_flag"][name] = {"cuts": cuts, "flagged": dict(flagged), **figures(held)}
        print("smudge flag,", name, json.dumps(results["smudge_flag"][name]), flush=True)
    results["seconds"] = round(time.time() - started)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"-> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
