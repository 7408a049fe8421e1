"""Write the app's sample images to ``assets/samples/`` (seeded, so the files are reproducible).

Renders small synthetic C-NMC and Aria sets with :mod:`leuk.data.synthetic` (patients the demo models never
saw: a seed of their own) and keeps a few images per class, each class from different patients when possible:
``assets/samples/cnmc/<hem|all>_<n>.png`` (single cells on black) and
``assets/samples/aria/<Benign|Early|Pre|Pro>_<n>.jpg`` (smears). Total well under 1 MB.

    python train/make_samples.py [--out assets/samples] [--per-class 3] [--seed 2026]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from PIL import Image

from leuk.data.synthetic import ARIA_CLASSES, CNMC_CLASSES, write_aria, write_cnmc

REPO = Path(__file__).resolve().parents[1]
CNMC_SIZE = 160
ARIA_SIZE = 256


def _spread(paths_by_patient: dict[str, list[Path]], count: int) -> list[Path]:
    """Up to ``count`` paths, taking one per patient in turn (round robin over sorted patients)."""
    queues = [sorted(paths) for _, paths in sorted(paths_by_patient.items())]
    chosen: list[Path] = []
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    return chosen


def make_cnmc_samples(work: Path, out: Path, per_class: int, seed: int) -> list[Path]:
    """Single-cell PNGs, ``per_class`` per class, from different synthetic subjects."""
    root = write_cnmc(work / "cnmc", patients=2 * per_class + 2, images_per_patient=2, size=CNMC_SIZE,
                      seed=seed, confounding=0.5)
    written = []
    for label in CNMC_CLASSES:
        by_subject: dict[str, list[Path]] = defaultdict(list)
        for path in root.glob(f"C-NMC_Leukemia/training_data/fold_*/{label}/*.bmp"):
            by_subject[path.name.split("_")[1]].append(path)
        for number, path in enumerate(_spread(by_subject, per_class), start=1):
            target = out / "cnmc" / f"{label}_{number}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.open(path).convert("RGB").save(target, format="PNG", optimize=True)
            written.append(target)
    return written


def make_aria_samples(work: Path, out: Path, per_class: int, seed: int) -> list[Path]:
    """Smear JPGs, ``per_class`` per class, from different synthetic patients when the class has several."""
    root = write_aria(work / "aria", patients=10, images_per_patient=2, size=ARIA_SIZE, seed=seed, confounding=0.5)
    patient_of = {}
    for line in (root / "patients.csv").read_text(encoding="utf-8").splitlines()[1:]:
        image, patient, _ = line.split(",")
        patient_of[image] = patient
    written = []
    for label in ARIA_CLASSES:
        by_patient: dict[str, list[Path]] = defaultdict(list)
        for path in (root / "Original" / label).glob("*.jpg"):
            by_patient[patient_of[f"Original/{label}/{path.name}"]].append(path)
        for number, path in enumerate(_spread(by_patient, per_class), start=1):
            target = out / "aria" / f"{label}_{number}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)  # already a JPEG from the renderer (quality 92)
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "assets" / "samples")
    parser.add_argument("--per-class", type=int, default=3)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    for task in ("cnmc", "aria"):
        shutil.rmtree(args.out / task, ignore_errors=True)
    with tempfile.TemporaryDirectory() as tmp:
        written = make_cnmc_samples(Path(tmp), args.out, args.per_class, args.seed)
        written += make_aria_samples(Path(tmp), args.out, args.per_class, args.seed + 1)
    total = sum(path.stat().st_size for path in written)
    print(f"wrote {len(written)} samples ({total / 1024:.0f} KiB) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
