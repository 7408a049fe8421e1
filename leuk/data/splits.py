"""Patient-grouped, label-stratified splits (and the one explicitly named leaky protocol).

Every split in leuk keeps all images of a patient on one side. ``protocol="image"`` ignores patients and
exists only to measure how much an image-level split inflates the scores.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np

from leuk.defaults import TEST_SIZE, VAL_SIZE

__all__ = [
    "PROTOCOLS",
    "Split",
    "all_subjects_split",
    "grouped_kfold",
    "leave_one_rare_subject_out",
    "monte_carlo_splits",
    "patient_set_hash",
    "train_val_test_split",
]

PROTOCOLS = ("patient", "image")


@dataclass(frozen=True, eq=False)
class Split:
    """Row indices (sorted int64 arrays) of the train, validation and test parts, and how they were drawn."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    protocol: str = "patient"

    def __post_init__(self) -> None:
        for name in ("train", "val", "test"):
            object.__setattr__(self, name, np.sort(np.asarray(getattr(self, name), dtype=np.int64)))

    def __repr__(self) -> str:
        return f"Split(protocol={self.protocol!r}, train={len(self.train)}, val={len(self.val)}, test={len(self.test)})"


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown split protocol {protocol!r}: use 'patient' (or 'image' to measure leakage)")


def _as_arrays(labels: Sequence, groups: Sequence) -> tuple[np.ndarray, np.ndarray]:
    labels, groups = np.asarray(labels), np.asarray(groups)
    if labels.ndim != 1 or groups.ndim != 1 or len(labels) != len(groups):
        raise ValueError(f"labels and groups must be 1-D and equally long, got {labels.shape} and {groups.shape}")
    if len(labels) == 0:
        raise ValueError("cannot split an empty dataset")
    return labels, groups


