"""Names of the record files a model folder or run folder holds, defined once.

Training writes them, the loader, cards, push and the OOD fit read them; every module imports the name
from here so a rename cannot leave two spellings behind. ``training_split.json`` has one schema for every
model family, written and read here (:func:`split_part_record`, :func:`read_training_split`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from leuk.errors import LeukError

__all__ = [
    "CARD_FILE",
    "CALIBRATION_FILE",
    "EVAL_RESULTS_FILE",
    "OUT_OF_FOLD_FILE",
    "PSEUDO_PATIENT_PREFIX",
    "SPLIT_FILE",
    "has_patient_ids",
    "read_calibration",
    "SPLIT_PARTS",
    "SplitPart",
    "TrainingSplit",
    "parse_training_split",
    "read_training_split",
    "relative_path",
    "split_part_record",
    "training_split_record",
    "write_training_split",
]

#: How a loader spells the group of an image whose patient is unknown (the Aria set without a patient map): every
#: image is its own pseudo-patient ``image:<file name>``. Such groups are images, never subjects or patients.
PSEUDO_PATIENT_PREFIX = "image:"


def has_patient_ids(groups: Sequence[Any]) -> bool:
    """Whether ``groups`` (one per image) name patients: not empty and not all pseudo-patients
    (:data:`PSEUDO_PATIENT_PREFIX`)."""
    groups = [str(g) for g in groups]
    return bool(groups) and not all(g.startswith(PSEUDO_PATIENT_PREFIX) for g in groups)


#: the held-out test evaluation written once after training
EVAL_RESULTS_FILE = "eval_results.json"
#: which images (patients) went into train / val / test
SPLIT_FILE = "training_split.json"
#: the model card of a model folder or Hub repo
CARD_FILE = "README.md"
#: a model's temperature and verdict threshold, and what they were fitted on (:func:`read_calibration`)
CALIBRATION_FILE = "calibration.json"
#: the out-of-fold predictions a shipped model's calibration was fitted on (one row per image)
OUT_OF_FOLD_FILE = "out_of_fold.csv"


def read_calibration(folder: str | Path) -> dict[str, Any]:
    """The ``calibration.json`` of a model folder (``{}`` when it has none):
    ``{"temperature", "uncertain_below", "target_accuracy", "fitted_on", ...}``."""
    path = Path(folder) / CALIBRATION_FILE
    if not path.is_file():
        return {}
    record = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(record, dict):
        raise ValueError(f"{path} holds no JSON object")
    return record


# ---- training_split.json: one schema for every model family ----------------------------------------
#
# {"protocol": "patient" | "image" | ..., "seed": int, "test_size": float, "val_size": float,
#  "dataset": {"loader": "cnmc" | "aria", "folder": <folder name only>, "n_images": int, "label_names": [...]},
#  "synthetic": bool,
#  "train" | "val" | "test": {"patients": [...], "n_patients": int, "n_images": int,
#                             "per_class": {label: count}, "images": [paths relative to the data folder]},
#  "test_patients_hash": patient_set_hash(test patients)}
#
# Folders written before the schema was shared (HybridCN-NAS up to the demo bundled in
# assets/demo_models/hybridcn-nas-lite) hold {"protocol", "sizes": {part: {n_patients, n_images, per_class}},
# "<part>_patients": [...]}; :func:`parse_training_split` reads both.

SPLIT_PARTS = ("train", "val", "test")


@dataclass(frozen=True)
class SplitPart:
    """One part of a recorded split: its patients, and its images when the record names them."""

    patients: tuple[str, ...]
    n_images: int | None = None
    per_class: dict[str, int] = field(default_factory=dict)
    #: paths relative to the data folder; ``None`` when the record names patients only
    images: tuple[str, ...] | None = None

    @property
    def n_patients(self) -> int:
        return len(self.patients)


@dataclass(frozen=True)
class TrainingSplit:
    """A parsed ``training_split.json`` (either format)."""

    protocol: str | None
    parts: dict[str, SplitPart]
    test_patients_hash: str | None = None
    #: the file's own mapping, as written
    record: dict[str, Any] = field(default_factory=dict, repr=False)

    def part(self, name: str) -> SplitPart:
        return self.parts.get(name) or SplitPart(())


def split_part_record(rows: Sequence[int], paths: Sequence[str], labels: Sequence[int], groups: Sequence[str],
                      label_names: Sequence[str], root: str | Path) -> dict[str, Any]:
    """The record of one split part (rows of a dataset table): patients, counts, images relative to ``root``."""
    rows = np.asarray(rows, dtype=np.int64)
    groups = np.asarray([str(g) for g in groups])
    labels = np.asarray(labels, dtype=np.int64)
    patients = sorted(set(groups[rows].tolist()))
    counts = np.bincount(labels[rows], minlength=len(label_names))
    return {
        "patients": patients,
        "n_patients": len(patients),
        "n_images": int(len(rows)),
        "per_class": {str(name): int(count) for name, count in zip(label_names, counts)},
        "images": sorted(relative_path(paths[int(i)], root) for i in rows),
    }


def training_split_record(split: Any, paths: Sequence[str], labels: Sequence[int], groups: Sequence[str],
                          label_names: Sequence[str], root: str | Path, *, loader: str, synthetic: bool,
                          **settings: Any) -> dict[str, Any]:
    """The ``training_split.json`` mapping of ``split`` (a :class:`leuk.data.splits.Split` over the table
    ``paths``/``labels``/``groups``): ``settings`` (protocol, seed, sizes, ...) first, then the dataset (its
    folder's name only: a published model must not carry the trainer's local paths), every part and the
    test patients' hash."""
    from leuk.data.splits import patient_set_hash

    record: dict[str, Any] = {
        **settings,
        "dataset": {"loader": loader, "folder": Path(root).name, "n_images": len(paths),
                    "label_names": list(label_names)},
        "synthetic": bool(synthetic),
    }
    for name in SPLIT_PARTS:
        record[name] = split_part_record(getattr(split, name), paths, labels, groups, label_names, root)
    record["test_patients_hash"] = patient_set_hash(record["test"]["patients"])
    return record


