"""The reviewed reference masks of real Aria smears, and the segmenters' Dice/IoU on them.

Aria ships no expert masks, so the reference is built by hand from candidates:

    # 1. seeded sample (16 per class; --batch 1 draws 16 more), candidate masks, review sheets (PNG) for a person to look at
    python train/make_aria_reference.py render --data ../shared/datasets/aria-real --segmenter demo:hybridcn-nas-lite
    # 2. after looking at every sheet, record the verdicts in assets/aria_reference/reviewed.csv
    #    (columns image, label, source = classical | unet | reject, note) and write the accepted masks
    python train/make_aria_reference.py write --data ../shared/datasets/aria-real --segmenter demo:hybridcn-nas-lite
    # 3. Dice/IoU of any segmenter on the accepted masks
    python train/make_aria_reference.py score --data ../shared/datasets/aria-real --segmenter MODEL [MODEL...]

Only masks (1-bit PNGs, 224 x 224) and the verdicts are committed, never an Aria pixel. The candidates are
:func:`leuk.segmentation.classical_cell_mask` (colour thresholding) and the U-Net of a HybridCN-NAS folder.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "assets" / "aria_reference"
CLASSES = ("Benign", "Early", "Pre", "Pro")
PER_CLASS = 16
TILE = 224


def sample_images(data: Path, batch: int = 0, per_class: int = PER_CLASS) -> list[Path]:
    """Review batch ``batch``: ``per_class`` images of every class folder drawn with the seeded generator
    ``batch`` from the sorted names that no earlier batch drew."""
    earlier = {path for previous in range(batch) for path in sample_images(data, previous, per_class)}
    rng = np.random.default_rng(batch)
    chosen = []
    for label in CLASSES:
        files = [path for path in sorted((data / "Original" / label).glob("*.jpg")) if path not in earlier]
        picks = rng.choice(len(files), size=min(per_class, len(files)), replace=False)
        chosen += [files[i] for i in sorted(picks)]
    return chosen


def read_rgb(path: Path) -> np.ndarray:
    from leuk.io import read_image

    return np.asarray(read_image(path), dtype=np.uint8)


def unet_masks(model_spec: str, images: list[np.ndarray]) -> list[np.ndarray]:
    """The segmenter's binary masks at each image's own size (the model's threshold)."""
    import cv2
    import torch

    from leuk.hub.loader import load_model

    loaded = load_model(model_spec)
    model, processor = loaded.model, loaded.processor
    if getattr(model, "segmenter", None) is None:
        raise SystemExit(f"{model_spec} has no segmenter")
    masks = []
    with torch.no_grad():
        for image in images:
            pixels = processor(images=[image], return_tensors="pt")["pixel_values"].to(torch.float32)
            probabilities = model.cell_probabilities(pixels)[0, 0].numpy()
            resized = cv2.resize(probabilities, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
            masks.append(resized > model.config.mask_threshold)
    return masks


def overlay(rgb: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    import cv2

    drawn = rgb.copy()
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(drawn, contours, -1, colour, 2)
    return drawn


def render(args: argparse.Namespace) -> int:
    import cv2

    from leuk.segmentation import classical_cell_mask

    files = sample_images(args.data, args.batch)
    images = [read_rgb(path) for path in files]
    learned = unet_masks(args.segmenter[0], images)
    args.out.mkdir(parents=True, exist_ok=True)
    tiles = []
    for index, (path, image, unet) in enumerate(zip(files, images, learned)):
        row = np.hstack([image, overlay(image, classical_cell_mask(image), (0, 160, 0)),
                         overlay(image, unet, (220, 0, 0))])
        cv2.putText(row, f"{args.batch}.{index} {path.parent.name}/{path.stem}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(row)
    per_sheet = 8
    for start in range(0, len(tiles), per_sheet):
        sheet = np.vstack(tiles[start:start + per_sheet])
        cv2.imwrite(str(args.out / f"review_{args.batch}_{start // per_sheet:02d}.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    listing = [{"index": i, "image": f"{p.parent.name}/{p.name}", "label": p.parent.name} for i, p in enumerate(files)]
    (args.out / f"candidates_{args.batch}.json").write_text(json.dumps(listing, indent=2) + "\n")
    print(f"{len(tiles)} candidates: original | classical (green) | U-Net of {args.segmenter[0]} (red) -> {args.out}")
    return 0


def read_verdicts(path: Path = REFERENCE / "reviewed.csv") -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def mask_path(image: str) -> Path:
    from leuk.experiments.aria_protocols import reference_mask_path

    return reference_mask_path(REFERENCE, image)


def write(args: argparse.Namespace) -> int:
    from PIL import Image

    from leuk.segmentation import classical_cell_mask

    verdicts = read_verdicts()
    accepted = [row for row in verdicts if row["source"] in ("classical", "unet")]
    images = {row["image"]: read_rgb(args.data / "Original" / row["image"]) for row in accepted}
    learned = {}
    if any(row["source"] == "unet" for row in accepted):
        names = [row["image"] for row in accepted if row["source"] == "unet"]
        learned = dict(zip(names, unet_masks(args.segmenter[0], [images[n] for n in names])))
    for row in accepted:
        image = images[row["image"]]
        mask = classical_cell_mask(image) if row["source"] == "classical" else learned[row["image"]]
        target = mask_path(row["image"])
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask.astype(np.uint8) * 255).convert("1").save(target, optimize=True)
    counts = {label: sum(row["label"] == label for row in accepted) for label in CLASSES}
    print(f"{len(accepted)} of {len(verdicts)} reviewed masks accepted: {counts} -> {REFERENCE / 'masks'}")
    return 0


def reference_set(data: Path) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    """The accepted reference: image names, their RGB pixels and their masks (bool)."""
    from PIL import Image

    names, images, masks = [], [], []
    for row in read_verdicts():
        if row["source"] not in ("classical", "unet"):
            continue
        names.append(row["image"])
        images.append(read_rgb(data / "Original" / row["image"]))
        masks.append(np.asarray(Image.open(mask_path(row["image"])).convert("L")) > 127)
    return names, images, masks


def score(args: argparse.Namespace) -> int:
    from leuk.segmentation import classical_cell_mask, segmentation_scores

    names, images, truth = reference_set(args.data)
    results = {"reference": {"n": len(names), "source": "assets/aria_reference/reviewed.csv"}}
    candidates = {"classical colour threshold": [classical_cell_mask(image) for image in images]}
    for spec in args.segmenter:
        candidates[spec] = unet_masks(spec, images)
    for name, predicted in candidates.items():
        results[name] = segmentation_scores(np.stack(predicted), np.stack(truth))
        print(f"{name:45s} Dice {results[name]['dice']:.3f}  IoU {results[name]['iou']:.3f}  (n={len(names)})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("render", "write", "score"))
    parser.add_argument("--data", type=Path, required=True, help="Aria folder (holds Original/<class>/)")
    parser.add_argument("--segmenter", nargs="+", default=["demo:hybridcn-nas-lite"],
                        help="HybridCN-NAS model(s) whose U-Net is a candidate (render/write) or scored (score)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "aria-reference",
                        help="where render writes the review sheets")
    parser.add_argument("--batch", type=int, default=0, help="render: review batch (0, 1, ...: new images each)")
    parser.add_argument("--json", type=Path, help="score: write the figures here")
    args = parser.parse_args(argv)
    return {"render": render, "write": write, "score": score}[args.step](args)


if __name__ == "__main__":
    sys.exit(main())
