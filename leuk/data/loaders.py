"""Readers of the real on-disk layouts of C-NMC 2019 and the Aria ALL set, as :class:`datasets.Dataset`.

Rows carry ``image`` (a lazy :class:`datasets.Image` that stores the file path), ``label`` (a
:class:`datasets.ClassLabel`), ``patient_id`` and ``path``. Images are decoded only when a row is read; code
that wants leuk's own reader can cast ``image`` to ``Image(decode=False)`` or use ``path`` with
:func:`leuk.io.read_image`.
"""

from __future__ import annotations

import csv
import warnings
from collections import Counter
from pathlib import Path
import datasets

from leuk.errors import DatasetLayoutError
from leuk.io import IMAGE_SUFFIXES
from leuk.records import PSEUDO_PATIENT_PREFIX

__all__ = ["ARIA_LABELS", "CNMC_LABELS", "dataset_summary", "load_aria", "load_cnmc"]

CNMC_LABELS = ["hem", "all"]
ARIA_LABELS = ["Benign", "Early", "Pre", "Pro"]

CNMC_LAYOUT = (
    "expected C-NMC_Leukemia/training_data/fold_<k>/{all,hem}/UID_<subject>_<image>_<cell>_<all|hem>.bmp "
    "(Kaggle) or C-NMC_training_data/fold_<k>/{all,hem}/ (TCIA)"
)
ARIA_LAYOUT = (
    "expected Original/{Benign,Early,Pre,Pro}/*.jpg or "
    "Blood cell Cancer [ALL]/{Benign,[Malignant] early Pre-B,[Malignant] Pre-B,[Malignant] Pro-B}/*.jpg"
)
PRELIM_FOLDER = "C-NMC_test_prelim_phase_data"
PRELIM_LABELS_CSV = "C-NMC_test_prelim_phase_data_labels.csv"
ARIA_FOLDER_CLASSES = {
    "benign": "Benign",
    "early": "Early",
    "pre": "Pre",
    "pro": "Pro",
    "[malignant] early pre-b": "Early",
    "[malignant] pre-b": "Pre",
    "[malignant] pro-b": "Pro",
}
ARIA_4CLASS_FOLDER = "Blood cell Cancer [ALL]"
IMAGE_LEVEL_NOTE = (
    "IMAGE-LEVEL: no patient map was given, so every image is its own pseudo-patient (image:<name>) and any "
    "evaluation on this dataset is image-level, not patient-wise."
)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def cnmc_subject(file_name: str) -> str:
    """The subject of a C-NMC file name ``UID_<subject>_<image>_<cell>_<all|hem>.bmp``, upper-cased (``h10`` -> ``H10``)."""
    fields = Path(file_name).stem.split("_")
    if len(fields) < 3 or fields[0].upper() != "UID" or not fields[1]:
        raise DatasetLayoutError(
            f"C-NMC file name {file_name!r} does not follow UID_<subject>_<image>_<cell>_<all|hem>.bmp"
        )
    return fields[1].upper()


def _features(label_names: list[str], *, with_mask: bool = False, with_source: bool = False) -> datasets.Features:
    columns = {
        "image": datasets.Image(),
        "label": datasets.ClassLabel(names=label_names),
        "patient_id": datasets.Value("string"),
        "path": datasets.Value("string"),
    }
    if with_mask:
        columns["mask"] = datasets.Image()
    if with_source:
        columns["source"] = datasets.Value("string")
    return datasets.Features(columns)


def _build(rows: list[dict], features: datasets.Features, description: str) -> datasets.Dataset:
    rows = sorted(rows, key=lambda row: row["path"])
    mapping = {name: [row[name] for row in rows] for name in features}
    info = datasets.DatasetInfo(description=description, features=features)
    return datasets.Dataset.from_dict(mapping, features=features, info=info)


def _cnmc_base(root: Path) -> tuple[Path, Path]:
    """(folder holding the training folds, folder where the prelim-phase data would be)."""
    for base in (root / "C-NMC_Leukemia", root):
        if (base / "training_data").is_dir():  # Kaggle
            return base / "training_data", base / "validation_data"
        if (base / "C-NMC_training_data").is_dir():  # TCIA
            return base / "C-NMC_training_data", base
    raise DatasetLayoutError(f"no C-NMC training data under {root}: {CNMC_LAYOUT}")


def _training_rows(training: Path) -> list[dict]:
    rows = []
    for fold in _subdirs(training):
        if not fold.name.lower().startswith("fold"):
            continue
        for class_dir in _subdirs(fold):
            label = class_dir.name.lower()
            if label not in CNMC_LABELS:
                continue
            for path in _images(class_dir):
                rows.append(
                    {
                        "image": str(path),
                        "label": CNMC_LABELS.index(label),
                        "patient_id": cnmc_subject(path.name),
                        "path": str(path),
                        "source": fold.name,
                    }
                )
    return rows


