"""Procedurally rendered stained white cells in the exact on-disk layouts of C-NMC 2019 and Aria ALL.

The renderer works in optical density (Beer-Lambert): a haematoxylin-purple nucleus with chromatin texture
and nucleoli, a pale blue cytoplasm and, for smears, pink red cells with central pallor. Morphology follows
haematology texts: ALL lymphoblasts are about 30% larger, with a high nucleus:cytoplasm ratio, fine open
chromatin, visible nucleoli and irregular contours; normal cells / hematogones are smaller, round, with
condensed dark chromatin. Every cell draws a latent "blastness" from its class, shifted by a per-patient
offset, so the classes overlap and a small CNN lands clearly below 100% on unseen patients.

``class_evidence="nucleus"`` keeps the class evidence inside the nucleus (chromatin, nucleoli, nuclear
outline) and draws cell size, nucleus:cytoplasm ratio, cell outline and cytoplasm colour from one distribution
for every class: a model trained on such cells has to look at the nucleus, which makes attribution maps
checkable against the nucleus masks.

Each patient also carries a :class:`StainSignature` (hue, saturation, brightness, tint, blur) whose strength is
``confounding``: it lets an image-level split leak the patient, as in the real data. Output is byte-identical
for identical arguments (seeded :class:`numpy.random.Generator`, PIL writers with fixed settings).

The cells and smears themselves are drawn by :mod:`leuk.data.render` (re-exported here); this module writes
them out as datasets.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from leuk.data.render import (
    ARIA_CLASSES,
    ARIA_MALIGNANT_SUBTYPES,
    CLASS_EVIDENCE,
    CNMC_CLASSES,
    RenderedCell,
    StainSignature,
    check_class_evidence,
    render_cell,
    render_smear,
)

__all__ = [
    "ARIA_CLASSES",
    "CLASS_EVIDENCE",
    "CNMC_CLASSES",
    "RenderedCell",
    "StainSignature",
    "render_cell",
    "render_smear",
    "write_aria",
    "write_cnmc",
]

# Spread of a patient's offset of the latent blastness of its class mean (tuned with
# train/check_synthetic_difficulty.py; the spread of one cell around it is leuk.data.render.CELL_BLASTNESS_SD).
PATIENT_BLASTNESS_SD = 0.45

# Shares of the real sets: C-NMC ~60% ALL subjects and ~2:1 ALL:HEM images; Aria 25 benign of 89 patients.
_CNMC_ALL_SUBJECT_SHARE = 0.6
_CNMC_ALL_IMAGE_WEIGHT = 4.0 / 3.0  # per-subject image weight of ALL vs HEM that turns 60/40 subjects into 2:1
_ARIA_BENIGN_PATIENT_SHARE = 25 / 89
_CNMC_CELLS_PER_SMEAR = 3


# ----------------------------------------------------------------------------------------------------------
# Dataset writers


def _check_args(
    patients: int, images_per_patient: int, size: int, confounding: float, minimum_patients: int, class_evidence: str
) -> None:
    check_class_evidence(class_evidence)
    if patients < minimum_patients:
        raise ValueError(f"patients must be at least {minimum_patients}, got {patients}")
    if images_per_patient < 1:
        raise ValueError(f"images_per_patient must be at least 1, got {images_per_patient}")
    if size < 32:
        raise ValueError(f"size must be at least 32 pixels, got {size}")
    if not 0.0 <= confounding <= 2.0:
        raise ValueError(f"confounding must lie in [0, 2], got {confounding}")


def _prepare(out: Path, trees: Sequence[Path], overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"output {out} is a file, not a folder")
    existing = [tree for tree in trees if tree.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} already exists; choose another folder or overwrite it (--overwrite)")
    for tree in existing:
        shutil.rmtree(tree) if tree.is_dir() else tree.unlink()
    out.mkdir(parents=True, exist_ok=True)


MARKER_FILE = "SYNTHETIC.md"


def _write_marker(out: Path, layout: str, **settings) -> None:
    """Say in ``<out>/SYNTHETIC.md`` that the folder holds rendered data, not patient data (no timestamps)."""
    lines = [
        f"# Synthetic {layout} look-alike (not patient data)",
        "",
        "Rendered by `leuk synth` (leuk.data.synthetic) with:",
        "",
        *(f"- {name}: {value}" for name, value in settings.items()),
        "",
    ]
    (out / MARKER_FILE).write_text("\n".join(lines), encoding="utf-8")


def _evidence_setting(class_evidence: str) -> dict[str, str]:
    """The marker line for a non-default class evidence (default folders keep their old, identical marker)."""
    return {} if class_evidence == "morphology" else {"class_evidence": class_evidence}


def _allocate(total: int, weights: np.ndarray) -> np.ndarray:
    """Integer shares of ``total`` proportional to ``weights`` (largest remainder, at least 1 each)."""
    raw = weights / weights.sum() * (total - len(weights))
    shares = np.floor(raw).astype(int)
    order = np.argsort(-(raw - shares), kind="stable")
    shares[order[: total - len(weights) - shares.sum()]] += 1
    return shares + 1


def _save(image: np.ndarray, path: Path, **options) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, **options)


def write_cnmc(
    out: str | Path,
    *,
    patients: int = 12,
    images_per_patient: int = 10,
    size: int = 450,
    seed: int = 0,
    confounding: float = 0.5,
    class_evidence: str = "morphology",
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write a synthetic C-NMC 2019 set in the Kaggle layout and return ``out``.

    Images go to ``<out>/C-NMC_Leukemia/training_data/fold_{0,1,2}/{all,hem}/UID_<subject>_<image>_<cell>_<all|hem>.bmp``
    (ALL subjects ``1, 2, ...``, healthy subjects ``H1, H2, ...``; subjects spread over the folds), nucleus
    masks to ``<out>/masks/<same relative path>.png``, the generator settings to ``<out>/SYNTHETIC.md``.
    About 60% of the subjects are ALL; ALL subjects get about 4/3 as many cells as healthy ones, so images
    are about 2:1 ALL:HEM (as in the real set) and the total is exactly ``patients * images_per_patient``.
    ``confounding`` scales the per-patient stain signature; ``class_evidence`` as in :func:`render_cell`.
    An existing tree is replaced only with ``overwrite=True``.
    """
    _check_args(patients, images_per_patient, size, confounding, minimum_patients=2, class_evidence=class_evidence)
    out = Path(out)
    tree, mask_tree = out / "C-NMC_Leukemia", out / "masks" / "C-NMC_Leukemia"
    _prepare(out, [tree, mask_tree], overwrite)

    n_all = int(np.clip(round(_CNMC_ALL_SUBJECT_SHARE * patients), 1, patients - 1))
    labels = ["all"] * n_all + ["hem"] * (patients - n_all)
    weights = np.array([_CNMC_ALL_IMAGE_WEIGHT if label == "all" else 1.0 for label in labels])
    counts = _allocate(patients * images_per_patient, weights)
    patient_seeds = np.random.SeedSequence(seed).spawn(patients)

    bar = tqdm(total=int(counts.sum()), desc="synth C-NMC", unit="img", disable=not progress)
    for index, (label, count, patient_seed) in enumerate(zip(labels, counts, patient_seeds)):
        rng = np.random.default_rng(patient_seed)
        number = index + 1 if label == "all" else index - n_all + 1
        subject = str(number) if label == "all" else f"H{number}"
        fold = f"fold_{(number - 1) % 3}"
        signature = StainSignature.random(rng, confounding)
        offset = float(rng.normal(0.0, PATIENT_BLASTNESS_SD))
        for cell_index in range(int(count)):
            image_no, cell_no = divmod(cell_index, _CNMC_CELLS_PER_SMEAR)
            name = f"UID_{subject}_{image_no + 1}_{cell_no + 1}_{label}.bmp"
            relative = Path("training_data") / fold / label / name
            cell = render_cell(rng, label, size, signature.jittered(rng, confounding), blastness_offset=offset,
                               class_evidence=class_evidence)
            _save(cell.image, tree / relative, format="BMP")
            _save(cell.nucleus_mask.astype(np.uint8) * 255, (mask_tree / relative).with_suffix(".png"), format="PNG")
            bar.update()
    bar.close()
    _write_marker(out, "C-NMC 2019", patients=patients, images_per_patient=images_per_patient, size=size, seed=seed,
                  confounding=confounding, **_evidence_setting(class_evidence))
    return out


