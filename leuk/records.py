"""Names of the record files a model folder or run folder holds, defined once.

Training writes them, the loader, cards, push and the OOD fit read them; every module imports the name
from here so a rename cannot leave two spellings behind. ``training_split.json`` has one schema for every
model family, written and read here (:func:`split_part_record`, :func:`read_training_split`); so has
``eval_results.json``, versioned (:data:`EVAL_RESULTS_SCHEMA_VERSION`: :func:`write_eval_results` on save,
:func:`read_eval_results` / :func:`upgrade_eval_results` + :func:`validate_eval_results` on load and in the cards).
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
    "EVAL_RESULTS_SCHEMA_VERSION",
    "EVAL_RESULTS_VERSION_KEY",
    "EvalResultsError",
    "eval_results_problems",
    "eval_results_version",
    "read_eval_results",
    "upgrade_eval_results",
    "validate_eval_results",
    "write_eval_results",
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


# ---- eval_results.json: one versioned schema for every model family ----------------------------------------
#
# {"schema_version": 1,                                  (absent in folders written before the version: 0)
#  "model": str, "protocol": str, "split": str, "dataset": str, "synthetic": bool, "command": str, ...,
#  "test" | "metrics" | "test_metrics": {<metric>: number | null, "n": int, "per_class": {...}, ...}
#                                       (or the metrics at the top level, as the earliest records hold them),
#  "validation": {...}, "split_sizes": {"train" | "val" | "test": {"n_images": int, "n_patients": int, ...}},
#  "cross_subject": {...}, "cross_validation": {...}, "calibration": {...}, "recipe": {...},
#  "training_subjects": [...], "held_out_subjects": [...], "recipes_tried": [...], ...}
#
# Every key is optional and a record may carry keys of its own (a run adds blocks over time); the keys named in
# _EVAL_FIELDS must hold their type. Version 0 -> 1 adds only the version key: a version-0 record already has
# version 1's shape. A reader brings every record to the current version with upgrade_eval_results.

#: The version of the ``eval_results.json`` schema this leuk writes (:func:`write_eval_results`).
EVAL_RESULTS_SCHEMA_VERSION = 1
#: The key of an ``eval_results.json`` holding its schema version; a record marker, neither a metric nor metadata.
EVAL_RESULTS_VERSION_KEY = "schema_version"


class EvalResultsError(LeukError, ValueError):
    """An ``eval_results.json`` that does not hold the schema (its message lists every problem)."""


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_KINDS: dict[str, tuple[str, Any]] = {
    "str": ("a string", lambda v: isinstance(v, str)),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "int": ("an integer", _is_int),
    "number": ("a number", _is_number),
    "object": ("a JSON object", lambda v: isinstance(v, dict)),
    "list": ("a list", lambda v: isinstance(v, list)),
}
#: the type each known top-level key must hold (``None`` is allowed for every one of them)
_EVAL_FIELDS: dict[str, str] = {
    EVAL_RESULTS_VERSION_KEY: "int",
    **dict.fromkeys(("model", "protocol", "split", "dataset", "command", "test_patients_hash"), "str"),
    "synthetic": "bool",
    **dict.fromkeys(("fold", "shipped_fold", "seed"), "int"),
    **dict.fromkeys(("temperature", "validation_temperature", "epochs_trained", "runtime_s", "recipe_runtime_s"),
                    "number"),
    **dict.fromkeys(("test", "metrics", "test_metrics", "validation", "split_sizes", "cross_subject",
                     "cross_validation", "calibration", "recipe", "best_checkpoint", "baseline_cross_subject",
                     "per_subject", "segmentation", "segmentation_reference", "selection", "training"), "object"),
    **dict.fromkeys(("train_subjects", "test_subjects", "training_subjects", "held_out_subjects", "recipes_tried"),
                    "list"),
}
#: metric keys whose value must be a number (or ``null``: undefined on the split) wherever a metrics block holds them
_METRIC_KEYS = ("accuracy", "balanced_accuracy", "f1_weighted", "f1_macro", "roc_auc", "sensitivity", "specificity",
                "precision", "recall", "mcc", "ece", "log_loss", "brier")


def eval_results_version(record: Any) -> int:
    """The schema version of an ``eval_results.json`` mapping: its :data:`EVAL_RESULTS_VERSION_KEY`, 0 when absent."""
    version = record.get(EVAL_RESULTS_VERSION_KEY, 0) if isinstance(record, dict) else 0
    if not _is_int(version) or version < 0:
        raise EvalResultsError(f"eval_results.json: {EVAL_RESULTS_VERSION_KEY} must be a non-negative integer, "
                               f"not {version!r}")
    return version


def _metric_problems(block: Any, where: str) -> list[str]:
    problems = [f"{where}.{key} must be a number or null, not {block[key]!r}"
                for key in _METRIC_KEYS if key in block and block[key] is not None and not _is_number(block[key])]
    if "n" in block and block["n"] is not None and not _is_int(block["n"]):
        problems.append(f"{where}.n must be an integer, not {block['n']!r}")
    return problems


def eval_results_problems(record: Any) -> list[str]:
    """Every way ``record`` departs from the current ``eval_results.json`` schema (``[]``: it holds it)."""
    if not isinstance(record, dict):
        return [f"the record must be a JSON object, not {type(record).__name__}"]
    problems = []
    for key, kind in _EVAL_FIELDS.items():
        value = record.get(key)
        name, check = _KINDS[kind]
        if value is not None and not check(value):
            problems.append(f"{key} must be {name}, not {value!r}")
    if record.get(EVAL_RESULTS_VERSION_KEY) != EVAL_RESULTS_SCHEMA_VERSION:
        problems.append(f"{EVAL_RESULTS_VERSION_KEY} must be {EVAL_RESULTS_SCHEMA_VERSION} "
                        f"(upgrade_eval_results brings older records to it), not {record.get(EVAL_RESULTS_VERSION_KEY)!r}")
    problems += _metric_problems(record, "eval_results")
    for key in ("test", "metrics", "test_metrics", "validation"):
        if isinstance(record.get(key), dict):
            problems += _metric_problems(record[key], key)
    for part, sizes in (record.get("split_sizes") or {}).items() if isinstance(record.get("split_sizes"), dict) else ():
        if not isinstance(sizes, dict):
            problems.append(f"split_sizes.{part} must be a JSON object, not {sizes!r}")
            continue
        problems += [f"split_sizes.{part}.{key} must be an integer, not {sizes[key]!r}"
                     for key in ("n_images", "n_patients") if sizes.get(key) is not None and not _is_int(sizes[key])]
    return problems


def validate_eval_results(record: Any, *, source: str = "eval_results.json") -> dict[str, Any]:
    """``record`` itself when it holds the current schema; :class:`EvalResultsError` naming every problem when not
    (a record of an older version fails: read it through :func:`upgrade_eval_results`)."""
    problems = eval_results_problems(record)
    if problems:
        raise EvalResultsError(f"{source} does not hold the eval_results schema v{EVAL_RESULTS_SCHEMA_VERSION}: "
                               + "; ".join(problems))
    return record


def upgrade_eval_results(record: Any) -> dict[str, Any]:
    """A copy of an ``eval_results.json`` mapping of any earlier version brought to the current one (the one
    upgrade path of older folders, such as the bundled demos, which are never rewritten); a record of a newer
    version than this leuk knows raises :class:`EvalResultsError`."""
    if not isinstance(record, dict):
        raise EvalResultsError(f"eval_results.json must hold a JSON object, not {type(record).__name__}")
    version = eval_results_version(record)
    if version > EVAL_RESULTS_SCHEMA_VERSION:
        raise EvalResultsError(f"eval_results.json has schema version {version}, newer than this leuk reads "
                               f"({EVAL_RESULTS_SCHEMA_VERSION}): upgrade leuk")
    upgraded = dict(record)
    if version < 1:  # 0 -> 1: the shape is unchanged, the record gains its version
        upgraded[EVAL_RESULTS_VERSION_KEY] = 1
    return upgraded


def read_eval_results(folder: str | Path) -> dict[str, Any] | None:
    """The ``eval_results.json`` of a model folder (or the file itself), upgraded to the current schema and
    validated; ``None`` when there is none. Unreadable JSON and schema problems raise :class:`EvalResultsError`."""
    path = Path(folder)
    path = path / EVAL_RESULTS_FILE if path.is_dir() else path
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise EvalResultsError(f"{path} is not valid JSON ({err})") from err
    return validate_eval_results(upgrade_eval_results(record), source=str(path))


def write_eval_results(folder: str | Path, record: dict[str, Any], **dumps_options: Any) -> Path:
    """Write ``record`` as the folder's ``eval_results.json`` at the current schema version (the version key
    first), after :func:`validate_eval_results`; ``dumps_options`` go to :func:`json.dumps` (e.g. ``default=``)."""
    stamped = {EVAL_RESULTS_VERSION_KEY: EVAL_RESULTS_SCHEMA_VERSION,
               **{k: v for k, v in record.items() if k != EVAL_RESULTS_VERSION_KEY}}
    text = json.dumps(stamped, indent=2, **dumps_options) + "\n"
    path = Path(folder) / EVAL_RESULTS_FILE
    validate_eval_results(json.loads(text), source=str(path))  # what a reader will see (numpy numbers converted)
    path.write_text(text, encoding="utf-8")
    return path