def _find_prelim_labels(prelim: Path) -> Path | None:
    for candidate in (prelim.parent / PRELIM_LABELS_CSV, prelim / PRELIM_LABELS_CSV):
        if candidate.is_file():
            return candidate
    for folder in (prelim.parent, prelim):
        for candidate in sorted(folder.glob("*.csv")):
            with open(candidate, newline="", encoding="utf-8-sig") as handle:
                header = next(csv.reader(handle), [])
            if {"new_names", "labels"} <= {name.strip() for name in header}:
                return candidate
    return None


def _prelim_rows(prelim: Path) -> list[dict]:
    labels_csv = _find_prelim_labels(prelim)
    if labels_csv is None:
        warnings.warn(
            f"C-NMC: {prelim} has no labels CSV ({PRELIM_LABELS_CSV}); its images are skipped", UserWarning,
            stacklevel=3,
        )
        return []
    rows = []
    with open(labels_csv, newline="", encoding="utf-8-sig") as handle:
        for record in csv.DictReader(handle):
            record = {key.strip(): (value or "").strip() for key, value in record.items() if key}
            try:
                name, original, label = record["new_names"], record["Patient_ID"], int(record["labels"])
            except (KeyError, ValueError) as err:
                raise DatasetLayoutError(
                    f"{labels_csv.name}: expected columns Patient_ID, new_names, labels (1 = ALL, 0 = HEM)"
                ) from err
            path = prelim / name
            if not path.is_file():
                raise DatasetLayoutError(f"{labels_csv.name} lists {name} but {prelim} has no such file")
            if label not in (0, 1):
                raise DatasetLayoutError(f"{labels_csv.name}: label {label} for {name} is neither 1 (ALL) nor 0 (HEM)")
            rows.append(
                {
                    "image": str(path),
                    "label": label,
                    "patient_id": f"prelim:{cnmc_subject(original)}",
                    "path": str(path),
                    "source": "prelim",
                }
            )
    return rows


