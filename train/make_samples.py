"""Write the app's sample images to ``assets/samples/`` (seeded, so the files are reproducible).

- ``assets/samples/cnmc/<hem|all>_<n>.png``: **real** C-NMC 2019 cells (``--cnmc-real``), taken only from the
  subjects that fold ``--fold`` (0) of :func:`leuk.data.splits.leave_one_rare_subject_out` (seed
  ``--split-seed`` 0, the seed of ``train/train_real_efficientnet_se.py``) holds out, so the shipped
  EfficientNet-SE never saw them in training, validation or calibration. Rule: per class, the held-out
  subjects are shuffled with ``--seed`` and taken in turn (one cell per subject before any second one), and
  within a subject one cell is drawn at random from its sorted files. The PNGs are the 450 x 450 originals,
  pixels unchanged (about 50 KB each); ``ATTRIBUTION.md`` next to them names the dataset, its licence
  (CC BY 3.0) and each sample's original file and subject. Without ``--cnmc-real`` the C-NMC samples are
  left as they are (a clone without the dataset cannot remake them).
- ``assets/samples/aria/<Benign|Early|Pre|Pro>_<n>.jpg``: **synthetic** smears from :mod:`leuk.data.synthetic`
  (patients the demo models never saw: a seed of their own). Aria images may not be committed (no licence
  could be checked), so these stay synthetic.

    python train/make_samples.py --cnmc-real ../shared/datasets/cnmc-real/C-NMC_Leukemia [--out assets/samples]
        [--per-class 3] [--seed 2026] [--fold 0] [--split-seed 0]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from leuk.data.synthetic import ARIA_CLASSES, write_aria

REPO = Path(__file__).resolve().parents[1]
ARIA_SIZE = 256
ATTRIBUTION_FILE = "ATTRIBUTION.md"
#: C-NMC label order of the sample files (hem = 0, all = 1, as in the dataset).
CNMC_LABELS = ("hem", "all")


@dataclass(frozen=True)
class CnmcSample:
    """One chosen real cell: where it comes from and the file it becomes."""

    source: Path
    label: str
    subject: str
    target_name: str


def _spread(paths_by_patient: dict[str, list[Path]], count: int) -> list[Path]:
    """Up to ``count`` paths, taking one per patient in turn (round robin over sorted patients)."""
    queues = [sorted(paths) for _, paths in sorted(paths_by_patient.items())]
    chosen: list[Path] = []
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop(0))
    return chosen


def held_out_cells(cnmc_root: Path, *, fold: int, split_seed: int) -> dict[str, dict[str, list[Path]]]:
    """``{label: {subject: [paths]}}`` of the test subjects of fold ``fold`` (the training script's folds)."""
    import numpy as np

    from leuk.data import load_cnmc
    from leuk.data.splits import leave_one_rare_subject_out

    table = load_cnmc(cnmc_root).select_columns(["path", "label", "patient_id"])  # as the training script reads it
    names = table.features["label"].names
    paths = [Path(p) for p in table["path"]]
    labels = np.asarray(table["label"], dtype=np.int64)
    groups = np.asarray([str(p) for p in table["patient_id"]])
    splits = leave_one_rare_subject_out(labels, groups, seed=split_seed)
    if not 0 <= fold < len(splits):
        raise SystemExit(f"error: fold {fold} does not exist ({len(splits)} folds)")
    cells: dict[str, dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    for index in splits[fold].test:
        cells[names[labels[index]]][str(groups[index])].append(paths[index])
    return {label: {subject: sorted(found) for subject, found in by_subject.items()}
            for label, by_subject in cells.items()}


def choose_cnmc_samples(cnmc_root: Path, *, per_class: int, seed: int, fold: int = 0,
                        split_seed: int = 0) -> list[CnmcSample]:
    """The seeded choice of real cells (see the module docstring), ``hem`` then ``all``."""
    import numpy as np

    cells = held_out_cells(cnmc_root, fold=fold, split_seed=split_seed)
    rng = np.random.default_rng(seed)
    chosen = []
    for label in CNMC_LABELS:
        by_subject = {subject: list(found) for subject, found in cells.get(label, {}).items()}
        if sum(map(len, by_subject.values())) < per_class:
            raise SystemExit(f"error: fold {fold} holds out fewer than {per_class} {label} cells")
        order = [str(s) for s in rng.permutation(sorted(by_subject))]
        number, turn = 0, 0
        while number < per_class:
            subject = order[turn % len(order)]
            turn += 1
            if not by_subject[subject]:
                continue
            path = by_subject[subject].pop(int(rng.integers(len(by_subject[subject]))))
            number += 1
            chosen.append(CnmcSample(path, label, subject, f"{label}_{number}.png"))
    return chosen


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def attribution_text(samples: list[CnmcSample], *, fold: int, split_seed: int, seed: int) -> str:
    """``ATTRIBUTION.md`` of the real C-NMC samples."""
    rows = "\n".join(
        f"| `{s.target_name}` | {s.label.upper()} | {s.subject} | `{s.source.stem}.bmp` | "
        f"`{s.source.parent.parent.name}/{s.source.parent.name}/{s.source.name}` | `{_sha256(s.source)[:16]}` |"
        for s in samples)
    return f"""# C-NMC sample cells: attribution

The six PNG files in this folder are real single-cell images from the **C-NMC 2019** dataset ("C-NMC: Classification
of Normal vs Malignant Cells in B-ALL White Blood Cancer Microscopic Images", ISBI 2019 challenge), published by
**SBILab, IIIT-Delhi and AIIMS New Delhi** on **The Cancer Imaging Archive (TCIA)** under the
**Creative Commons Attribution 3.0 licence (CC BY 3.0)**, https://creativecommons.org/licenses/by/3.0/.

Cite: Mourya S., Kant S., Kumar P., Gupta A., Gupta R., ALL Challenge dataset of ISBI 2019 (C-NMC 2019),
The Cancer Imaging Archive, 2019, https://doi.org/10.7937/tcia.2019.dc64i46r.

Changes: none to the pixels (450 x 450 RGB, segmented cell on black); the official BMP container was re-encoded
as lossless PNG. Labels are per subject, as in the dataset (ALL: a patient's malignant lymphoblasts; HEM: a
healthy subject's normal B-lymphoid precursors).

The cells come only from the subjects that fold {fold} of the leave-one-HEM-subject-out protocol holds out
(`leuk.data.splits.leave_one_rare_subject_out`, seed {split_seed}): the bundled EfficientNet-SE, trained on
that fold, never saw these subjects. Chosen by `python train/make_samples.py --cnmc-real <C-NMC_Leukemia>`
(seed {seed}).

| sample | class | subject | original file name | file in the development pool | sha256 (first 16) |
|---|---|---|---|---|---|
{rows}

The sha256 is that of the source file (the pool's PNG: the file here is a byte copy of it).
"""


def make_cnmc_samples(cnmc_root: Path, out: Path, per_class: int, seed: int, fold: int,
                      split_seed: int) -> list[Path]:
    """Real single-cell PNGs from the held-out subjects of ``fold``, and ``ATTRIBUTION.md`` next to them."""
    samples = choose_cnmc_samples(cnmc_root, per_class=per_class, seed=seed, fold=fold, split_seed=split_seed)
    folder = out / "cnmc"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    written = []
    for sample in samples:
        target = folder / sample.target_name
        if sample.source.suffix.lower() == ".png":
            shutil.copyfile(sample.source, target)  # the pool's PNG, pixels as published
        else:  # the official BMP: same pixels, PNG container
            Image.open(sample.source).convert("RGB").save(target, format="PNG", optimize=True)
        written.append(target)
    attribution = folder / ATTRIBUTION_FILE
    attribution.write_text(attribution_text(samples, fold=fold, split_seed=split_seed, seed=seed), encoding="utf-8")
    for sample in samples:
        print(f"{sample.target_name}: {sample.label} subject {sample.subject}, {sample.source.name}")
    return written + [attribution]


def make_aria_samples(work: Path, out: Path, per_class: int, seed: int) -> list[Path]:
    """Synthetic smear JPGs, ``per_class`` per class, from different synthetic patients when the class has several."""
    root = write_aria(work / "aria", patients=10, images_per_patient=2, size=ARIA_SIZE, seed=seed, confounding=0.5)
    patient_of = {}
    for line in (root / "patients.csv").read_text(encoding="utf-8").splitlines()[1:]:
        image, patient, _ = line.split(",")
        patient_of[image] = patient
    shutil.rmtree(out / "aria", ignore_errors=True)
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
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "assets" / "samples")
    parser.add_argument("--cnmc-real", type=Path, default=None,
                        help="real C-NMC_Leukemia folder (official layout); without it the C-NMC samples stay as they are")
    parser.add_argument("--per-class", type=int, default=3)
    parser.add_argument("--seed", type=int, default=2026, help="seed of the choice (Aria: seed + 1 renders)")
    parser.add_argument("--fold", type=int, default=0, help="fold whose held-out subjects give the C-NMC samples")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the folds (the training script's --seed)")
    args = parser.parse_args(argv)
    written: list[Path] = []
    if args.cnmc_real is not None:
        written += make_cnmc_samples(args.cnmc_real, args.out, args.per_class, args.seed, args.fold, args.split_seed)
    else:
        print(f"no --cnmc-real: left the C-NMC samples in {args.out / 'cnmc'} as they are")
    with tempfile.TemporaryDirectory() as tmp:
        written += make_aria_samples(Path(tmp), args.out, args.per_class, args.seed + 1)
    total = sum(path.stat().st_size for path in written)
    print(f"wrote {len(written)} files ({total / 1024:.0f} KiB) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
