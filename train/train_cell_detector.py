"""Train the white-cell detector (leuk.cell_detector) on the box-level reference of real Aria smears, with its
cross-validated figures, and write the bundled detector::

    python train/train_cell_detector.py --data ../shared/datasets/aria-real            # 5-fold CV, then all smears
    python train/train_cell_detector.py --data ../shared/datasets/aria-real --folds 0  # no CV: all smears only

It learns from the consensus of the reference's two readings (``assets/aria_reference/boxes_consensus.csv``,
``train/make_aria_boxes.py``; ``--boxes`` names another reading, e.g. the first, ``boxes.csv``, which the detector
shipped before 2026-12-07 learned from). Smudge boxes are background to the loss (``--smudges ignored``: left out
of it, as for the detector shipped before 2026-12-07's night). Each smear is first brought to the red-cell scale as the app does
(``leuk.serving.detection.at_working_scale``), and its boxes with it. **Cross-validation**: the 104 reference smears
are split into 5 folds by blocks of 50 file numbers per class (neighbouring numbers tend to come from one smear
session; Aria has no patient ids, so this is a proxy grouping, not a patient split); for each fold a detector is
trained on the other four (threshold chosen on them) and finds the cells of the fold's smears through
``find_white_cells`` as the app runs it, reading the heatmap three ways (``VARIANTS``: as it is, averaged with the
smear's mirror images, and that again at 0.85 and 1.15 times the red-cell scale).
Every smear is thus scored by a detector that never saw its boxes; the mask-review smears' figures choose between the
ways of reading the heatmap (the 24 extra smears take no part), the chosen way's boxes go to ``cv_boxes.csv`` (no
pixels) and all figures to ``cell_detector.json``, and ``bench/bench_smear_cells.py`` scores them. **Shipped**: one
detector trained on all 104 smears (threshold chosen on them), float16 safetensors in ``assets/cell_detector``, with
the range of the red cells' hue over its smears (``red_cell_hue``): the app's ``auto`` finder leaves smears outside it
(pink red cells of a stain it never saw) to the colour rule. Seeded; 10-16 min per network on a 2-core CPU (six
networks, 1-1.5 h in all); the folds' networks are kept in ``--work`` under the recipe, the reading and the
smears' working scales, so a rerun reads them and takes about 6 min (trained from nothing on another machine, the
weights differ in floating point and the cross-validated figures by about 0.005). ``--members N`` trains N networks
per detector from successive seeds (the folds stay those of ``--seed``) and reads them as one, the mean of their
heatmaps (:class:`leuk.cell_detector.CellCentreEnsemble`); each network is cached on its own.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "train"))

CLASSES = ("Benign", "Early", "Pre", "Pro")
BLOCK = 50
#: The reading the shipped detector learns from: the consensus of the reference's two readings.
BOXES_DEFAULT = REPO / "assets" / "aria_reference" / "boxes_consensus.csv"


def load_reference(data: Path, boxes_file: Path | None = None) -> list[dict]:
    """Every reference smear: name, class, set, the RGB smear, its working-scale copy and boxes at that scale
    (``boxes_file``: the reading to learn from; default the first, ``boxes.csv``)."""
    import csv as _csv

    from leuk.io import read_image
    from leuk.serving.detection import at_working_scale
    from make_aria_boxes import BOXES, REFERENCE, read_boxes, reference_images

    with open(REFERENCE / "reviewed.csv", newline="", encoding="utf-8") as handle:
        tuned = {row["image"] for row in _csv.DictReader(handle)}
    boxes = read_boxes(boxes_file or BOXES)
    smears = []
    for name in reference_images(data):
        rgb = np.asarray(read_image(data / "Original" / name))
        ruler, factor, work = at_working_scale(rgb)
        cells = boxes.get(name, [])
        smears.append({"image": name, "class": name.split("/")[0], "set": "mask-review" if name in tuned else "extra",
                       "rgb": rgb, "work": work, "factor": factor,
                       "red_cell_hue": None if ruler is None else ruler.hue,
                       "white": [c["box"] for c in cells if c["kind"] == "white"],
                       "smudge": [c["box"] for c in cells if c["kind"] == "smudge"]})
    return smears


def folds_of(smears: list[dict], folds: int, seed: int) -> np.ndarray:
    """Fold of each smear: blocks of :data:`BLOCK` file numbers per class, shuffled (seeded) into ``folds`` folds."""
    number = re.compile(r"(\d+)")
    groups = [s["class"] + "/" + str(int(number.findall(s["image"])[-1]) // BLOCK) for s in smears]
    names = sorted(set(groups))
    order = np.random.default_rng(seed).permutation(len(names))
    fold_of_group = {name: int(order[i] % folds) for i, name in enumerate(names)}
    return np.array([fold_of_group[g] for g in groups])


def boxed(smears: list[dict]):
    from leuk.training.cell_detector import BoxedSmear

    out = []
    for s in smears:
        f = s["factor"]
        scale = lambda boxes: [tuple(v * f for v in b) for b in boxes]
        out.append(BoxedSmear(rgb=s["work"], white=scale(s["white"]), smudge=scale(s["smudge"])))
    return out


def cache_key(recipe, boxes_file: Path | None = None, factors: list[float] | None = None) -> str:
    """The name a network trained under ``recipe`` is cached by: every setting of the recipe, the scale each smear
    was brought to (``factors``, so a changed ruler never reads a network trained at other scales) and, past the
    first reading, the reading's content, so a changed recipe or reference never reads a network trained under
    another."""
    settings = json.dumps({k: getattr(recipe, k) for k in recipe.__dataclass_fields__}, sort_keys=True)
    key = f"seed{recipe.seed}-steps{recipe.steps}-{hashlib.sha256(settings.encode()).hexdigest()[:8]}"
    if factors is not None:
        scales = json.dumps([round(f, 4) for f in factors])
        key += f"-scale{hashlib.sha256(scales.encode()).hexdigest()[:8]}"
    if boxes_file is not None and boxes_file.name != "boxes.csv":
        key += f"-{boxes_file.stem}-{hashlib.sha256(boxes_file.read_bytes()).hexdigest()[:8]}"
    return key


def fit(smears: list[dict], recipe, label: str, cache: Path | None = None):
    """A network trained on ``smears`` (read from ``cache`` when a previous run left it there)."""
    import torch
    from safetensors.torch import load_file, save_file
    from tqdm import tqdm

    from leuk.cell_detector import CellCentreNet
    from leuk.training.cell_detector import train_detector

    if cache is not None and cache.is_file():
        net = CellCentreNet()
        net.load_state_dict(load_file(str(cache)))
        print(f"{label}: read {cache}", flush=True)
        return net.eval()
    bar = tqdm(total=recipe.steps, desc=label, unit="step", mininterval=5)
    net = train_detector(boxed(smears), recipe,
                         progress=lambda step, loss: (bar.update(1), bar.set_postfix(loss=f"{loss:.3f}", refresh=False)))
    bar.close()
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(cache))
    return net


def fit_members(smears: list[dict], recipe, members: int, label: str, work: Path, boxes_file: Path,
                factors: list[float], part: str):
    """``members`` networks trained on ``smears`` under ``recipe`` with seeds ``recipe.seed``, ``recipe.seed + 1``, ...
    (each cached on its own, so a detector of two networks reuses the one-network run's), read as one
    (:class:`leuk.cell_detector.CellCentreEnsemble`) when there are several."""
    from dataclasses import replace

    from leuk.cell_detector import CellCentreEnsemble

    nets = []
    for member in range(members):
        seeded = replace(recipe, seed=recipe.seed + member)
        nets.append(fit(smears, seeded, label + (f", network {member + 1}/{members}" if members > 1 else ""),
                        work / f"{cache_key(seeded, boxes_file, factors)}-{part}.safetensors"))
    return nets[0] if members == 1 else CellCentreEnsemble(nets).eval()


def ready(net, smears: list[dict], recipe, variant: str, label: str):
    """The network with the threshold its training smears choose, read as ``variant`` (:data:`VARIANTS`)."""
    from leuk.cell_detector import LoadedCellDetector
    from leuk.training.cell_detector import choose_threshold

    flips, scales = VARIANTS[variant]
    threshold, figures = choose_threshold(net, boxed(smears), recipe.size_unit, flips=flips, scales=scales)
    print(f"{label} ({variant}): threshold {threshold} on its {len(smears)} training smears {figures}", flush=True)
    return LoadedCellDetector(net=net, threshold=threshold, size_unit=recipe.size_unit, flips=flips,
                              scales=scales), figures


#: The ways of reading the heatmap the cross-validation compares, as (flips, scales) of
#: :func:`leuk.cell_detector.predict_maps`: the smear as it is; averaged with its mirrored copies; and that again at
#: 0.85 and 1.15 times the red-cell scale (less sensitive to the exact scale the ruler set: a smear and its 2x
#: enlargement, whose rulers differ by a few percent, then give the same cells more often). The one with the higher
#: count-exact share on the mask-review smears' held-out folds (ties: precision plus recall) is shipped; the extra
#: smears do not take part in the choice.
VARIANTS = {"plain": (False, (1.0,)), "flips": (True, (1.0,)), "flips and scales": (True, (0.85, 1.0, 1.15))}


def main(argv=None) -> int:
    from leuk.training.cell_detector import SMUDGE_ROLES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="Aria folder (holds Original/<class>/)")
    parser.add_argument("--out", type=Path, default=REPO / "assets" / "cell_detector")
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "cell-detector",
                        help="scratch folder for the folds' networks (a rerun reads them instead of training)")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds (0: none)")
    parser.add_argument("--steps", type=int, default=None, help="training steps per detector (default: the recipe's)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the folds and of the first network (the others: seed + 1, ...)")
    parser.add_argument("--members", type=int, default=1,
                        help="networks per detector, trained alike from successive seeds and read as their mean")
    parser.add_argument("--boxes", type=Path, default=BOXES_DEFAULT,
                        help="the reading of the box reference to learn from and score on (default: the consensus of "
                             "the two readings, what the shipped detector learned; the first reading: "
                             "assets/aria_reference/boxes.csv)")
    parser.add_argument("--smudges", choices=SMUDGE_ROLES, default=SMUDGE_ROLES[0],
                        help="what the reference's smudge boxes are to the training loss: background, so the detector "
                             "learns not to fire on them (default, the shipped detector), or neither cell nor background "
                             "(the detector shipped before)")
    args = parser.parse_args(argv)
    if args.members < 1:
        parser.error("--members must be at least 1")
    import torch

    from leuk.cell_detector import save_cell_detector
    from leuk.metrics import match_boxes
    from leuk.serving.detection import find_white_cells
    from leuk.training.cell_detector import DetectorRecipe, detection_figures

    recipe = DetectorRecipe(seed=args.seed, smudges=args.smudges,
                            **({} if args.steps is None else {"steps": args.steps}))
    smears = load_reference(args.data, args.boxes)
    factors = [s["factor"] for s in smears]
    meta = {"recipe": {k: getattr(recipe, k) for k in recipe.__dataclass_fields__},
            "trained_on": f"{len(smears)} real Aria smears of the box reference "
                          f"(assets/aria_reference/{args.boxes.name}), at the red-cell scale",
            "command": "python train/train_cell_detector.py --data ../shared/datasets/aria-real"
                       + ("" if args.folds == 5 else f" --folds {args.folds}")
                       + ("" if args.seed == 0 else f" --seed {args.seed}")
                       + ("" if args.boxes.name == "boxes_consensus.csv" else f" --boxes assets/aria_reference/{args.boxes.name}")
                       + ("" if args.smudges == SMUDGE_ROLES[0] else f" --smudges {args.smudges}")
                       + ("" if args.members == 1 else f" --members {args.members}"),
            "member_seeds": [args.seed + m for m in range(args.members)],
            "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__}
    # the stain it learned: the red cells' hue over its smears (``auto`` leaves smears outside it to the colour rule)
    hues = [s["red_cell_hue"] for s in smears if s["red_cell_hue"] is not None]
    meta["red_cell_hue"] = [round(min(hues), 1), round(max(hues), 1)]
    args.out.mkdir(parents=True, exist_ok=True)
    chosen = "plain"
    if args.folds:
        fold_of = folds_of(smears, args.folds, args.seed)
        rows = {v: [] for v in VARIANTS}
        boxes_out = {v: [] for v in VARIANTS}
        for fold in range(args.folds):
            train = [s for s, f in zip(smears, fold_of) if f != fold]
            label = f"fold {fold + 1}/{args.folds}"
            net = fit_members(train, recipe, args.members, label, args.work, args.boxes, factors, f"fold{fold}")
            for variant in VARIANTS:
                detector, _ = ready(net, train, recipe, variant, label)
                for smear, f in zip(smears, fold_of):
                    if f != fold:
                        continue
                    found = [c.box for c in find_white_cells(smear["rgb"], "detector", detector=detector).cells]
                    matched, counted = match_boxes(smear["white"], found, smear["smudge"])
                    rows[variant].append({"image": smear["image"], "class": smear["class"], "set": smear["set"],
                                          "fold": fold, "true": len(smear["white"]), "counted": counted,
                                          "matched": matched})
                    boxes_out[variant] += [{"image": smear["image"], "fold": fold, "x0": b[0], "y0": b[1], "x1": b[2],
                                            "y1": b[3]} for b in found]
        figures = lambda part: detection_figures([(r["true"], r["counted"], r["matched"]) for r in part])
        summary = {variant: {
            "all": figures(rows[variant]),
            "per_set": {name: figures([r for r in rows[variant] if r["set"] == name]) for name in ("mask-review", "extra")},
            "per_class": {label: figures([r for r in rows[variant] if r["class"] == label]) for label in CLASSES}}
            for variant in VARIANTS}
        review = lambda v: summary[v]["per_set"]["mask-review"]
        # the first of equals wins: the simpler reading unless a richer one counts better
        chosen = max(VARIANTS, key=lambda v: (review(v)["count_exact_share"],
                                              review(v)["precision"] + review(v)["recall"]))
        meta["cross_validation"] = {
            "folds": args.folds, "grouping": f"blocks of {BLOCK} file numbers per class",
            "variant": chosen, "flips": VARIANTS[chosen][0], "scales": list(VARIANTS[chosen][1]), **summary[chosen],
            "variants": summary,
            "choice": f"{', '.join(VARIANTS)} by the count-exact share (ties: precision + recall) on the mask-review "
                      "smears' held-out folds; the extra smears took no part"}
        print(json.dumps(meta["cross_validation"], indent=1), flush=True)
        with open(args.out / "cv_boxes.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["image", "fold", "x0", "y0", "x1", "y1"])
            writer.writeheader()
            writer.writerows(boxes_out[chosen])
            # a smear with no detection still has its fold on record
            seen = {b["image"] for b in boxes_out[chosen]}
            writer.writerows({"image": r["image"], "fold": r["fold"], "x0": "", "y0": "", "x1": "", "y1": ""}
                             for r in rows[chosen] if r["image"] not in seen)
    net = fit_members(smears, recipe, args.members, "all smears", args.work, args.boxes, factors, "all")
    detector, training_figures = ready(net, smears, recipe, chosen, "all smears")
    meta.update(threshold=detector.threshold, size_unit=recipe.size_unit, flips=detector.flips,
                scales=list(detector.scales),
                training_smears_figures=training_figures)
    save_cell_detector(detector.net, args.out, meta)
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