def load_cnmc(root: str | Path) -> datasets.Dataset:
    """Load the labelled part of C-NMC 2019 from the Kaggle or the TCIA layout.

    ``root`` is the folder that contains ``C-NMC_Leukemia`` or that folder itself (Kaggle:
    ``training_data/fold_<k>/{all,hem}`` and ``validation_data/C-NMC_test_prelim_phase_data`` with its labels
    CSV), or the folder that holds ``C-NMC_training_data`` (TCIA). The subject is the second ``_`` field of the
    file name, upper-cased; preliminary-phase subjects are a separate cohort and get ids ``prelim:<subject>``.
    The unlabelled final-phase test data is skipped. Labels: ``hem`` = 0, ``all`` = 1. The extra ``source``
    column says where a row comes from (``fold_0``, ``fold_1``, ``fold_2`` or ``prelim``).

    Raises :class:`DatasetLayoutError` (one line, naming the expected layout) for a folder that is not C-NMC.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetLayoutError(f"C-NMC folder {root} does not exist: {CNMC_LAYOUT}")
    training, prelim_parent = _cnmc_base(root)
    rows = _training_rows(training)
    if not rows:
        raise DatasetLayoutError(f"no C-NMC images under {training}: {CNMC_LAYOUT}")
    prelim = prelim_parent / PRELIM_FOLDER
    if prelim.is_dir():
        rows += _prelim_rows(prelim)
    description = f"C-NMC 2019 (ALL vs HEM) from {training.parent}; subject-level labels; hem=0, all=1"
    return _build(rows, _features(CNMC_LABELS, with_source=True), description)


def _aria_class_folders(root: Path) -> tuple[Path, dict[str, Path]]:
    for base in (root / "Original", root / ARIA_4CLASS_FOLDER, root):
        folders = {}
        for folder in _subdirs(base):
            label = ARIA_FOLDER_CLASSES.get(folder.name.strip().lower())
            if label is not None:
                folders[label] = folder
        if folders:
            return base, folders
    raise DatasetLayoutError(f"no Aria class folders under {root}: {ARIA_LAYOUT}")


def _read_patient_map(patients_csv: Path) -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]]]:
    """(relative path -> (patient, label), file name -> (patient, label)) from a patients CSV."""
    by_path: dict[str, tuple[str, str]] = {}
    by_name: dict[str, tuple[str, str]] = {}
    with open(patients_csv, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not {"image", "patient_id"} <= set(reader.fieldnames or []):
            raise DatasetLayoutError(f"{patients_csv.name}: expected columns image, patient_id (and optionally label)")
        for record in reader:
            image = (record["image"] or "").strip().replace("\\", "/")
            entry = ((record["patient_id"] or "").strip(), (record.get("label") or "").strip())
            by_path[image] = entry
            by_name[Path(image).name] = entry
    return by_path, by_name


def load_aria(root: str | Path, patients_csv: str | Path | None = None) -> datasets.Dataset:
    """Load the Aria ALL set (Benign=0, Early=1, Pre=2, Pro=3).

    ``root`` holds ``Original/{Benign,Early,Pre,Pro}`` (or is the 4-class variant ``Blood cell Cancer [ALL]``,
    or its parent). ``Segmented`` is not read; ground-truth masks ``Masks/<class>/<stem>.png`` fill the ``mask``
    column when present (None otherwise). ``patients_csv`` (columns ``image`` = path relative to ``root``,
    ``patient_id``, optional ``label``) defaults to ``<root>/patients.csv``. Without one, patient ids cannot be
    recovered: a ``UserWarning`` says evaluation will be image-level, every image becomes its own
    pseudo-patient ``image:<name>`` and ``dataset.info.description`` says so.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetLayoutError(f"Aria folder {root} does not exist: {ARIA_LAYOUT}")
    base, folders = _aria_class_folders(root)
    dataset_root = base.parent if base.name == "Original" else base
    masks_root = dataset_root / "Masks"

    if patients_csv is None:
        default = dataset_root / "patients.csv"
        patients_csv = next((p for p in (default, root / "patients.csv") if p.is_file()), None)
    else:
        patients_csv = Path(patients_csv).expanduser()
        if not patients_csv.is_file():
            raise DatasetLayoutError(f"patient map {patients_csv} does not exist (columns image, patient_id, label)")
    by_path, by_name = _read_patient_map(patients_csv) if patients_csv else ({}, {})

    rows, unmapped = [], []
    for label, folder in sorted(folders.items(), key=lambda item: ARIA_LABELS.index(item[0])):
        for path in _images(folder):
            relative = path.relative_to(dataset_root).as_posix()
            mask_path = masks_root / label / f"{path.stem}.png"
            if patients_csv:
                entry = by_path.get(relative) or by_name.get(path.name)
                if entry is None or not entry[0]:
                    unmapped.append(relative)
                    continue
                patient_id, csv_label = entry
                if csv_label and csv_label != label:
                    raise DatasetLayoutError(
                        f"{patients_csv.name} labels {relative} as {csv_label} but it lies in the {label} folder"
                    )
            else:
                patient_id = f"{PSEUDO_PATIENT_PREFIX}{path.name}"
            rows.append(
                {
                    "image": str(path),
                    "label": ARIA_LABELS.index(label),
                    "patient_id": patient_id,
                    "path": str(path),
                    "mask": str(mask_path) if mask_path.is_file() else None,
                }
            )
    if unmapped:
        raise DatasetLayoutError(
            f"{patients_csv.name} has no patient for {len(unmapped)} image(s), e.g. {unmapped[0]}"
        )
    if not rows:
        raise DatasetLayoutError(f"no images in the Aria class folders under {base}: {ARIA_LAYOUT}")
    if patients_csv:
        description = f"Aria ALL set from {dataset_root}; patients from {patients_csv.name}; Benign=0 Early=1 Pre=2 Pro=3"
    else:
        warnings.warn(f"Aria at {dataset_root}: {IMAGE_LEVEL_NOTE}", UserWarning, stacklevel=2)
        description = f"Aria ALL set from {dataset_root}. {IMAGE_LEVEL_NOTE}"
    return _build(rows, _features(ARIA_LABELS, with_mask=True), description)


def _names(ds: datasets.Dataset) -> list[str]:
    feature = ds.features["label"]
    return list(feature.names) if isinstance(feature, datasets.ClassLabel) else []


def dataset_summary(ds: datasets.Dataset) -> dict:
    """Rows, distinct patients, images per class and patients per class of a loaded dataset."""
    names = _names(ds)
    labels, patients = list(ds["label"]), list(ds["patient_id"])
    name_of = (lambda index: names[index]) if names else str
    images_per_class = Counter(name_of(label) for label in labels)
    patients_per_class = Counter(name_of(label) for _, label in set(zip(patients, labels)))
    order = names or sorted(images_per_class)
    return {
        "rows": len(ds),
        "patients": len(set(patients)),
        "per_class": {name: images_per_class.get(name, 0) for name in order},
        "patients_per_class": {name: patients_per_class.get(name, 0) for name in order},
    }