def _group_table(labels: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unique groups, the majority label of each group, group index of every row)."""
    unique, inverse = np.unique(groups, return_inverse=True)
    _, label_codes = np.unique(labels, return_inverse=True)
    counts = np.zeros((len(unique), label_codes.max() + 1), dtype=np.int64)
    np.add.at(counts, (inverse, label_codes), 1)
    return unique, counts.argmax(axis=1), inverse


def _stratified_group_parts(
    group_labels: np.ndarray, fractions: Sequence[float], rng: np.random.Generator
) -> list[np.ndarray]:
    """Assign groups to parts (the first part is train) per label, so each part holds about its fraction of
    each label's groups; every label keeps at least one group in train, and each later part with a positive
    fraction gets at least one group when enough groups are left over."""
    parts: list[list[int]] = [[] for _ in fractions]
    for label in np.unique(group_labels):
        members = rng.permutation(np.flatnonzero(group_labels == label))
        counts = [int(round(f * len(members))) for f in fractions[1:]]
        while sum(counts) > len(members) - 1 and any(counts):  # train keeps one group of every label
            counts[int(np.argmax(counts))] -= 1
        start = 0
        for part, count in enumerate([len(members) - sum(counts), *counts]):
            parts[part].extend(members[start : start + count].tolist())
            start += count
    # A part that wants groups but got none takes one from train's most populous label, if it can spare one;
    # the last part (the test set) is served first.
    for part in range(len(fractions) - 1, 0, -1):
        if fractions[part] > 0 and not parts[part]:
            train_labels = group_labels[parts[0]]
            values, sizes = np.unique(train_labels, return_counts=True)
            if sizes.size and sizes.max() > 1:
                donor_label = values[np.argmax(sizes)]
                donor = [g for g in parts[0] if group_labels[g] == donor_label][-1]
                parts[0].remove(donor)
                parts[part].append(donor)
    return [np.asarray(sorted(p), dtype=np.int64) for p in parts]


def train_val_test_split(
    labels: Sequence,
    groups: Sequence,
    *,
    test_size: float = TEST_SIZE,
    val_size: float = VAL_SIZE,
    seed: int,
    protocol: str = "patient",
) -> Split:
    """Split rows into train/val/test, grouped by patient and stratified by each patient's label.

    ``test_size`` and ``val_size`` are fractions of the patients of each label. Every label with a patient
    keeps at least one in train. ``protocol="image"`` treats each row as its own patient (image-level,
    leaky: only for measuring leakage); any other protocol name raises ``ValueError``.
    """
    _check_protocol(protocol)
    if not (0 <= test_size < 1 and 0 <= val_size < 1 and test_size + val_size < 1):
        raise ValueError(f"test_size and val_size must be in [0, 1) with a sum below 1, got {test_size}, {val_size}")
    labels, groups = _as_arrays(labels, groups)
    if protocol == "image":
        groups = np.arange(len(labels))
    _, group_labels, row_group = _group_table(labels, groups)
    rng = np.random.default_rng(seed)
    train, val, test = _stratified_group_parts(group_labels, (1 - test_size - val_size, val_size, test_size), rng)
    return Split(*(np.flatnonzero(np.isin(row_group, part)) for part in (train, val, test)), protocol=protocol)


def grouped_kfold(labels: Sequence, groups: Sequence, k: int, seed: int, *, val_size: float = 0.0) -> list[Split]:
    """``k`` patient-grouped folds (sklearn's StratifiedGroupKFold, shuffled by ``seed``).

    Fold ``i`` tests on its patients; with ``val_size`` > 0 a stratified share of the remaining patients
    becomes the validation part, the rest is train.
    """
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    labels, groups = _as_arrays(labels, groups)
    n_groups = len(np.unique(groups))
    if not 2 <= k <= n_groups:
        raise ValueError(f"k must be between 2 and the number of patients ({n_groups}), got {k}")
    if np.unique(labels, return_counts=True)[1].max() >= k:
        folds = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    else:  # too few images of every class to stratify
        folds = GroupKFold(n_splits=k, shuffle=True, random_state=seed)
    rng = np.random.default_rng(seed)
    splits = []
    for rest, test in folds.split(np.zeros(len(labels)), labels, groups):
        if val_size > 0:
            _, group_labels, row_group = _group_table(labels[rest], groups[rest])
            train_groups, val_groups = _stratified_group_parts(group_labels, (1 - val_size, val_size), rng)
            train, val = rest[np.isin(row_group, train_groups)], rest[np.isin(row_group, val_groups)]
        else:
            train, val = rest, np.empty(0, dtype=np.int64)
        splits.append(Split(train, val, test, protocol="patient"))
    return splits


def leave_one_rare_subject_out(
    labels: Sequence, groups: Sequence, *, seed: int, val_size: float = VAL_SIZE, rare_label=None
) -> list[Split]:
    """One fold per subject of the class with the fewest subjects (C-NMC's pool here: its 3 HEM subjects).

    Fold ``i`` tests on the ``i``-th rare-class subject (sorted by id) and on a share of every other class's
    subjects, dealt round-robin after a seeded shuffle, so that each subject is tested exactly once and every
    fold's test set holds both classes. The validation part is ``val_size`` of the *training subjects'*
    images (stratified by subject; labels are per subject): with so few subjects of one class, a subject-level validation
    split would leave training with almost none, and no test subject may inform early stopping or
    calibration. Validation figures are therefore optimistic (seen subjects); test figures are not.
    """
    labels, groups = _as_arrays(labels, groups)
    unique, group_labels, row_group = _group_table(labels, groups)
    classes, subjects_per_class = np.unique(group_labels, return_counts=True)
    if len(classes) < 2:
        raise ValueError("leave-one-subject-out needs subjects of at least two classes")
    if rare_label is None:
        rare = classes[int(np.argmin(subjects_per_class))]
    else:
        codes = {value: code for code, value in enumerate(np.unique(labels))}
        if rare_label not in codes:
            raise ValueError(f"rare_label {rare_label!r} is not one of the labels {sorted(codes)}")
        rare = codes[rare_label]
    rare_groups = np.flatnonzero(group_labels == rare)
    k = len(rare_groups)
    if k < 2:
        raise ValueError("leave-one-subject-out needs at least two subjects of the rare class")
    rng = np.random.default_rng(seed)
    fold_of_group = np.full(len(unique), -1, dtype=np.int64)
    fold_of_group[rare_groups] = np.arange(k)
    for label in classes:
        if label == rare:
            continue
        members = rng.permutation(np.flatnonzero(group_labels == label))
        if len(members) < k:
            raise ValueError(f"class {label} has {len(members)} subjects, fewer than the {k} folds")
        fold_of_group[members] = np.arange(len(members)) % k
    splits = []
    for fold in range(k):
        test = np.flatnonzero(fold_of_group[row_group] == fold)
        rest = np.flatnonzero(fold_of_group[row_group] != fold)
        train, val = _validation_images(rest, row_group, val_size, rng)
        splits.append(Split(train, val, test, protocol="patient"))
    return splits


def _validation_images(rows: np.ndarray, row_group: np.ndarray, val_size: float,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` parted into (train, val): ``val_size`` of each subject's images, drawn from ``rng``."""
    val_mask = np.zeros(len(rows), dtype=bool)
    if val_size > 0:
        for stratum in np.unique(row_group[rows]):
            members = np.flatnonzero(row_group[rows] == stratum)
            n_val = int(round(val_size * len(members)))
            val_mask[rng.permutation(members)[:n_val]] = True
    return rows[~val_mask], rows[val_mask]


def all_subjects_split(labels: Sequence, groups: Sequence, *, seed: int, val_size: float = VAL_SIZE) -> Split:
    """Every subject in training, no test part: the split of a model shipped after cross-validation (its
    estimate is the cross-validation's). The validation part is ``val_size`` of each subject's images, for
    early stopping and checkpoint selection only (seen subjects: not an estimate of anything)."""
    labels, groups = _as_arrays(labels, groups)
    _, _, row_group = _group_table(labels, groups)
    train, val = _validation_images(np.arange(len(labels)), row_group, val_size, np.random.default_rng(seed))
    return Split(train, val, np.zeros(0, dtype=np.int64), protocol="patient")


def iteration_seeds(seed: int, n_iter: int) -> list[int]:
    """The seed of each Monte Carlo iteration: ``SeedSequence(seed).spawn``; iteration ``i`` gets the same
    seed whatever ``n_iter`` is."""
    return [int(child.generate_state(1, dtype=np.uint32)[0]) for child in np.random.SeedSequence(seed).spawn(n_iter)]


def monte_carlo_splits(
    labels: Sequence,
    groups: Sequence,
    *,
    n_iter: int,
    seed: int,
    protocol: str = "patient",
    test_size: float = TEST_SIZE,
    val_size: float = VAL_SIZE,
) -> Iterator[tuple[int, int, Split]]:
    """Yield ``(iteration, iteration_seed, Split)`` for ``n_iter`` random patient-grouped splits.

    Record ``iteration_seed``: ``train_val_test_split(..., seed=iteration_seed)`` reproduces that split.
    """
    _check_protocol(protocol)
    labels, groups = _as_arrays(labels, groups)
    for iteration, iteration_seed in enumerate(iteration_seeds(seed, n_iter)):
        split = train_val_test_split(
            labels, groups, test_size=test_size, val_size=val_size, seed=iteration_seed, protocol=protocol
        )
        yield iteration, iteration_seed, split


def patient_set_hash(patient_ids: Iterable) -> str:
    """First 16 hex digits of the sha256 of the sorted distinct patient ids (one per line)."""
    unique = sorted({str(p) for p in patient_ids})
    return hashlib.sha256("\n".join(unique).encode("utf-8")).hexdigest()[:16]