def _aria_patient_classes(patients: int) -> list[str]:
    n_benign = int(np.clip(round(_ARIA_BENIGN_PATIENT_SHARE * patients), 1, max(1, patients - 1)))
    classes = ["Benign"] * n_benign
    classes += [ARIA_MALIGNANT_SUBTYPES[i % 3] for i in range(patients - n_benign)]
    return classes


def _aria_file_name(label: str, number: int) -> str:
    return f"WBC-Benign-{number:03d}.jpg" if label == "Benign" else f"WBC-Malignant-{label}-{number:03d}.jpg"


def write_aria(
    out: str | Path,
    *,
    patients: int = 8,
    images_per_patient: int = 6,
    size: int = 256,
    seed: int = 0,
    confounding: float = 0.5,
    class_evidence: str = "morphology",
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write a synthetic Aria ALL set and return ``out``.

    Layout: ``Original/<class>/`` smear JPGs named as the public release (``WBC-Benign-001.jpg``,
    ``WBC-Malignant-{Early,Pre,Pro}-001.jpg``, numbered per class in shuffled patient order),
    ``Segmented/<class>/`` the white cells on white, ``Masks/<class>/<stem>.png`` white-cell masks (255),
    ``patients.csv`` (``image``, ``patient_id``, ``label``) and ``SYNTHETIC.md`` (generator settings). About
    28% of the patients are benign (25 of 89 in the real set), each malignant patient has one subtype, and
    every class has a patient when ``patients >= 4``. ``class_evidence`` as in :func:`render_cell`.
    """
    _check_args(patients, images_per_patient, size, confounding, minimum_patients=1, class_evidence=class_evidence)
    out = Path(out)
    trees = [out / "Original", out / "Segmented", out / "Masks", out / "patients.csv"]
    _prepare(out, trees, overwrite)

    classes = _aria_patient_classes(patients)
    root_seed = np.random.SeedSequence(seed)
    patient_seeds = root_seed.spawn(patients)
    order_rng = np.random.default_rng(root_seed.spawn(patients + 1)[-1])
    # Per-class numbering in shuffled order, so that file numbers do not reveal patients.
    slots = [(p, i) for p in range(patients) for i in range(images_per_patient)]
    numbers: dict[tuple[int, int], int] = {}
    for label in ARIA_CLASSES:
        mine = [slot for slot in slots if classes[slot[0]] == label]
        for number, pick in enumerate(order_rng.permutation(len(mine)), start=1):
            numbers[mine[int(pick)]] = number

    rows = []
    bar = tqdm(total=len(slots), desc="synth Aria", unit="img", disable=not progress)
    for patient, (label, patient_seed) in enumerate(zip(classes, patient_seeds)):
        rng = np.random.default_rng(patient_seed)
        patient_id = f"P{patient + 1:03d}"
        signature = StainSignature.random(rng, confounding)
        offset = float(rng.normal(0.0, PATIENT_BLASTNESS_SD))
        for image_index in range(images_per_patient):
            name = _aria_file_name(label, numbers[(patient, image_index)])
            image, mask = render_smear(rng, label, size, signature.jittered(rng, confounding), blastness_offset=offset,
                                         class_evidence=class_evidence)
            segmented = np.where(mask[..., None], image, np.uint8(255))
            _save(image, out / "Original" / label / name, format="JPEG", quality=92)
            _save(segmented, out / "Segmented" / label / name, format="JPEG", quality=92)
            _save(mask.astype(np.uint8) * 255, out / "Masks" / label / f"{Path(name).stem}.png", format="PNG")
            rows.append((f"Original/{label}/{name}", patient_id, label))
            bar.update()
    bar.close()
    with open(out / "patients.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["image", "patient_id", "label"])
        writer.writerows(sorted(rows))
    _write_marker(out, "Aria ALL", patients=patients, images_per_patient=images_per_patient, size=size, seed=seed,
                  confounding=confounding, **_evidence_setting(class_evidence))
    return out