def relative_path(path: str | Path, root: str | Path) -> str:
    """``path`` relative to ``root`` in POSIX form (the path itself when it lies outside ``root``)."""
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return Path(path).as_posix()


def parse_training_split(record: dict[str, Any]) -> TrainingSplit:
    """A :class:`TrainingSplit` from the mapping of a ``training_split.json`` (shared or older format)."""
    sizes = record.get("sizes") if isinstance(record.get("sizes"), dict) else {}
    parts: dict[str, SplitPart] = {}
    for name in SPLIT_PARTS:
        entry = record.get(name)
        if isinstance(entry, dict):
            images = entry.get("images")
            parts[name] = SplitPart(tuple(str(p) for p in entry.get("patients") or ()), entry.get("n_images"),
                                    dict(entry.get("per_class") or {}),
                                    tuple(str(i) for i in images) if images else None)
        elif f"{name}_patients" in record:  # older HybridCN-NAS format
            size = sizes.get(name) or {}
            parts[name] = SplitPart(tuple(str(p) for p in record[f"{name}_patients"] or ()), size.get("n_images"),
                                    dict(size.get("per_class") or {}))
    test_hash = record.get("test_patients_hash")
    if test_hash is None and "test" in parts and parts["test"].patients:
        from leuk.data.splits import patient_set_hash

        test_hash = patient_set_hash(parts["test"].patients)
    return TrainingSplit(record.get("protocol"), parts, test_hash, dict(record))


def read_training_split(folder: str | Path) -> TrainingSplit | None:
    """The parsed ``training_split.json`` of a model folder, ``None`` when it has none."""
    path = Path(folder) / SPLIT_FILE
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(record, dict):
        raise LeukError(f"{path} is not a JSON object")
    return parse_training_split(record)


def write_training_split(folder: str | Path, record: dict[str, Any]) -> Path:
    """Write ``record`` (the shared schema above) as the folder's ``training_split.json``."""
    path = Path(folder) / SPLIT_FILE
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path
